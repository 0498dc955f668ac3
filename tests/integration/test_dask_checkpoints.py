"""``ctx.checkpoint`` on the Dask runner (engine/runners/dask.py, dask_checkpoints.py), on a real
engine, a real SQLite state file and real Dask clusters on loopback: a ``LocalCluster`` of worker
processes shared by the module, a ``dask scheduler`` + ``dask worker`` started as commands, and
clusters of their own for the tests that close one or kill a worker. To hold a checkpoint while it waits for the engine,
a test takes the state file's write lock, so the engine cannot commit. Tests wait on ledger files,
rows, Dask's event log and the engine's metrics, never on time."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Dask, Engine, RunState, dag, task
from engine.runners.dask_checkpoints import CLOSING, STOPPED

sys.path.insert(0, str(Path(__file__).parent))
import dask_tasks as dt
from dask_cluster import (
    checkpoint_sent,
    command_cluster,
    free_port,
    local_cluster,
    until,
    wait_task,
    wait_tried,
    worker_pids,
)

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster() as c:
        yield c


@contextlib.contextmanager
def store_locked(db: Path) -> Iterator[None]:
    """Hold the state file's write lock: the engine's commits wait (and retry) until it is let go."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def worker_pid_running(cluster: Any, key: str) -> int:
    """The PID of the worker process running ``key``."""

    async def address() -> str:
        worker: str = cluster.scheduler.tasks[key].processing_on.address
        return worker

    running = cluster.sync(address)
    return next(n.process.pid for n in cluster.workers.values() if n.worker_address == running)


async def test_a_checkpoint_is_committed_when_it_returns_and_the_next_try_resumes_from_it(
    cluster: Any, tmp_path: Path
) -> None:
    ledger, release = str(tmp_path / "ledger"), str(tmp_path / "release")
    db = tmp_path / "r.db"

    @dag(runner=Dask(address=cluster.scheduler_address))
    def resuming() -> None:
        task(retries=1)(dt.resumes)(ledger, str(db), release)
        task(retries=1)(dt.resumes_async)(ledger, str(db), release)

    names = ("resumes", "resumes_async")
    async with Engine(db, dags=[resuming]) as engine:
        run_id = (await engine.trigger("resuming")).run_id
        done = {f"{n} checkpointed 2, stored {{'page': 2}}" for n in names}
        await until(lambda: done <= set(dt.lines(ledger)))
        Path(release).touch()
        for name in names:  # try 1 failed; try 2 waits for release-2
            assert (await wait_tried(engine, run_id, name)).error == (
                "ValueError: first try fails after its checkpoints"
            )
            await until(lambda: f"{name} 2 from {{'page': 2}}" in dt.lines(ledger))  # noqa: B023
            assert dt.stored_checkpoint(str(db), run_id, name) == {"page": 2}
        Path(release + "-2").touch()
        run = await engine.wait_run(run_id, timeout=60)
    assert run.state is RunState.SUCCESS
    for name in names:
        # as each checkpoint call returned on the worker, its value was in the state file already
        assert f"{name} checkpointed 1, stored {{'page': 1}}" in dt.lines(ledger)
        instance = run.tasks[name]
        assert instance.try_number == 2 and instance.checkpoint == {"page": 2}
        assert instance.result["resumed"] == {"page": 2}
        assert instance.result["pid"] in worker_pids(cluster)
        assert dt.lines(ledger).count(f"{name} 1 from None") == 1


async def test_concurrent_tries_keep_their_own_checkpoints_on_a_command_line_cluster(
    tmp_path: Path,
) -> None:
    ledger = str(tmp_path / "ledger")
    async with command_cluster(tmp_path, nthreads=4) as address:

        @dag(runner=Dask(address=address))
        def tags(name: str = "") -> None:
            tagged = task(dt.tagged)
            tagged.override(task_id="a")(ledger, 4)
            tagged.override(task_id="b")(ledger, 4)

        async with Engine(tmp_path / "t.db", dags=[tags]) as engine:
            first = await engine.trigger("tags", {"name": "one"})
            second = await engine.trigger("tags", {"name": "two"})
            runs = [await run.wait(timeout=120) for run in (first, second)]
    pids = set()
    for run, name in zip(runs, ("one", "two"), strict=True):
        assert run.state is RunState.SUCCESS
        for task_id in ("a", "b"):
            tag = f"{name}/{task_id}"
            instance = run.tasks[task_id]
            assert instance.checkpoint == {"tag": tag, "step": 2}
            assert instance.result["seen"] == [{"tag": tag, "step": s} for s in (1, 2)]
            pids.add(instance.result["pid"])
    assert len(pids) == 1  # four tries at once in the one worker process, its checkpoints apart
    assert sorted(dt.lines(ledger)) == sorted(
        f"{n}/{t} {s}" for n in ("one", "two") for t in ("a", "b") for s in (1, 2)
    )


async def test_a_checkpoint_that_cannot_be_stored_fails_the_try_saying_why(
    cluster: Any, tmp_path: Path
) -> None:
    @dag(runner=Dask(address=cluster.scheduler_address))
    def unstorable() -> None:
        task(dt.bad_checkpoint)()
        task(dt.big_checkpoint)()

    async with Engine(tmp_path / "b.db", dags=[unstorable], max_result_bytes=2000) as engine:
        run = await (await engine.trigger("unstorable")).wait(timeout=60)
    bad, big = run.tasks["bad_checkpoint"], run.tasks["big_checkpoint"]
    # not JSON: refused on the worker, before it travels
    assert bad.state == "failed" and bad.checkpoint is None
    assert bad.error == (
        "ResultError: checkpoint of task 'bad_checkpoint' is not JSON-serializable: "
        "value of type builtins.set"
    )
    # over the engine's cap: the engine's answer, raised on the worker
    assert big.state == "failed" and big.checkpoint is None
    assert big.error is not None and big.error.startswith(
        "ResultError: checkpoint of task 'big_checkpoint' is 5,002 bytes, over the 2,000-byte cap"
    ), big.error


