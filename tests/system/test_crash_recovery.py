"""Kill -9 a real `podium run` process at several points of a running DAG and restart it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

DAG_FILE = Path(__file__).with_name("crash_dags.py")


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "state.db"
        self.ledger = tmp_path / "ledger.txt"
        self.gate = tmp_path / "gate"
        self.ledger.touch()
        self.env = {
            **os.environ,
            "PODIUM_TEST_LEDGER": str(self.ledger),
            "PODIUM_TEST_GATE": str(self.gate),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs = tmp_path / "engine.log"
        self.logs.touch()
        self.starts = 0
        self.dag_file = DAG_FILE

    def podium(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args, "--db", str(self.db)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, timeout: float = 30) -> None:
        self.starts += 1
        with self.logs.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", str(self.dag_file), "--db", str(self.db)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.wait_until(
            lambda: self.logs.read_text().count("podium serving") >= self.starts,
            "engine to serve",
            timeout,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def lines(self) -> list[str]:
        return self.ledger.read_text().splitlines()

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"engine exited early:\n{self.logs.read_text()}")
            time.sleep(0.02)
        raise AssertionError(
            f"timed out waiting for {what}; ledger={self.lines()}\n{self.logs.read_text()}"
        )

    def show(self, run_id: str) -> dict[str, Any]:
        out = self.podium("show", run_id, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def trigger(self, dag_id: str, key: str) -> str:
        out = self.podium("trigger", dag_id, "--key", key)
        assert out.returncode == 0, out.stderr
        runs = self.podium("runs", "--json", "--dag", dag_id)
        for line in runs.stdout.splitlines():
            row = json.loads(line)
            if row["key"] == key:
                return str(row["run_id"])
        raise AssertionError(f"run with key {key} not found: {runs.stdout}")

    def wait_finished(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal result
            result = self.show(run_id)
            return result["state"] in ("success", "failed", "cancelled")

        self.wait_until(finished, f"run {run_id} to finish", timeout)
        return result


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    if h.proc is not None:
        h.proc.kill()
        h.proc.wait()


def test_kill_while_a_task_runs_retries_it_and_never_reruns_committed_successes(
    harness: Harness,
) -> None:
    harness.start()
    run_id = harness.trigger("crashy", key="day-1")
    harness.wait_until(
        lambda: "checkpointed blocking 1" in harness.lines(), "blocking to commit its checkpoint"
    )
    harness.kill9()

    harness.gate.touch()
    harness.start()
    run = harness.wait_finished(run_id)
    harness.stop()

    assert run["state"] == "success"
    tasks = run["tasks"]
    assert tasks["last"]["result"] == 20
    lines = harness.lines()
    assert [line for line in lines if line.startswith("start first")] == ["start first 1"]
    assert [line for line in lines if line.startswith("start blocking")] == [
        "start blocking 1 None",
        "start blocking 2 {'page': 7}",  # the checkpoint survived the crash
    ]
    assert tasks["blocking"]["try_number"] == 2
    assert tasks["blocking"]["tries"][0]["error"] == "engine stopped while running"
    assert tasks["first"]["try_number"] == 1
    # the same key after the crash returns the same run and creates nothing
    assert harness.trigger("crashy", key="day-1") == run_id
    assert len(harness.podium("runs", "--json").stdout.splitlines()) == 1


def test_kill_fails_a_running_task_without_tries_left(harness: Harness) -> None:
    harness.start()
    run_id = harness.trigger("fragile", key="once")
    harness.wait_until(lambda: "start no_retries 1" in harness.lines(), "task to start")
    harness.kill9()
    harness.gate.touch()
    harness.start()
    run = harness.wait_finished(run_id)
    harness.stop()
    assert run["state"] == "failed"
    assert run["tasks"]["no_retries"]["state"] == "failed"
    assert run["tasks"]["no_retries"]["error"] == "engine stopped while running"
    assert run["tasks"]["after"]["state"] == "upstream_failed"
    assert "start after" not in harness.lines()


def test_kill_at_random_points_of_a_chain(harness: Harness) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    harness.gate.touch()
    harness.start()
    run_id = harness.trigger("chain", key="chain-1")
    kills = 0
    while kills < 4:
        harness.wait_until(
            lambda: any(line.startswith("start step") for line in harness.lines()), "chain start"
        )
        time.sleep(rng.uniform(0.0, 0.15))
        state = harness.show(run_id)["state"]
        if state == "success":
            break
        harness.kill9()
        kills += 1
        harness.start()
    run = harness.wait_finished(run_id, timeout=60)
    harness.stop()
    assert run["state"] == "success", run
    starts = Counter(line.split()[1] for line in harness.lines() if line.startswith("start"))
    for i in range(8):
        tid = f"step_{i}"
        # every start was a counted try: the try number is durable before the task starts,
        # and a task whose success was committed never started again
        assert run["tasks"][tid]["try_number"] == starts[tid], (seed, tid, starts)
        assert run["tasks"][tid]["result"] == i


def test_kill_while_mapped_instances_run_reruns_none_of_the_committed_ones(
    harness: Harness,
) -> None:
    harness.start()
    run_id = harness.trigger("mapped", "m-1")
    # half of the 10 000 instances done (4 wait for the gate, so 4 of the 8 slots stay busy)
    harness.wait_until(
        lambda: sum(line.startswith("end handle[") for line in harness.lines()) >= 5_000,
        "half of the instances to finish",
        timeout=180,
    )
    harness.kill9()
    committed = {t for t in committed_successes(harness.db, run_id) if t.startswith("handle[")}
    assert len(committed) >= 1_000, len(committed)  # the kill found many committed instances
    ended_before = {line.split()[1] for line in harness.lines() if line.startswith("end handle[")}
    harness.gate.touch()
    harness.start()
    final = harness.wait_finished(run_id, timeout=180)
    assert final["state"] == "success"
    assert final["tasks"]["total"]["result"] == sum(i * 2 for i in range(10_000))
    lines = harness.lines()
    ends = Counter(line.split()[1] for line in lines if line.startswith("end handle["))
    starts = Counter(line.split()[1] for line in lines if line.startswith("start handle["))
    assert set(ends) == {f"handle[{i}]" for i in range(10_000)}
    # an instance committed before the kill ran once; one whose end was written before the kill
    # but whose success was not yet committed may have run again (at most the 8 live ones)
    assert {tid for tid in committed if starts[tid] != 1 or ends[tid] != 1} == set()
    doubled = {tid for tid, n in ends.items() if n > 1}
    assert doubled <= ended_before - committed and len(doubled) <= 8
    for tid in doubled | {t for t, n in starts.items() if n > 1}:
        # each start is a distinct committed try, none above the stored one (a try committed
        # but killed before its body wrote its line counts without a start)
        started = [int(s.split()[2]) for s in lines if s.startswith(f"start {tid} ")]
        assert len(started) == len(set(started)), (tid, started)
        assert all(1 <= n <= final["tasks"][tid]["try_number"] for n in started), (tid, started)


def committed_successes(db: Path, run_id: str) -> set[str]:
    """The task ids of the run whose success the state file holds."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT task_id FROM task_instances WHERE run_id = ? AND state = 'success'", (run_id,)
        ).fetchall()
    return {str(task_id) for (task_id,) in rows}


