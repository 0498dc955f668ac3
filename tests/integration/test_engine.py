"""The engine through its public API, on a real SQLite state file."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import uvloop

from engine import (
    Context,
    DAGError,
    DAGNotFoundError,
    Engine,
    ManualClock,
    ParamError,
    RunState,
    Skip,
    StoreLockedError,
    dag,
    task,
)

pytestmark = pytest.mark.each_loop  # asyncio's default loop and uvloop (tests/conftest.py)


@task
async def extract(ctx: Context) -> list[int]:
    return [1, 2, 3]


@task
def double(xs: list[int]) -> list[int]:  # sync: runs in a worker thread
    return [x * 2 for x in xs]


@task
async def total(xs: list[int], offset: int = 0) -> int:
    return sum(xs) + offset


@dag
def numbers(offset: int = 0) -> None:
    total(double(extract()), offset)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "podium.db"


async def test_run_flows_results_downstream_and_persists_them(db: Path) -> None:
    async with Engine(db, dags=[numbers]) as podium:
        run = await podium.trigger("numbers", params={"offset": 10})
        assert run.state in (RunState.QUEUED, RunState.RUNNING)
        done = await run.wait(timeout=10)
    assert done.state == "success"
    assert done.tasks["total"].result == 22
    assert done.tasks["double"].result == [2, 4, 6]
    assert done.tasks["total"].try_number == 1
    assert all(t.started_at and t.finished_at for t in done.tasks.values())
    assert done.params == {"offset": 10}
    async with Engine(db, dags=[numbers]) as podium:  # state survives the engine
        again = await podium.get_run(done.run_id)
        assert again.tasks["total"].result == 22 and again.state == "success"


async def test_tasks_run_on_the_loop_that_runs_the_engine(db: Path, loop_name: str) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @task
    async def where() -> None:
        loops.append(asyncio.get_running_loop())

    @dag(dag_id="where")
    def where_dag() -> None:
        where()

    async with Engine(db, dags=[where_dag]) as podium:
        run = await (await podium.trigger("where")).wait(timeout=10)
    assert run.state == "success"
    assert loops == [asyncio.get_running_loop()]
    assert isinstance(loops[0], uvloop.Loop) == (loop_name == "uvloop")


async def test_trigger_with_key_is_idempotent(db: Path) -> None:
    async with Engine(db, dags=[numbers]) as podium:
        first = await podium.trigger("numbers", key="2026-11-25")
        second = await podium.trigger("numbers", key="2026-11-25")
        assert second.run_id == first.run_id
        await first.wait(timeout=10)
        third = await podium.trigger("numbers", key="2026-11-25")
        assert third.run_id == first.run_id and third.state == "success"
        assert len(await podium.runs(dag_id="numbers")) == 1


async def test_unknown_dag_and_bad_params_are_clear_errors(db: Path) -> None:
    async with Engine(db, dags=[numbers]) as podium:
        with pytest.raises(DAGNotFoundError, match="no DAG 'nope'"):
            await podium.trigger("nope")
        with pytest.raises(ParamError, match="unknown param"):
            await podium.trigger("numbers", params={"offst": 1})
        assert await podium.runs() == []


async def test_runs_are_listed_newest_first_and_filtered(db: Path) -> None:
    @task
    async def boom() -> None:
        raise ValueError("bad data")

    @dag
    def failing() -> None:
        boom()

    async with Engine(db, dags=[numbers, failing]) as podium:
        a = await (await podium.trigger("numbers")).wait()
        b = await (await podium.trigger("failing")).wait()
        c = await (await podium.trigger("numbers")).wait()
        assert [r.run_id for r in await podium.runs()] == [c.run_id, b.run_id, a.run_id]
        failed = await podium.runs(dag_id="failing", state="failed", limit=100)
        assert [r.run_id for r in failed] == [b.run_id]
        assert b.tasks["boom"].error == "ValueError: bad data"
        assert "raise ValueError" in (b.tasks["boom"].traceback or "")


async def test_retries_wait_for_the_persisted_delay(db: Path) -> None:
    clock = ManualClock()
    attempts: list[int] = []

    @task(retries=2, retry_delay=60)
    async def flaky(ctx: Context) -> str:
        attempts.append(ctx.try_number)
        if ctx.try_number < 3:
            raise ConnectionError("try again")
        return "ok"

    @dag
    def retrying() -> None:
        flaky()

    async with Engine(db, dags=[retrying], clock=clock) as podium:
        run = await podium.trigger("retrying")
        with anyio.fail_after(10):
            while (await podium.get_run(run.run_id)).tasks["flaky"].state != "up_for_retry":
                await anyio.sleep(0.01)
        snapshot = await podium.get_run(run.run_id)
        assert snapshot.tasks["flaky"].next_try_at == pytest.approx(clock.now() + 60)
        assert attempts == [1]
        clock.advance(59)
        await anyio.sleep(0.05)
        assert attempts == [1]
        clock.advance(1)
        with anyio.fail_after(10):
            while len(attempts) < 2:
                await anyio.sleep(0.01)
        clock.advance(60)
        done = await run.wait(timeout=10)
    assert done.state == "success" and attempts == [1, 2, 3]
    assert done.tasks["flaky"].try_number == 3
    assert [t.state for t in done.tasks["flaky"].tries] == ["failed", "failed", "success"]


async def test_retry_on_filters_exception_types(db: Path) -> None:
    @task(retries=3, retry_on=ConnectionError)
    async def wrong_data() -> None:
        raise ValueError("not retryable")

    @dag
    def filtered() -> None:
        wrong_data()

    async with Engine(db, dags=[filtered]) as podium:
        done = await (await podium.trigger("filtered")).wait(timeout=10)
    assert done.state == "failed" and done.tasks["wrong_data"].try_number == 1


async def test_timeout_is_recorded_as_a_timeout_and_cleanup_runs(db: Path) -> None:
    cleaned = anyio.Event()

    @task(timeout=0.05)
    async def slow() -> None:
        try:
            await anyio.sleep(30)
        finally:
            cleaned.set()

    @dag
    def timing_out() -> None:
        slow()

    async with Engine(db, dags=[timing_out]) as podium:
        done = await (await podium.trigger("timing_out")).wait(timeout=10)
    assert cleaned.is_set()
    assert done.state == "failed"
    assert done.tasks["slow"].error == "TaskTimeoutError: task 'slow' exceeded its timeout of 0.05s"


async def test_cancel_a_running_run(db: Path) -> None:
    started, cleaned = anyio.Event(), anyio.Event()

    @task
    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        finally:
            cleaned.set()

    @task
    async def after(x: Any) -> None:
        return None

    @dag
    def cancellable() -> None:
        after(forever())

    async with Engine(db, dags=[cancellable]) as podium:
        run = await podium.trigger("cancellable")
        await started.wait()
        done = await podium.cancel(run.run_id, reason="operator said stop")
    assert cleaned.is_set()
    assert done.state == "cancelled" and done.note == "operator said stop"
    assert done.tasks["forever"].state == "cancelled"
    assert done.tasks["forever"].error == "operator said stop"
    assert done.tasks["after"].state == "cancelled"


async def test_skip_and_trigger_rules(db: Path) -> None:
    ran: list[str] = []

    @task
    async def maybe() -> None:
        raise Skip("nothing new")

    @task
    async def downstream(x: Any) -> None:
        ran.append("downstream")

    @task(trigger_rule="none_failed")
    async def report() -> None:
        ran.append("report")

    @dag
    def skipping() -> None:
        m = maybe()
        downstream(m)
        m >> report()

    async with Engine(db, dags=[skipping]) as podium:
        done = await (await podium.trigger("skipping")).wait(timeout=10)
    assert done.state == "success"
    assert done.tasks["maybe"].state == "skipped"
    assert done.tasks["downstream"].state == "skipped"
    assert ran == ["report"]


async def test_unserializable_and_oversized_results_fail_with_a_clear_error(db: Path) -> None:
    @task
    async def returns_object() -> object:
        return threading.Lock()

    @task
    async def returns_big() -> str:
        return "x" * 2000

    @dag
    def bad_results() -> None:
        returns_object()
        returns_big()

    async with Engine(db, dags=[bad_results], max_result_bytes=1000) as podium:
        done = await (await podium.trigger("bad_results")).wait(timeout=10)
    assert done.state == "failed"
    assert "not JSON-serializable: value of type _thread.lock" in done.tasks["returns_object"].error
    assert "over the 1,000-byte cap" in done.tasks["returns_big"].error


async def test_failing_callbacks_are_logged_and_change_nothing(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken_callback(ctx: Context) -> None:
        raise RuntimeError("callback bug")

    async def on_run_success(run: Any) -> None:
        seen.append(run.state)

    @task(on_success=broken_callback)
    async def fine() -> int:
        return 1

    @dag(on_success=on_run_success)
    def with_callbacks() -> None:
        fine()

    async with Engine(db, dags=[with_callbacks]) as podium:
        done = await (await podium.trigger("with_callbacks")).wait(timeout=10)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.01)
    assert done.state == "success" and seen == ["success"]
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)


async def test_checkpoint_is_durable_and_read_back_on_retry(db: Path) -> None:
    seen: list[Any] = []

    @task(retries=1)
    async def resumable(ctx: Context) -> int:
        seen.append(ctx.last_checkpoint)
        if ctx.try_number == 1:
            await ctx.checkpoint({"page": 7})
            raise ConnectionError("lost connection")
        return ctx.last_checkpoint["page"]

    @task
    def sync_checkpoint(ctx: Context) -> str:
        ctx.checkpoint_sync("halfway")
        return ctx.last_checkpoint

    @dag
    def checkpointing() -> None:
        resumable()
        sync_checkpoint()

    async with Engine(db, dags=[checkpointing]) as podium:
        done = await (await podium.trigger("checkpointing")).wait(timeout=10)
    assert seen == [None, {"page": 7}]
    assert done.tasks["resumable"].result == 7
    assert done.tasks["resumable"].checkpoint == {"page": 7}
    assert done.tasks["sync_checkpoint"].checkpoint == "halfway"


async def test_second_engine_on_the_same_file_is_refused(db: Path) -> None:
    async with Engine(db, dags=[numbers]):
        with pytest.raises(
            StoreLockedError, match=rf"{db.name} is in use by another Podium engine \(pid="
        ):
            async with Engine(db, dags=[numbers]):
                pass
    async with Engine(db, dags=[numbers]) as podium:  # released on exit
        assert await podium.runs() == []


async def test_unconfigured_pool_is_a_dag_error(db: Path) -> None:
    @task(pool="warehouse")
    async def load() -> None: ...

    @dag
    def pooled() -> None:
        load()

    with pytest.raises(DAGError, match="pool 'warehouse' is not configured"):
        Engine(db, dags=[pooled])


async def test_loop_stays_responsive_while_sync_tasks_block(db: Path) -> None:
    release = threading.Event()

    @task
    def blocking(i: int) -> int:
        release.wait(10)
        return i

    @dag
    def blockers() -> None:
        for i in range(4):
            blocking(i)

    async with Engine(db, dags=[blockers], max_threads=4) as podium:
        run = await podium.trigger("blockers")
        ticks = 0
        start = time.monotonic()
        while time.monotonic() - start < 0.2:
            await anyio.sleep(0.01)
            ticks += 1
        release.set()
        done = await run.wait(timeout=10)
    assert ticks >= 5  # the loop kept ticking while four threads blocked
    assert done.state == "success"


async def test_graceful_stop_reruns_interrupted_tasks_on_next_start(db: Path) -> None:
    started = anyio.Event()
    tries: list[int] = []

    @task
    async def long_running(ctx: Context) -> str:
        tries.append(ctx.try_number)
        if ctx.try_number == 1:
            started.set()
            await anyio.sleep(60)
        return "finished"

    @dag
    def interrupted() -> None:
        long_running()

    async with Engine(db, dags=[interrupted], shutdown_grace=0.05) as podium:
        run = await podium.trigger("interrupted")
        await started.wait()
    async with Engine(db, dags=[interrupted]) as podium:
        done = await podium.wait_run(run.run_id, timeout=10)
    assert done.state == "success" and tries == [1, 2]
    assert done.tasks["long_running"].tries[0].error == "interrupted by engine shutdown"


def test_library_never_calls_asyncio_run() -> None:
    root = Path(__file__).resolve().parents[2]
    # the Process runner's worker and the Virtualenv runner's bootstrap are the main programs of
    # their own processes, each owning its loop; the Dask runner runs an async task in a Dask
    # worker's thread, where no loop runs
    own_loop = {
        "engine/runners/worker.py",
        "engine/runners/venv_bootstrap.py",
        "engine/runners/dask_worker.py",
    }
    offenders = [
        str(p.relative_to(root))
        for pkg in ("engine", "sensors")
        for p in (root / pkg).rglob("*.py")
        if "asyncio.run(" in p.read_text() and str(p.relative_to(root)) not in own_loop
    ]
    assert offenders == []


async def test_many_concurrent_waits_all_see_the_finished_run(db: Path) -> None:
    async with Engine(db, dags=[numbers]) as podium:

        async def trigger_and_wait(results: list[Any]) -> None:
            run = await podium.trigger("numbers")
            results.append(await run.wait(timeout=30))

        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(trigger_and_wait, results)
    assert len(results) == 200
    assert {r.state for r in results} == {RunState.SUCCESS}
    assert all(r.tasks["total"].state == "success" for r in results)


async def test_task_logs_are_captured_per_try_without_mixing(db: Path) -> None:
    import logging

    @task(retries=1)
    async def chatty(ctx: Context, name: str) -> None:
        for i in range(3):
            ctx.log.info("%s line %d try %d", name, i, ctx.try_number)
            await anyio.lowlevel.checkpoint()
        if ctx.try_number == 1 and name == "a":
            raise RuntimeError("first try fails")

    @task
    def threaded(ctx: Context) -> None:
        logging.getLogger("some.library").warning("from a worker thread")

    @task
    async def noisy() -> None:
        ctx_free = logging.getLogger("podium.task")
        ctx_free.info("x" * 400)
        ctx_free.info("y" * 400)

    @dag
    def logging_dag() -> None:
        chatty.override(task_id="a")("a")
        chatty.override(task_id="b")("b")
        threaded()
        noisy()

    async with Engine(db, dags=[logging_dag], max_log_bytes=500) as podium:
        run = await (await podium.trigger("logging_dag")).wait(timeout=10)
        a1 = await podium.task_logs(run.run_id, "a", try_number=1)
        a_all = await podium.task_logs(run.run_id, "a")
        b = await podium.task_logs(run.run_id, "b")
        t = await podium.task_logs(run.run_id, "threaded")
        n = await podium.task_logs(run.run_id, "noisy")
    assert [x["message"] for x in a1] == ["a line 0 try 1", "a line 1 try 1", "a line 2 try 1"]
    assert [x["try_number"] for x in a_all] == [1, 1, 1, 2, 2, 2]
    assert [x["message"] for x in b] == ["b line 0 try 1", "b line 1 try 1", "b line 2 try 1"]
    assert [(x["level"], x["message"]) for x in t] == [("WARNING", "from a worker thread")]
    assert n[0]["message"] == "x" * 400
    assert n[1]["message"].startswith("[log truncated")


async def test_runs_filter_by_time_trigger_and_key_prefix(db: Path) -> None:
    clock = ManualClock(start=1_800_000_000.0)
    async with Engine(db, dags=[numbers], clock=clock) as podium:
        first = await podium.trigger("numbers", key="orders:1")
        clock.advance(60)
        second = await podium.trigger("numbers", key="orders:2", trigger="cli")
        clock.advance(60)
        third = await podium.trigger("numbers", key="files:1")
        assert [r.run_id for r in await podium.runs(key_prefix="orders:")] == [
            second.run_id,
            first.run_id,
        ]
        assert [r.run_id for r in await podium.runs(trigger="cli")] == [second.run_id]
        window = await podium.runs(since=1_800_000_030.0, until=1_800_000_090.0)
        assert [r.run_id for r in window] == [second.run_id]
        assert [r.run_id for r in await podium.runs(since=1_800_000_100.0)] == [third.run_id]
        for run in (first, second, third):
            await run.wait(timeout=10)
