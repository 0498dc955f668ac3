"""Kill -9 a real `podium run` process at several points of a running DAG and restart it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

    def start(self) -> None:
        self.starts += 1
        with self.logs.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", str(self.dag_file), "--db", str(self.db)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.wait_until(
            lambda: self.logs.read_text().count("podium serving") >= self.starts, "engine to serve"
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
    # every instance but the 4 waiting for the gate gets done (4 of the 8 slots stay free)
    harness.wait_until(
        lambda: sum(line.startswith("end handle[") for line in harness.lines()) >= 150,
        "most instances to finish",
        timeout=60,
    )
    harness.kill9()
    ended_before = {line.split()[1] for line in harness.lines() if line.startswith("end handle[")}
    harness.gate.touch()
    harness.start()
    final = harness.wait_finished(run_id, timeout=60)
    assert final["state"] == "success"
    assert final["tasks"]["total"]["result"] == sum(i * 2 for i in range(200))
    ends = Counter(line.split()[1] for line in harness.lines() if line.startswith("end handle["))
    assert set(ends) == {f"handle[{i}]" for i in range(200)}
    # an instance whose end was written before the kill may have been killed before its success
    # was committed (then it ran again); none ran more than twice, and the committed ones once
    doubled = {tid for tid, n in ends.items() if n > 1}
    assert doubled <= ended_before and len(doubled) <= 8
    for tid, task_ in final["tasks"].items():
        if tid.startswith("handle[") and tid not in doubled:
            # each start is a distinct committed try, none above the stored one (a try committed
            # but killed before its body wrote its line counts without a start)
            started = [int(s.split()[2]) for s in harness.lines() if s.startswith(f"start {tid} ")]
            assert len(started) == len(set(started)), (tid, started)
            assert all(1 <= n <= task_["try_number"] for n in started), (tid, started)


def test_kill_while_process_tasks_run_leaves_no_orphan_workers(tmp_path: Path) -> None:
    from engine.runners.reaper import start_time

    harness = Harness(tmp_path)
    harness.dag_file = Path(__file__).with_name("runner_dags.py")
    try:
        harness.start()
        run_id = harness.trigger("four_processes", key="k")
        harness.wait_until(
            lambda: sum(line.startswith("start held_") for line in harness.lines()) == 4,
            "four tasks to run in workers",
        )
        workers = {int(line.split()[3]) for line in harness.lines()}
        assert len(workers) == 4
        began = {pid: start_time(pid) for pid in workers}
        harness.kill9()
        # the killed engine's workers live on, still running their tasks ...
        assert all(began[pid] is not None for pid in workers)
        harness.start()
        # ... until the next start reaps them (before it serves)
        assert all(start_time(pid) != began[pid] for pid in workers)
        harness.gate.touch()
        run = harness.wait_finished(run_id)
        harness.stop()
    finally:
        if harness.proc is not None:
            harness.proc.kill()
            harness.proc.wait()
    assert run["state"] == "success"
    for i in range(4):
        held = run["tasks"][f"held_{i}"]
        assert held["try_number"] == 2 and held["result"] == 2
        assert held["tries"][0]["error"] == "engine stopped while running"
    retried = {int(line.split()[3]) for line in harness.lines() if line.split()[2] == "2"}
    assert not retried & workers  # the retries ran on new workers
