"""Kill -9 a real `podium run` process while a task on a Dask cluster waits for its checkpoint to be
committed: the Dask worker's thread must not wait forever for an engine that is gone, and the next
engine start runs the task again."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runners.dask_checkpoints import STOPPED
from tests.system.test_crash_recovery import Harness

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from dask_cluster import checkpoint_sent, local_cluster

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[Any]:
    with local_cluster() as c:
        yield c


def test_a_killed_engine_leaves_no_dask_worker_waiting_on_a_checkpoint(
    cluster: Any, tmp_path: Path
) -> None:
    harness = Harness(tmp_path)
    harness.dag_file = Path(__file__).with_name("dask_dags.py")
    harness.env["PODIUM_TEST_DASK"] = cluster.scheduler_address
    try:
        harness.start()
        run_id = harness.trigger("on_dask", key="k")
        harness.wait_until(lambda: "held started" in harness.lines(), "the task to start")
        with contextlib.closing(sqlite3.connect(harness.db, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")  # the engine cannot commit: the checkpoint waits
            harness.gate.touch()
            key = f"podium-{run_id}-held-1"
            harness.wait_until(lambda: checkpoint_sent(cluster, key), "the checkpoint to be sent")
            harness.kill9()
            # the scheduler lets go of the dead client's keys; the worker refuses the waiting
            # checkpoint and the next one, so the task runs to its end instead of waiting forever
            harness.wait_until(
                lambda: f"held again refused: {STOPPED}" in harness.lines(), "the refusal"
            )
            conn.execute("ROLLBACK")
        assert f"held first refused: {STOPPED}" in harness.lines()
        harness.wait_until(lambda: key not in cluster.scheduler.tasks, "the key to go")
        harness.start()
        run = harness.wait_finished(run_id, timeout=60)
        harness.stop()
    finally:
        if harness.proc is not None:
            harness.proc.kill()
            harness.proc.wait()
    assert run["state"] == "success", run
    held = run["tasks"]["held"]
    assert held["try_number"] == 2 and held["result"] == 2
    assert held["tries"][0]["error"] == "engine stopped while running"
    # the first try's checkpoint was never committed (the engine died holding it)
    assert "held 2 from None" in harness.lines()
    assert not any(line.endswith("returned") for line in harness.lines())
