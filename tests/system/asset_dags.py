"""DAGs for the asset crash tests: producers of two assets and consumers on ``a & b`` and ``a | b``.

Each consumer task appends its run and the asset events it consumed to a ledger (fsynced), so the
test counts executions independently of the engine's records. With ``PODIUM_TEST_KILL_AFTER``
naming a producer, that producer's ``on_success`` callback kills the engine (SIGKILL) as soon as
its success (and so its asset event) is committed: the kill lands between that commit and the
consumer run."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

from engine import Asset, Context, dag, task
from sensors import OnAssets

LEDGER = Path(os.environ["PODIUM_TEST_LEDGER"])
KILL_AFTER = os.environ.get("PODIUM_TEST_KILL_AFTER")
DB = os.environ.get("PODIUM_TEST_DB", "")

A = Asset("s3://lake/a/")
B = Asset("s3://lake/b/")


def note(line: str) -> None:
    with LEDGER.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def kill_once_committed(ctx: Context) -> None:
    """Kill this engine the moment the task's success is committed (a sync callback: a thread)."""
    if ctx.task_id != KILL_AFTER:
        return
    conn = sqlite3.connect(DB, timeout=10)
    try:
        while True:
            row = conn.execute(
                "SELECT state FROM task_instances WHERE run_id = ? AND task_id = ?",
                (ctx.run_id, ctx.task_id),
            ).fetchone()
            if row is not None and row[0] == "success":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.001)
    finally:
        conn.close()


# a try killed with its engine is retried (without retries it fails: "engine stopped while running")
@task(outlets=[A], on_success=kill_once_committed, retries=3)
async def produce_a() -> None:
    return None


@task(outlets=[B], on_success=kill_once_committed, retries=3)
async def produce_b() -> None:
    return None


@dag
def producer_a() -> None:
    produce_a()


@dag
def producer_b() -> None:
    produce_b()


@task(retries=3)  # a try killed with its engine is retried
async def consume(ctx: Context) -> int:
    ids = ",".join(sorted(e["event_id"] for e in ctx.event["events"]))
    note(f"{ctx.dag_id} {ctx.run_id} {ids}")
    return len(ctx.event["events"])


@dag(triggers=[OnAssets(A & B)])
def consumer_and() -> None:
    consume()


@dag(triggers=[OnAssets(A | B)])
def consumer_or() -> None:
    consume()
