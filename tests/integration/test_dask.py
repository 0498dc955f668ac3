"""The Dask runner (engine/runners/dask.py) on a real engine, a real SQLite state file and a real
Dask cluster on loopback: a scheduler and two worker processes (``LocalCluster``), one shared by the
module, plus one of its own for the test that kills it. Tasks note what they do in a ledger file;
the tests wait on files, runs and states, never on time."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Dask, Engine, RunnerError, RunState, dag, task

sys.path.insert(0, str(Path(__file__).parent))
import dask_tasks as dt
from dask_cluster import free_port, local_cluster, until, wait_task, wait_tried, worker_pids

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster() as c:
        yield c


async def test_tasks_run_on_the_workers_with_results_logs_errors_and_retries(
    cluster: Any, tmp_path: Path
) -> None:
    ledger = str(tmp_path / "ledger")
    on_dask = Dask(address=cluster.scheduler_address)

    @dag(runner=on_dask)
    def remote() -> None:
        task(dt.where)(ledger)
        task(dt.where_async)(ledger)
        task(dt.fails)(ledger)
        task(retries=1)(dt.flaky)(ledger)

    async with Engine(tmp_path / "d.db", dags=[remote]) as engine:
        run = await (await engine.trigger("remote")).wait(timeout=60)
        logs = await engine.task_logs(run.run_id, "where")
        fails_logs = await engine.task_logs(run.run_id, "fails")
    tasks = run.tasks
    # on the workers, not in the engine's process
    where = tasks["where"].result
    assert where["pid"] != os.getpid() and where["pid"] in worker_pids(cluster)
    assert where["worker"] in cluster.scheduler_info["workers"]
    assert tasks["where_async"].result in worker_pids(cluster)
    # the worker's logging, ctx.log and prints reach the try's log
    messages = [(line["level"], line["message"]) for line in logs]
    assert ("INFO", f"running on Dask worker {where['worker']} (pid {where['pid']})") in messages
    assert ("WARNING", "logged on the worker") in messages
    assert ("INFO", "ctx.log on the worker") in messages
    assert ("INFO", "printed on the worker") in messages
    # a failing task fails its try with the worker's exception, its traceback from the worker
    fails = tasks["fails"]
    assert fails.state == "failed" and fails.error is not None
    assert fails.error.startswith("ValueError: bad input on pid ")
    assert int(fails.error.rsplit(" ", 1)[1]) in worker_pids(cluster)
    assert fails.traceback is not None and "dask_tasks.py" in fails.traceback
    assert any("running on Dask worker" in line["message"] for line in fails_logs)
    # the task's retry policy: try 1 failed on the worker, try 2 succeeded
    flaky = tasks["flaky"]
    assert flaky.state == "success" and flaky.result == 2
    assert flaky.tries[0].error == "ConnectionError: first try fails"
    assert sorted(dt.lines(ledger)) == ["fails", "flaky 1", "flaky 2", "where 1", "where_async"]


async def test_cancel_and_timeout_of_queued_and_running_tasks(cluster: Any, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger")
    release = str(tmp_path / "release")
    on_dask = Dask(address=cluster.scheduler_address)
    blocker = task(runner=on_dask)(dt.block)

    @task
    async def both_started() -> None:  # so that queued reaches Dask when no thread is free
        while not {"a", "b"} <= {line.split()[0] for line in dt.lines(ledger)}:
            await anyio.sleep(0.02)

    @dag
    def busy() -> None:  # two blockers fill the two worker threads; the third waits for one
        blocker.override(task_id="a")(ledger, "a", release)
        # b's timeout is long enough for the engine to hear that it started, on a busy machine
        blocker.override(task_id="b", timeout=5.0)(ledger, "b", release)
        both_started() >> blocker.override(task_id="queued")(ledger, "queued", release)

    async with Engine(tmp_path / "c.db", dags=[busy]) as engine:
        started = await engine.trigger("busy")
        run_id = started.run_id
        await wait_task(engine, run_id, "queued", "running")  # submitted, waiting for a thread
        # the engine heard that a started (the worker says so), so it is cancelled while it runs
        await _wait_log(engine, run_id, "a", "running on Dask worker")
        # a is cancelled while it runs, queued before it starts; b times out while it runs
        await engine.cancel_task(run_id, "queued")
        await engine.cancel_task(run_id, "a")
        await until(lambda: f"podium-{run_id}-queued-1" not in cluster.scheduler.tasks)
        timed = await wait_task(engine, run_id, "b", "failed")
        run = await engine.get_run(run_id)
        assert run.tasks["a"].state == "cancelled" and run.tasks["queued"].state == "cancelled"
        # the running ones keep running on their workers: Dask cannot interrupt them
        assert not any(line.endswith("finished") for line in dt.lines(ledger))
        Path(release).touch()
        await until(lambda: {"a finished", "b finished"} <= set(dt.lines(ledger)))
        run = await engine.wait_run(run_id, timeout=30)
        logs = {t: await engine.task_logs(run_id, t) for t in ("a", "b", "queued")}
    assert run.state is RunState.FAILED, run.state
    # their results were discarded: the tries stay cancelled / timed out
    assert run.tasks["a"].state == "cancelled" and run.tasks["a"].result is None
    assert timed.error == "TaskTimeoutError: task 'b' exceeded its timeout of 5.0s"
    assert run.tasks["b"].result is None and len(run.tasks["b"].tries) == 1
    assert "queued started" not in " ".join(dt.lines(ledger))  # it never ran
    said = {t: " ".join(line["message"] for line in lines) for t, lines in logs.items()}
    for running in ("a", "b"):
        assert "Dask cannot interrupt a running task" in said[running]
        assert "its result is discarded" in said[running]
    assert "stopped before it started on a Dask worker" in said["queued"]


async def _wait_log(engine: Engine, run_id: str, task_id: str, text: str) -> None:
    with anyio.fail_after(60):
        while not any(text in line["message"] for line in await engine.task_logs(run_id, task_id)):
            await anyio.sleep(0.02)


async def test_a_cluster_that_goes_away_fails_the_try_which_retries_once_it_is_back(
    tmp_path: Path,
) -> None:
    ledger = str(tmp_path / "ledger")
    release = str(tmp_path / "release")
    port = free_port()
    on_dask = Dask(address=f"tcp://127.0.0.1:{port}", connect_timeout=2.0)

    @dag(runner=on_dask)
    def first() -> None:
        task(dt.where_async)(ledger)

    @dag(runner=on_dask)
    def long() -> None:
        task(retries=30, retry_delay=0.2)(dt.block)(ledger, "long", release)

    @dag
    def here() -> None:  # the built-in runner, in the engine
        task(dt.note)(ledger, "here")

    cluster = await anyio.to_thread.run_sync(local_cluster, port)
    try:
        async with Engine(tmp_path / "k.db", dags=[first, long, here]) as engine:
            done = await (await engine.trigger("first")).wait(timeout=60)
            assert done.state is RunState.SUCCESS
            run_id = (await engine.trigger("long")).run_id
            await until(lambda: any(line.startswith("long started") for line in dt.lines(ledger)))
            await anyio.to_thread.run_sync(cluster.close)  # scheduler and workers, mid-run
            interrupted = await wait_tried(engine, run_id, "block")
            # the engine goes on serving its other runners meanwhile
            assert (await (await engine.trigger("here")).wait(timeout=60)).state is RunState.SUCCESS
            Path(release).touch()
            cluster = await anyio.to_thread.run_sync(local_cluster, port)  # back, same address
            run = await engine.wait_run(run_id, timeout=120)
    finally:
        await anyio.to_thread.run_sync(cluster.close)
    assert interrupted.error is not None
    assert interrupted.error.startswith(
        f"RunnerError: task 'block': the Dask scheduler at tcp://127.0.0.1:{port} went away"
    ), interrupted.error
    block = run.tasks["block"]
    assert run.state is RunState.SUCCESS and block.result == "long"
    assert block.try_number >= 2
    # nothing ran twice after a committed success: `first` once; `long` finished once
    ledger_lines = dt.lines(ledger)
    assert ledger_lines.count("where_async") == 1
    assert ledger_lines.count("long finished") == 1
    assert ledger_lines.count("here") == 1


async def test_an_unreachable_scheduler_fails_the_try_not_the_engine(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RunnerError, match="needs a scheduler address"):
        Dask(address="")

    @dag
    def mixed() -> None:
        task(runner=Dask(address=address, connect_timeout=0.5))(dt.where_async)(str(tmp_path / "l"))
        task(dt.note)(str(tmp_path / "l"), "here")

    async with Engine(tmp_path / "u.db", dags=[mixed]) as engine:  # starts all the same
        run = await (await engine.trigger("mixed")).wait(timeout=60)
    assert run.tasks["note"].state == "success"
    error = run.tasks["where_async"].error
    assert error is not None and error.startswith(
        f"RunnerError: cannot reach the Dask scheduler at {address}: "
    ), error
    assert dt.lines(tmp_path / "l") == ["here"]