async def test_a_try_cancelled_while_its_checkpoint_waits_is_refused_on_the_worker(
    cluster: Any, tmp_path: Path
) -> None:
    ledger, go = str(tmp_path / "ledger"), str(tmp_path / "go")
    db = tmp_path / "h.db"

    @dag(runner=Dask(address=cluster.scheduler_address))
    def held() -> None:
        task(dt.held_checkpoint)(ledger, go)

    async with Engine(db, dags=[held]) as engine:
        run_id = (await engine.trigger("held")).run_id
        key = f"podium-{run_id}-held_checkpoint-1"
        await until(lambda: "held started" in dt.lines(ledger))
        async with anyio.create_task_group() as tg:
            with store_locked(db):
                Path(go).touch()
                await until(lambda: checkpoint_sent(cluster, key))
                # the engine cannot commit it: the worker's thread waits for the answer
                assert "held first returned" not in dt.lines(ledger)
                tg.start_soon(engine.cancel_task, run_id, "held_checkpoint")
                # Dask cannot interrupt the task, but its waiting checkpoint is refused at once,
                # and so is the next one
                await until(lambda: f"held again refused: {STOPPED}" in dt.lines(ledger))
                assert f"held first refused: {STOPPED}" in dt.lines(ledger)
            # the lock is let go: the cancellation is committed, and cancel_task returns
        cancelled = await wait_task(engine, run_id, "held_checkpoint", "cancelled")
        await until(lambda: key not in cluster.scheduler.tasks)
    assert cancelled.result is None


async def test_a_cluster_that_goes_away_while_a_checkpoint_waits_fails_the_try(
    tmp_path: Path,
) -> None:
    ledger, go = str(tmp_path / "ledger"), str(tmp_path / "go")
    db = tmp_path / "k.db"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"

    @dag(runner=Dask(address=address, connect_timeout=2.0))
    def held() -> None:
        task(retries=30, retry_delay=0.2)(dt.held_checkpoint)(ledger, go)

    cluster = await anyio.to_thread.run_sync(local_cluster, port)
    try:
        async with Engine(db, dags=[held]) as engine:
            run_id = (await engine.trigger("held")).run_id
            key = f"podium-{run_id}-held_checkpoint-1"
            await until(lambda: "held started" in dt.lines(ledger))
            with store_locked(db):
                Path(go).touch()
                await until(lambda: checkpoint_sent(cluster, key))
                await anyio.to_thread.run_sync(cluster.close)  # scheduler and workers
                # the try fails while its checkpoint cannot be committed: it does not wait for it
                await until(lambda: engine.metrics.task_transitions[("held", "up_for_retry")])
            cluster = await anyio.to_thread.run_sync(local_cluster, port)  # back, same address
            run = await engine.wait_run(run_id, timeout=120)
            interrupted = run.tasks["held_checkpoint"].tries[0]
    finally:
        await anyio.to_thread.run_sync(cluster.close)
    assert interrupted.error is not None and interrupted.error.startswith(
        f"RunnerError: task 'held_checkpoint': the Dask scheduler at {address} went away"
    ), interrupted.error
    assert run.state is RunState.SUCCESS
    # the first try's worker never heard back: at most it learned that its worker was closing
    # (while the cluster closes, Dask may start the same key again on a worker not yet closed: each
    # such copy is refused the same way)
    said = [line for line in dt.lines(ledger) if line.startswith("held first")]
    assert said[0] == "held first checkpointing"
    assert set(said) <= {"held first checkpointing", f"held first refused: {CLOSING}"}, said
    assert "held first returned" not in dt.lines(ledger)


async def test_a_worker_that_dies_while_its_checkpoint_waits_fails_the_try(
    tmp_path: Path,
) -> None:
    ledger, go = str(tmp_path / "ledger"), str(tmp_path / "go")
    db = tmp_path / "w.db"
    cluster = await anyio.to_thread.run_sync(local_cluster)
    address = cluster.scheduler_address

    @dag(runner=Dask(address=address, connect_timeout=2.0))
    def held() -> None:
        task(dt.held_checkpoint)(ledger, go)

    try:
        async with Engine(db, dags=[held]) as engine:
            run_id = (await engine.trigger("held")).run_id
            key = f"podium-{run_id}-held_checkpoint-1"
            await until(lambda: "held started" in dt.lines(ledger))
            with store_locked(db):
                Path(go).touch()
                await until(lambda: checkpoint_sent(cluster, key))
                os.kill(worker_pid_running(cluster, key), signal.SIGKILL)
            run = await engine.wait_run(run_id, timeout=120)
            # Dask ran the key again on the other worker, whose checkpoint the engine no longer
            # served: letting go of the key refused it there
            await until(lambda: f"held first refused: {STOPPED}" in dt.lines(ledger))
    finally:
        await anyio.to_thread.run_sync(cluster.close)
    failed = run.tasks["held_checkpoint"]
    assert failed.state == "failed" and failed.error is not None
    assert failed.error.startswith(
        "RunnerError: task 'held_checkpoint': a checkpoint could not travel between the engine "
        "and Dask worker tcp://127.0.0.1:"
    ), failed.error
