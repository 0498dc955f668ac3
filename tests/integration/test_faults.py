"""Faults in the environment: the state file full, then freed."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from engine import Context, Engine, Run, dag, task


@task
async def payload(ctx: Context) -> str:
    return "x" * 20_000  # a few pages per result


@dag
def filler() -> None:
    payload()


async def test_disk_full_stops_intake_says_why_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="podium.store")
    async with Engine(tmp_path / "full.db", dags=[filler], sensors=False) as podium:
        first = await (await podium.trigger("filler")).wait(timeout=10)
        assert first.state == "success"
        writer_conn = podium.store._write  # the real SQLite limit on the engine's own connection
        assert writer_conn is not None
        async with writer_conn.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await writer_conn.execute(f"PRAGMA max_page_count = {row[0]}")  # the "disk" is now full

        done: list[Run] = []

        async def trigger_and_wait() -> None:
            run = await podium.trigger("filler")
            done.append(await run.wait(timeout=60))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(trigger_and_wait)
            with anyio.fail_after(20):
                while podium.store_healthy:
                    await anyio.sleep(0.01)
            assert not podium.sink.accepting  # sensors stop pulling while the store fails
            assert any("database or disk is full" in r.getMessage() for r in caplog.records)
            assert done == []
            await writer_conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
        assert podium.store_healthy
        assert podium.sink.accepting
        runs = await podium.runs(dag_id="filler")
    assert len(done) == 5 and {r.state for r in done} == {"success"}
    assert len(runs) == 6
