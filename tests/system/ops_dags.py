"""DAGs for the operations tests; a flag file makes `extract` fail, a ledger counts executions."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from engine import Context, dag, task
from sensors import Cron

STATE = Path(os.environ["PODIUM_TEST_STATE"])


def note(line: str) -> None:
    with (STATE / "ledger.txt").open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@task
async def extract(ctx: Context) -> int:
    note(f"extract {ctx.run_id} {ctx.try_number}")
    if (STATE / "broken").exists():
        raise ConnectionError("source is down")
    return 1


@task
async def load(x: int) -> int:
    note("load")
    return x + 1


@dag(on_failure="pause")
def guarded() -> None:
    load(extract())


@task
async def slot(ctx: Context) -> str:
    assert ctx.logical_date is not None
    note(f"slot {ctx.logical_date.isoformat()}")
    await anyio.sleep(0.15)
    return ctx.logical_date.isoformat()


@dag(triggers=[Cron("30 2 * * *", tz="America/New_York")])
def nightly() -> None:
    slot()


@task
async def forever() -> None:
    await anyio.sleep(3600)


@dag
def stuck() -> None:
    forever()


@task(retries=1)
async def slow_step(ctx: Context) -> int:
    note(f"slow_step {ctx.try_number}")
    await anyio.sleep(1.0)
    return ctx.try_number


@dag
def slowly() -> None:
    slow_step()
