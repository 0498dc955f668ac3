"""Recovery operations through the CLI: handed to a serving engine, or done here with --path;
backfill interrupted by SIGKILL and continued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).with_name("ops_dags.py")


class Podium:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "ops.db"
        self.state = tmp_path
        self.env = {**os.environ, "PODIUM_TEST_STATE": str(tmp_path), "COLUMNS": "200"}
        self.server: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "engine.log"
        self.log.touch()

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "engine", *args, "--db", str(self.db)],
            env=self.env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if check:
            assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        return out

    def serve(self) -> None:
        with self.log.open("ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", str(DAGS), "--db", str(self.db)],
                env=self.env, stdout=log, stderr=log,
            )  # fmt: skip
        self.until(lambda: "podium serving" in self.log.read_text(), "engine start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=30)
            self.server = None

    def until(self, condition: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {what}\n{self.log.read_text()}")
            time.sleep(0.05)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        out = self("runs", "--dag", dag_id, "--json", "--limit", "1000")
        return [json.loads(line) for line in out.stdout.splitlines()]

    def show(self, run_id: str) -> dict[str, Any]:
        return json.loads(self("show", run_id, "--json").stdout)

    def ledger(self) -> list[str]:
        path = self.state / "ledger.txt"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def podium(tmp_path: Path) -> Iterator[Podium]:
    p = Podium(tmp_path)
    yield p
    if p.server is not None:
        p.server.kill()
        p.server.wait()


def test_operations_are_handed_to_the_serving_engine(podium: Podium) -> None:
    (podium.state / "broken").touch()
    podium.serve()
    podium("trigger", "guarded", "--key", "g1")
    run_id = podium.runs("guarded")[0]["run_id"]
    podium.until(lambda: podium.show(run_id)["state"] == "paused", "run paused")
    shown = podium.show(run_id)
    assert shown["tasks"]["extract"]["state"] == "failed"
    assert shown["tasks"]["load"]["state"] == "paused"
    (podium.state / "broken").unlink()
    podium("resume", run_id, "--wait")
    assert podium.show(run_id)["state"] == "success"

    podium("rerun", run_id, "--task", "extract", "--downstream", "--wait")
    again = podium.show(run_id)
    assert again["tasks"]["extract"]["try_number"] == 3
    assert [t["state"] for t in again["tasks"]["extract"]["tries"]] == [
        "failed",
        "success",
        "success",
    ]

    podium("pause", "guarded")
    podium("trigger", "guarded", "--key", "while-paused")
    time.sleep(0.6)  # longer than the engine's poll interval: the run is picked up, not started
    paused_run = next(r for r in podium.runs("guarded") if r["key"] == "while-paused")
    assert paused_run["state"] == "queued"
    podium("unpause", "guarded")
    podium.until(lambda: podium.show(paused_run["run_id"])["state"] == "success", "unpaused run")

    podium("trigger", "stuck", "--key", "s1")
    stuck_id = podium.runs("stuck")[0]["run_id"]
    podium.until(lambda: podium.show(stuck_id)["tasks"]["forever"]["state"] == "running", "stuck")
    podium("cancel", stuck_id, "--reason", "operator gave up")
    cancelled = podium.show(stuck_id)
    assert cancelled["state"] == "cancelled"
    assert cancelled["note"] == "operator gave up"

    out = podium(
        "backfill", "nightly", "--start", "2026-11-01", "--end", "2026-11-03", "--max-active", "2"
    )
    assert '"created":3' in out.stdout
    podium.stop()
    nightly = podium.runs("nightly")
    # 2026-11-01 is the fall-back day in New York: 02:30 EST is 07:30 UTC, the days before 06:30 UTC
    assert sorted(r["key"] for r in nightly) == [
        "timer:nightly:2026-11-01T07:30:00+00:00",
        "timer:nightly:2026-11-02T07:30:00+00:00",
        "timer:nightly:2026-11-03T07:30:00+00:00",
    ]
    missing = podium("resume", run_id, check=False)
    assert missing.returncode == 2 and "no engine serves" in missing.stderr


def test_backfill_killed_midway_continues_without_duplicates(podium: Podium) -> None:
    args = [sys.executable, "-m", "engine", "backfill", "nightly", "--db", str(podium.db),
            "--path", str(DAGS), "--start", "2026-03-01", "--end", "2026-03-12", "--max-active", "1"]  # fmt: skip
    proc = subprocess.Popen(
        args, env=podium.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    podium.until(
        lambda: sum(line.startswith("slot") for line in podium.ledger()) >= 4, "backfill progress"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done_before = sum(line.startswith("slot") for line in podium.ledger())
    assert done_before < 12
    finished = subprocess.run(
        args, env=podium.env, capture_output=True, text=True, timeout=90, check=False
    )
    assert finished.returncode == 0, finished.stderr
    runs = podium.runs("nightly")
    assert len(runs) == 12 and {r["state"] for r in runs} == {"success"}
    assert len({r["key"] for r in runs}) == 12
    executed = Counter(line.split()[1] for line in podium.ledger() if line.startswith("slot"))
    assert len(executed) == 12
    # a slot runs twice only if the kill hit it mid-task (it is retried, never duplicated as a run)
    assert sum(executed.values()) - 12 <= 1


def test_rerun_interrupted_by_a_crash_completes_after_restart(podium: Podium) -> None:
    podium.serve()
    podium("trigger", "slowly", "--key", "once", "--wait")
    run_id = podium.runs("slowly")[0]["run_id"]
    podium("rerun", run_id)  # handed to the engine, which starts the task again
    podium.until(lambda: "slow_step 2" in podium.ledger(), "the rerun to start")
    assert podium.server is not None
    podium.server.send_signal(signal.SIGKILL)
    podium.server.wait(timeout=10)
    podium.server = None
    podium.serve()
    podium.until(lambda: podium.show(run_id)["state"] == "success", "the rerun to finish")
    podium.stop()
    task = podium.show(run_id)["tasks"]["slow_step"]
    assert [t["state"] for t in task["tries"]] == ["success", "failed", "success"]
    assert task["tries"][1]["error"] == "engine stopped while running"
    assert podium.ledger().count("slow_step 3") == 1
    assert len(podium.runs("slowly")) == 1
