"""DAGs for the crash tests. Each task appends to a ledger file (fsynced) when it starts and ends,
so the test can count executions independently of the engine's own records."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from engine import Context, dag, task

LEDGER = Path(os.environ["PODIUM_TEST_LEDGER"])
GATE = Path(os.environ["PODIUM_TEST_GATE"])


def note(line: str) -> None:
    with LEDGER.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def wait_for_gate() -> None:
    while not GATE.exists():
        await anyio.sleep(0.02)


@task
async def first(ctx: Context) -> int:
    note(f"start first {ctx.try_number}")
    note(f"end first {ctx.try_number}")
    return 1


@task(retries=2)
async def blocking(ctx: Context, x: int) -> int:
    note(f"start blocking {ctx.try_number} {ctx.last_checkpoint}")
    if ctx.last_checkpoint is None:
        await ctx.checkpoint({"page": 7})  # returns once committed
        note(f"checkpointed blocking {ctx.try_number}")
    await wait_for_gate()
    note(f"end blocking {ctx.try_number}")
    return x + 1


@task
async def last(ctx: Context, x: int) -> int:
    note(f"start last {ctx.try_number}")
    note(f"end last {ctx.try_number}")
    return x * 10


@dag
def crashy() -> None:
    last(blocking(first()))


@task
async def no_retries(ctx: Context) -> None:
    note(f"start no_retries {ctx.try_number}")
    await wait_for_gate()


@task
async def after(ctx: Context) -> None:
    note("start after")


@dag
def fragile() -> None:
    no_retries() >> after()


@task
async def step(ctx: Context, i: int, prev: int | None = None) -> int:
    note(f"start step_{i} {ctx.try_number}")
    await anyio.sleep(0.03)
    note(f"end step_{i} {ctx.try_number}")
    return i


@dag
def chain() -> None:
    prev = None
    for i in range(8):
        prev = step.override(task_id=f"step_{i}")(i, prev)


@task
async def items(n: int) -> list[int]:
    return list(range(n))


@task(retries=3)
async def handle(ctx: Context, item: int) -> int:
    note(f"start {ctx.task_id} {ctx.try_number}")
    if item % 2500 == 2499:  # 4 of 10 000 instances wait for the gate: the kill finds them running
        await wait_for_gate()
    note(f"end {ctx.task_id} {ctx.try_number}")
    return item * 2


@task
async def total(values: list[int]) -> int:
    note(f"total {sum(values)}")
    return sum(values)


@dag(max_active_tasks=8)
def mapped(n: int = 10_000) -> None:
    total(handle.map(items(n)))