def recorded_workers(db: Path) -> dict[int, int | None]:
    """The state file's ``runner_processes``: the PID and start time of each live worker."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return dict(conn.execute("SELECT pid, start_time FROM runner_processes").fetchall())


def alive(pid: int, created: float) -> bool:
    """Whether the process that held ``pid`` when it was created at ``created`` still runs (a zombie
    runs nothing; a PID reused since belongs to another process)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(420)  # 2 x 8 worker processes starting on a busy 2-core machine
def test_kill_while_eight_process_tasks_run_leaves_no_orphan_and_retries_each(
    tmp_path: Path,
) -> None:
    from engine.runners.reaper import start_time

    harness = Harness(tmp_path)
    harness.dag_file = Path(__file__).with_name("runner_dags.py")
    held = [f"held_{i}" for i in range(8)]
    before: dict[int, float] = {}  # every worker and task child alive at the kill: PID -> created
    again: dict[int, float] = {}  # the same for the retries

    def started(try_number: int) -> dict[str, tuple[int, int]]:
        """The held tasks whose try ``try_number`` started: task -> (worker PID, child PID)."""
        out = {}
        for fields in map(str.split, harness.lines()):
            if fields[1].startswith("held_") and fields[2] == str(try_number):
                out[fields[1]] = (int(fields[3]), int(fields[4]))
        return out

    try:
        harness.start(timeout=120)
        run_id = harness.trigger("eight_processes", key="k")
        harness.wait_until(lambda: len(started(1)) == 8, "eight tasks to run", timeout=180)
        first = started(1)
        workers = {worker for worker, _ in first.values()}
        assert len(workers) == 8  # eight tries at once, one per worker of Process(workers=8)
        # committed before any try started: prepare's success, the eight running rows of try 1,
        # and each worker's PID with the start time of the process that holds it now
        tasks = harness.show(run_id)["tasks"]
        assert tasks["prepare"]["state"] == "success"
        assert {(tasks[t]["state"], tasks[t]["try_number"]) for t in held} == {("running", 1)}
        recorded = recorded_workers(harness.db)
        assert {w: recorded.get(w) for w in workers} == {w: start_time(w) for w in workers}
        for pid in [*workers, *(child for _, child in first.values())]:
            before[pid] = psutil.Process(pid).create_time()

        harness.kill9()
        # the killed engine's workers and their children live on, still in their tasks ...
        assert all(alive(pid, created) for pid, created in before.items())
        harness.start(timeout=120)
        # ... until the next start kills their process groups, before it serves
        assert "killed 8 worker process(es) left by an engine" in harness.logs.read_text()
        harness.wait_until(
            lambda: not any(alive(pid, created) for pid, created in before.items()),
            "the workers and task children of the killed engine to be gone",
            timeout=60,
        )
        # each interrupted try was counted: try 2 of every task runs, on the new engine's workers
        harness.wait_until(lambda: len(started(2)) == 8, "eight retries to run", timeout=180)
        for pid in {pid for pair in started(2).values() for pid in pair}:
            again[pid] = psutil.Process(pid).create_time()
            assert (pid, again[pid]) not in before.items()  # a new worker, a new child
        old_rows = {(w, recorded[w]) for w in workers}
        assert not old_rows & set(recorded_workers(harness.db).items())
        harness.gate.touch()
        run = harness.wait_finished(run_id, timeout=120)
        harness.stop()
    finally:
        harness.gate.touch()
        if harness.proc is not None:
            harness.proc.kill()
            harness.proc.wait()
        for pid, created in [*before.items(), *again.items()]:  # none left behind, even on failure
            if alive(pid, created):
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()

    assert run["state"] == "success", run
    tasks = run["tasks"]
    # the task whose success was committed before the kill never ran again
    assert [line.split()[2] for line in harness.lines() if line.startswith("start prepare")] == [
        "1"
    ]
    assert (tasks["prepare"]["try_number"], tasks["prepare"]["result"]) == (1, 100)
    for i, tid in enumerate(held):
        assert tasks[tid]["try_number"] == 2 and tasks[tid]["result"] == 100 + 10 * i + 2
        assert [(t["try_number"], t["state"], t["error"]) for t in tasks[tid]["tries"]] == [
            (1, "failed", "engine stopped while running"),
            (2, "success", None),
        ]
        starts = [line.split()[2] for line in harness.lines() if line.split()[1] == tid]
        assert starts == ["1", "2"]  # one start per counted try
    assert tasks["total"]["result"] == sum(100 + 10 * i + 2 for i in range(8))
    # the retries' children were ended by their tasks, and their workers by the engine's stop
    harness.wait_until(
        lambda: not any(alive(pid, created) for pid, created in again.items()),
        "the retries' workers and children to be gone",
    )


