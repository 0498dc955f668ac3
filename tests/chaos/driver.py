"""Kill -9 anywhere: run `podium run` under a steady Kafka + timer + manual load, SIGKILL it at
random (seeded) moments, restart it, and check the guarantees against the broker and the store.

    .venv/bin/python -m tests.chaos.driver --kills 200 [--seed N]      # `make chaos`

Checks, after every restart and at the end:
- every produced event and every manual trigger has exactly one run, and every run finishes;
- no task whose success was committed ran again: every start of a task is a distinct try whose
  number was committed before it started, none above the stored (final) try number;
- no limit was exceeded: counted from the tasks' own start/end lines (pool `warehouse` = 2,
  max_tasks = 8), per engine process;
- the timer fired each slot at most once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tests.servers import KafkaBroker, create_topic, produce

DAGS = Path(__file__).with_name("chaos_dags.py")
MAX_TASKS = 8
POOL_SLOTS = 2


@dataclass
class ChaosReport:
    seed: int
    kills: int = 0
    events_produced: int = 0
    manual_triggers: int = 0
    runs: int = 0
    timer_runs: int = 0
    task_starts: int = 0
    retried_tries: int = 0
    max_live_global: int = 0
    max_live_pool: int = 0
    problems: list[str] = field(default_factory=list)


class Chaos:
    def __init__(self, workdir: Path, broker: KafkaBroker, seed: int) -> None:
        self.workdir = workdir
        self.db = workdir / "chaos.db"
        self.ledger = workdir / "ledger.txt"
        self.log = workdir / "engine.log"
        self.topic = f"chaos-{seed}"
        self.broker = broker
        self.rng = random.Random(seed)
        self.report = ChaosReport(seed=seed)
        self.env = {
            **os.environ,
            "PODIUM_CHAOS_LEDGER": str(self.ledger),
            "PODIUM_CHAOS_TOPIC": self.topic,
            "PODIUM_CHAOS_BOOTSTRAP": broker.bootstrap,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.produced = 0
        self.manual_keys: list[str] = []
        self._stop_load = threading.Event()
        self._problems: set[str] = set()

    # -- the engine process ------------------------------------------------------------------------

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", str(DAGS), "--db", str(self.db),
                 "--pool", f"warehouse={POOL_SLOTS}", "--max-tasks", str(MAX_TASKS)],
                env=self.env, stdout=out, stderr=out,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        self.report.kills += 1

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
            self.proc = None

    # -- load ------------------------------------------------------------------------------------

    def produce_steadily(self) -> None:
        async def loop() -> None:
            while not self._stop_load.is_set():
                batch = [{"n": self.produced + i} for i in range(5)]
                await produce(self.broker.bootstrap, self.topic, batch)
                self.produced += len(batch)
                await anyio.sleep(0.2)  # ~25 events/s: steady load the engine keeps up with

        anyio.run(loop)

    def trigger_manually(self) -> None:
        key = f"manual-{len(self.manual_keys)}"
        out = subprocess.run(
            [sys.executable, "-m", "engine", "trigger", "manual", "--db", str(self.db),
             "--key", key, "--param", f"n={len(self.manual_keys)}"],
            env=self.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if out.returncode == 0:
            self.manual_keys.append(key)
        else:
            self._problems.add(f"manual trigger {key} failed: {out.stderr[-500:]}")

    # -- the run ---------------------------------------------------------------------------------

    def run(self, kills: int) -> ChaosReport:
        anyio.run(create_topic, self.broker.bootstrap, self.topic, 3)
        producer = threading.Thread(target=self.produce_steadily, daemon=True)
        self.start()
        self._wait_serving(1)
        self.trigger_manually()  # the DAGs are registered: the CLI can queue runs from now on
        producer.start()
        try:
            for i in range(kills):
                time.sleep(self.rng.uniform(0.3, 1.5))
                if i % 3 == 0:
                    self.trigger_manually()
                self.kill()
                self.check(final=False)
                self.start()
                self._wait_serving(i + 2)
        finally:
            self._stop_load.set()
            producer.join(timeout=30)
        self.report.events_produced = self.produced
        self.report.manual_triggers = len(self.manual_keys)
        self._wait_all_done(timeout=600)
        self.stop()
        self.check(final=True)
        self.report.problems = sorted(self._problems)
        return self.report

    def _wait_serving(self, starts: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count("podium serving") < starts:
            if time.monotonic() > deadline:
                raise RuntimeError(f"engine did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def _wait_all_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            runs = self._runs()
            event_runs = [r for r in runs if r["dag_id"] == "on_event"]
            manual = [r for r in runs if r["dag_id"] == "manual"]
            if (
                len(event_runs) >= self.produced
                and len(manual) >= len(self.manual_keys)
                and all(r["state"] in ("success", "failed", "cancelled") for r in runs)
            ):
                return
            if time.monotonic() > deadline:
                self._problems.add(
                    f"not finished after {timeout}s: {len(event_runs)}/{self.produced} event runs"
                )
                return
            time.sleep(0.2)

    # -- checks ----------------------------------------------------------------------------------

    def _runs(self) -> list[dict[str, Any]]:
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute("SELECT * FROM runs")]
            except sqlite3.OperationalError:
                return []

    def check(self, *, final: bool) -> None:
        problems = self._problems
        runs = self._runs()
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn:
            tries = {
                (run_id, task_id): (try_number, state)
                for run_id, task_id, try_number, state in conn.execute(
                    "SELECT run_id, task_id, try_number, state FROM task_instances"
                )
            }
        keys = Counter((r["dag_id"], r["run_key"]) for r in runs)
        problems.update(f"two runs for {k}" for k, n in keys.items() if n > 1)
        event_ns = Counter(json.loads(r["params"])["n"] for r in runs if r["dag_id"] == "on_event")
        problems.update(f"event n={n} has {c} runs" for n, c in event_ns.items() if c > 1)
        starts: Counter[tuple[str, str]] = Counter()
        started_tries: Counter[tuple[str, str, int]] = Counter()
        intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        open_starts: dict[tuple[str, str, str, str], float] = {}
        lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
        last_time = max((float(line.split()[5]) for line in lines), default=0.0)
        for line in lines:
            what, pid, run_id, task_id, try_number, ts = line.split()
            if what == "start":
                starts[(run_id, task_id)] += 1
                started_tries[(run_id, task_id, int(try_number))] += 1
                open_starts[(pid, run_id, task_id, try_number)] = float(ts)
            else:
                began = open_starts.pop((pid, run_id, task_id, try_number), None)
                if began is not None:
                    intervals[pid].append((began, float(ts), task_id))
        for (pid, _, task_id, _), began in open_starts.items():  # killed mid-task
            intervals[pid].append((began, last_time + 1, task_id))
        # Every start is a counted try: its number was committed before it started, so no try
        # starts twice and none has a number above the stored one (a try committed but killed
        # before its body ran is counted without a start: fewer starts than tries is fine). The
        # stored try is the last; a success ends the tries, so nothing ran after a success.
        for (run_id, task_id, try_number), count in started_tries.items():
            stored = tries.get((run_id, task_id))
            if stored is None:
                problems.add(f"{run_id}/{task_id} started but has no stored task instance")
            elif count > 1:
                problems.add(f"{run_id}/{task_id} try {try_number} started {count} times")
            elif try_number > stored[0]:
                problems.add(
                    f"{run_id}/{task_id} try {try_number} started but the stored try is {stored[0]}"
                )
        for spans in intervals.values():
            self.report.max_live_global = max(self.report.max_live_global, _max_overlap(spans))
            pool = [s for s in spans if s[2] == "load"]
            self.report.max_live_pool = max(self.report.max_live_pool, _max_overlap(pool))
        if self.report.max_live_global > MAX_TASKS:
            problems.add(f"{self.report.max_live_global} tasks live at once (max {MAX_TASKS})")
        if self.report.max_live_pool > POOL_SLOTS:
            problems.add(f"{self.report.max_live_pool} in pool warehouse (max {POOL_SLOTS})")
        timer_slots = Counter(r["logical_date"] for r in runs if r["dag_id"] == "ticker")
        problems.update(f"timer slot {s} fired {n} times" for s, n in timer_slots.items() if n > 1)
        if final:
            missing = set(range(self.produced)) - set(event_ns)
            if missing:
                problems.add(f"{len(missing)} events have no run, e.g. {sorted(missing)[:5]}")
            manual = {r["run_key"] for r in runs if r["dag_id"] == "manual"}
            problems.update(
                f"manual trigger {k} has no run" for k in self.manual_keys if k not in manual
            )
            unfinished = [r["run_id"] for r in runs if r["state"] not in ("success",)]
            problems.update(f"run {r} did not succeed" for r in unfinished[:10])
            self.report.runs = len(runs)
            self.report.timer_runs = sum(timer_slots.values())
            self.report.task_starts = sum(starts.values())
            self.report.retried_tries = sum(n - 1 for n in starts.values() if n > 1)


def _max_overlap(spans: list[tuple[float, float, str]]) -> int:
    edges = sorted([(b, 1) for b, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    live = peak = 0
    for _, delta in edges:
        live += delta
        peak = max(peak, live)
    return peak


def run_chaos(
    workdir: Path, kills: int, seed: int, broker: KafkaBroker | None = None
) -> ChaosReport:
    own = broker is None
    broker = broker or KafkaBroker.from_env().start()
    try:
        return Chaos(workdir, broker, seed).run(kills)
    finally:
        if own:
            broker.close()


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"chaos: {args.kills} kills, seed {seed} (replay with --seed {seed})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_chaos(Path(tmp), args.kills, seed)
    print(json.dumps(report.__dict__, indent=2))
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
