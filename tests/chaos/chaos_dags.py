"""The DAGs the chaos driver runs under `podium run`: Kafka-, timer- and manually-triggered.

Each task appends `start`/`end` lines (pid, run, task, try, time) to a ledger file, fsynced, so the
driver can check from outside what ran, how often, and how many ran at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from engine import Context, dag, task
from sensors import Every, KafkaTopic

LEDGER = Path(os.environ["PODIUM_CHAOS_LEDGER"])
POOL_SLOTS = 2  # the driver serves these DAGs with --pool warehouse=2


def note(what: str, ctx: Context) -> None:
    line = f"{what} {os.getpid()} {ctx.run_id} {ctx.task_id} {ctx.try_number} {time.time():.6f}\n"
    with LEDGER.open("a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@task(retries=8)
async def extract(ctx: Context, n: int) -> int:
    note("start", ctx)
    progress = ctx.last_checkpoint or 0
    for step in range(progress, 3):
        await anyio.sleep(0.01)
        await ctx.checkpoint(step + 1)
    note("end", ctx)
    return n


@task(retries=8, pool="warehouse")
async def load(ctx: Context, n: int) -> int:
    note("start", ctx)
    await anyio.sleep(0.02)
    note("end", ctx)
    return n * 2


@dag(
    triggers=[
        KafkaTopic(
            os.environ["PODIUM_CHAOS_TOPIC"],
            bootstrap_servers=os.environ["PODIUM_CHAOS_BOOTSTRAP"],
            group_id="chaos",
            client_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
        )
    ]
)
def on_event(n: int = -1) -> None:
    load(extract(n))


@task(retries=8)
async def tick(ctx: Context) -> str:
    note("start", ctx)
    note("end", ctx)
    assert ctx.logical_date is not None
    return ctx.logical_date.isoformat()


@dag(triggers=[Every(seconds=1, catchup="all", max_catchup=1000)])
def ticker() -> None:
    tick()


@dag
def manual(n: int = -1) -> None:
    load(extract(n))