@pytest.mark.timeout(300)  # the first start builds the environment (uv venv, no packages)
def test_kill_leaves_no_orphan_virtualenv_workers_busy_or_idle(tmp_path: Path) -> None:
    from engine.runners.reaper import start_time

    harness = Harness(tmp_path)
    harness.dag_file = Path(__file__).with_name("venv_dags.py")
    harness.env["PODIUM_VENV_CACHE"] = str(tmp_path / "venvs")  # nothing from an earlier session
    before: dict[int, float] = {}  # the warm workers alive at the kill: PID -> created

    def pids(prefix: str) -> list[int]:
        return [int(line.split()[3]) for line in harness.lines() if line.startswith(prefix)]

    try:
        harness.start(timeout=120)
        run_id = harness.trigger("venv_pool", key="k")
        harness.wait_until(lambda: pids("start held 1 "), "held to run", timeout=180)
        warm, (busy,) = set(pids("warm ")), pids("start held 1 ")
        assert len(warm) == 2 and busy in warm  # two warm workers: one busy, the other idle
        recorded = recorded_workers(harness.db)
        assert {w: recorded.get(w) for w in warm} == {w: start_time(w) for w in warm}
        before = {pid: psutil.Process(pid).create_time() for pid in warm}

        harness.kill9()
        # the busy worker lives on in its task (the idle one exits once its pipe closes, or is
        # killed with the busy one if it has not yet) ...
        assert alive(busy, before[busy])
        harness.start(timeout=120)
        # ... until the next start kills it, before it serves
        killed = re.search(
            r"killed \d+ worker process\(es\) left by an engine.*: ([\d, ]+)",
            harness.logs.read_text(),
        )
        assert killed is not None and busy in {int(pid) for pid in killed[1].split(", ")}
        harness.wait_until(
            lambda: not any(alive(pid, created) for pid, created in before.items()),
            "the warm workers of the killed engine to be gone",
            timeout=60,
        )
        harness.gate.touch()
        run = harness.wait_finished(run_id, timeout=120)
        harness.stop()
    finally:
        harness.gate.touch()
        if harness.proc is not None:
            harness.proc.kill()
            harness.proc.wait()
        for pid, created in before.items():  # none left behind, even on failure
            if alive(pid, created):
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()

    assert run["state"] == "success", run
    held = run["tasks"]["held"]
    assert (held["try_number"], held["result"]) == (2, 2)
    assert held["tries"][0]["error"] == "engine stopped while running"
    (retried,) = pids("start held 2 ")
    assert retried not in before  # the retry ran on a worker of the new engine
    # the warm tasks' successes were committed before the kill: they never ran again
    assert sorted(line.split()[1] for line in harness.lines() if line.startswith("warm ")) == [
        "warm_0",
        "warm_1",
    ]
