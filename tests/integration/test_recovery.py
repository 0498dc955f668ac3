"""Recovery operations through the Python API: pause on failure and resume, rerun, backfill,
pause/unpause a DAG, cancel a task, and the operations log."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Context, Engine, PodiumError, dag, task
from sensors import Cron

pytestmark = pytest.mark.each_loop  # asyncio's default loop and uvloop (tests/conftest.py)

broken = {"extract": True}
calls: dict[str, int] = {}


def count(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


@task
async def extract(ctx: Context) -> int:
    count("extract")
    if broken["extract"]:
        raise ConnectionError("source is down")
    return 5


@task
async def other_branch() -> str:
    count("other_branch")
    return "independent"


@task
async def transform(x: int) -> int:
    count("transform")
    return x * 2


@task
async def load(x: int) -> int:
    count("load")
    return x + 1


@dag(on_failure="pause")
def pausing() -> None:
    load(transform(extract()))
    other_branch()


@dag
def plain() -> None:
    load(transform(extract()))


@pytest.fixture(autouse=True)
def reset() -> None:
    broken["extract"] = True
    calls.clear()


async def wait_state(podium: Engine, run_id: str, state: str) -> Any:
    with anyio.fail_after(10):
        while (run := await podium.get_run(run_id)).state != state:
            await anyio.sleep(0.01)
    return run


async def test_failure_pauses_downstream_and_resume_continues(tmp_path: Path) -> None:
    async with Engine(tmp_path / "p.db", dags=[pausing]) as podium:
        run = await podium.trigger("pausing")
        paused = await wait_state(podium, run.run_id, "paused")
        assert paused.tasks["extract"].state == "failed"
        assert paused.tasks["transform"].state == "paused"
        assert paused.tasks["load"].state == "paused"
        with anyio.fail_after(10):
            while (await podium.get_run(run.run_id)).tasks["other_branch"].state != "success":
                await anyio.sleep(0.01)
        assert (await podium.get_run(run.run_id)).state == "paused"  # stays paused
        broken["extract"] = False
        await podium.resume(run.run_id, actor="alice")
        done = await podium.wait_run(run.run_id, timeout=10)
        ops = await podium.operations(run_id=run.run_id)
    assert done.state == "success"
    assert done.tasks["load"].result == 11
    assert done.tasks["extract"].try_number == 2
    assert [t.state for t in done.tasks["extract"].tries] == ["failed", "success"]
    assert calls["other_branch"] == 1  # not re-run
    assert [(o["actor"], o["operation"]) for o in ops] == [("alice", "resume")]


async def test_paused_run_survives_a_restart_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Engine(db, dags=[pausing]) as podium:
        run = await podium.trigger("pausing")
        await wait_state(podium, run.run_id, "paused")
    async with Engine(db, dags=[pausing]) as podium:
        still = await podium.get_run(run.run_id)
        assert still.state == "paused" and still.tasks["load"].state == "paused"
        broken["extract"] = False
        await podium.resume(run.run_id)
        done = await podium.wait_run(run.run_id, timeout=10)
    assert done.state == "success"


async def test_rerun_failed_tasks_reuses_upstream_results(tmp_path: Path) -> None:
    async with Engine(tmp_path / "x.db", dags=[plain]) as podium:
        failed = await (await podium.trigger("plain")).wait(timeout=10)
        assert failed.state == "failed"
        assert failed.tasks["transform"].state == "upstream_failed"
        broken["extract"] = False
        await podium.rerun(failed.run_id, failed_only=True)
        done = await podium.wait_run(failed.run_id, timeout=10)
        assert done.state == "success" and done.tasks["load"].result == 11
        # rerun one task and its downstream: extract's result is reused, not recomputed
        before = dict(calls)
        await podium.rerun(done.run_id, ["transform"], downstream=True)
        again = await podium.wait_run(done.run_id, timeout=10)
        with pytest.raises(PodiumError, match="no task"):
            await podium.rerun(done.run_id, ["nope"])
    assert again.state == "success"
    assert calls["extract"] == before["extract"]
    assert calls["transform"] == before["transform"] + 1
    assert calls["load"] == before["load"] + 1
    assert [t.try_number for t in again.tasks["transform"].tries] == [1, 2]


@task
async def daily(ctx: Context) -> str:
    assert ctx.logical_date is not None
    return ctx.logical_date.isoformat()


@dag(triggers=[Cron("30 2 * * *", tz="Europe/Berlin")])
def nightly() -> None:
    daily()


async def test_backfill_across_dst_is_idempotent(tmp_path: Path) -> None:
    async with Engine(tmp_path / "b.db", dags=[nightly], sensors=False) as podium:
        progress: list[tuple[int, int]] = []
        first = await podium.backfill(
            "nightly", "2026-03-27", "2026-03-30", max_active=2,
            on_progress=lambda d, t: progress.append((d, t)),
        )  # fmt: skip
        second = await podium.backfill("nightly", "2026-03-27", "2026-03-30")
        runs = await podium.runs(dag_id="nightly")
    assert len(first.created) == 4 and not first.failed
    assert progress[-1] == (4, 4)
    assert second.created == [] and len(second.skipped) == 4
    # 02:30 does not exist on 2026-03-29 in Berlin: that slot runs at 03:00 local (01:00 UTC)
    assert sorted(r.logical_date.isoformat() for r in runs if r.logical_date) == [
        "2026-03-27T01:30:00+00:00",
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]
    assert {r.trigger for r in runs} == {"backfill"}


async def test_paused_dag_stores_runs_and_starts_them_on_unpause(tmp_path: Path) -> None:
    broken["extract"] = False
    async with Engine(tmp_path / "u.db", dags=[plain]) as podium:
        await podium.pause_dag("plain")
        queued = [await podium.trigger("plain") for _ in range(3)]
        await anyio.sleep(0.05)
        assert {(await podium.get_run(r.run_id)).state for r in queued} == {"queued"}
        assert calls == {}
        await podium.unpause_dag("plain")
        done = [await podium.wait_run(r.run_id, timeout=10) for r in queued]
        assert {r.state for r in done} == {"success"}
        await podium.pause_dag("plain")
        skipped_runs = [await podium.trigger("plain") for _ in range(2)]
        skipped = await podium.unpause_dag("plain", skip_queued=True)
        final = [await podium.wait_run(r.run_id, timeout=10) for r in skipped_runs]
        ops = [o["operation"] for o in await podium.operations(dag_id="plain")]
    assert sorted(skipped) == sorted(r.run_id for r in skipped_runs)
    assert {r.state for r in final} == {"cancelled"}
    assert ops == ["unpause", "pause", "unpause", "pause"]


async def test_cancel_a_task_blocked_in_a_thread_and_one_in_async_code(tmp_path: Path) -> None:
    release = threading.Event()
    started_sync, started_async, cleaned = threading.Event(), anyio.Event(), anyio.Event()

    @task
    def blocked_sync() -> None:
        started_sync.set()
        release.wait(30)

    @task
    async def blocked_async() -> None:
        started_async.set()
        try:
            await anyio.sleep(60)
        finally:
            cleaned.set()

    @task
    async def after(x: Any) -> None: ...

    @dag
    def blockers() -> None:
        after(blocked_sync())
        blocked_async()

    async with Engine(tmp_path / "c.db", dags=[blockers]) as podium:
        run = await podium.trigger("blockers")
        await started_async.wait()
        with anyio.fail_after(10):
            while not started_sync.is_set():
                await anyio.sleep(0.01)
        a = await podium.cancel_task(run.run_id, "blocked_async", reason="stuck", actor="bob")
        s = await podium.cancel_task(run.run_id, "blocked_sync", reason="hung driver")
        done = await podium.wait_run(run.run_id, timeout=10)
        release.set()
    assert cleaned.is_set()
    assert a.tasks["blocked_async"].state == "cancelled"
    assert a.tasks["blocked_async"].error == "stuck"
    assert s.tasks["blocked_sync"].state == "cancelled"
    assert done.tasks["after"].state == "upstream_failed"
    assert done.state == "cancelled"
