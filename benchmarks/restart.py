"""Restart after kill -9: how long until the first task runs again, with 2 000 unfinished runs.

    .venv/bin/python -m benchmarks.restart [--runs 2000] [--reps 3]

Each repetition: a child process opens an engine on a fresh state file, triggers ``--runs`` runs of a
one-task DAG whose task blocks (8 run at once, the rest stay queued), and is SIGKILLed once the first
tasks run. Then ``podium run`` is started on that state file, and the time from starting the process
to the first resumed task writing its ledger line is measured. Beside it, the floor: starting a
Python process that only imports ``engine`` and ``sensors``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DAGS = """
import os
import anyio
from engine import dag, task

LEDGER = os.environ["PODIUM_BENCH_LEDGER"]

@task
async def hold() -> None:
    with open(LEDGER, "a") as f:
        f.write(f"start {os.getpid()}\\n")
    await anyio.sleep_forever()

@dag
def resume_me() -> None:
    hold()
"""

FILL = """
import asyncio, sys
from engine import Engine
from engine.loader import load_dags

async def main(db, path, runs):
    loaded = load_dags(path)
    async with Engine(db, dags=loaded.dags, max_tasks=8, sensors=False, high_water=runs + 1) as e:
        for _ in range(runs):
            await e.trigger("resume_me")
        print("filled", flush=True)
        await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.002)
    raise RuntimeError(f"timed out waiting for {what}")


def _ledger_pids(ledger: Path) -> list[int]:
    if not ledger.exists():
        return []
    return [int(line.split()[1]) for line in ledger.read_text().splitlines() if line.strip()]


def measure_once(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dags = root / "dags.py"
        dags.write_text(DAGS)
        ledger = root / "ledger"
        db = root / "state.db"
        env = {**os.environ, "PODIUM_BENCH_LEDGER": str(ledger)}
        fill = subprocess.Popen(
            [sys.executable, "-c", FILL, str(db), str(dags), str(runs)],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert fill.stdout is not None
        if fill.stdout.readline().strip() != "filled":
            raise RuntimeError("the filling engine did not start")
        _wait_for(lambda: len(_ledger_pids(ledger)) >= 1, "the first tasks")
        fill.send_signal(signal.SIGKILL)
        fill.wait()
        killed_pid = fill.pid
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", str(dags), "--db", str(db), "--max-tasks", "8"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            _wait_for(
                lambda: any(pid != killed_pid for pid in _ledger_pids(ledger)), "a resumed task"
            )
            elapsed = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate()
        info_lines = sum(" INFO " in line for line in stderr.splitlines())
        return {"restart_s": elapsed, "info_lines": info_lines}


def import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import engine, sensors"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    samples = [measure_once(args.runs) for _ in range(args.reps)]
    floors = [import_floor() for _ in range(args.reps)]
    restart = statistics.median(s["restart_s"] for s in samples)
    floor = statistics.median(floors)
    print(
        json.dumps(
            {
                "unfinished_runs": args.runs,
                "restart_s": [round(s["restart_s"], 3) for s in samples],
                "restart_median_s": round(restart, 3),
                "import_floor_median_s": round(floor, 3),
                "x_import_floor": round(restart / floor, 2),
                "info_lines": [s["info_lines"] for s in samples],
            }
        )
    )


if __name__ == "__main__":
    main()
