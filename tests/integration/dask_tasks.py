"""Task functions for the Dask runner tests, importable by the Dask workers
(``tests/integration/test_dask.py``). Each appends to a ledger file what it did, so the tests can
count runs across tries, cancellations and a cluster that went away."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from engine import Context, RunnerError


def note(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:
        f.write(line + "\n")


def lines(ledger: str | Path) -> list[str]:
    path = Path(ledger)
    return path.read_text().splitlines() if path.exists() else []


def where(ledger: str, ctx: Context) -> dict[str, Any]:
    from distributed import get_worker

    logging.getLogger("dask_tasks").warning("logged on the worker")
    ctx.log.info("ctx.log on the worker")
    print("printed on the worker")
    note(ledger, f"where {ctx.try_number}")
    return {"pid": os.getpid(), "worker": get_worker().address}


async def where_async(ledger: str) -> int:
    note(ledger, "where_async")
    return os.getpid()


def fails(ledger: str) -> None:
    note(ledger, "fails")
    raise ValueError(f"bad input on pid {os.getpid()}")


def flaky(ledger: str, ctx: Context) -> int:
    note(ledger, f"flaky {ctx.try_number}")
    if ctx.try_number == 1:
        raise ConnectionError("first try fails")
    return ctx.try_number


def block(ledger: str, name: str, release: str) -> str:
    """Runs until the file ``release`` exists (the test creates it); notes its start and end."""
    note(ledger, f"{name} started {os.getpid()}")
    while not os.path.exists(release):
        time.sleep(0.01)
    note(ledger, f"{name} finished")
    return name


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def stored_checkpoint(db: str, run_id: str, task_id: str) -> Any:
    """The task's checkpoint as committed in the engine's state file (read from the worker)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT checkpoint FROM task_instances WHERE run_id = ? AND task_id = ?",
            (run_id, task_id),
        ).fetchone()
    return None if row is None or row[0] is None else json.loads(row[0])


def resumes(ledger: str, db: str, release: str, ctx: Context) -> dict[str, Any]:
    """Try 1 checkpoints pages 1 and 2, noting what the state file holds as each call returns,
    then fails once ``release`` exists; try 2 resumes from what it finds, once ``release-2``
    exists."""
    name = ctx.task_id
    note(ledger, f"{name} {ctx.try_number} from {ctx.last_checkpoint}")
    if ctx.try_number == 1:
        for page in (1, 2):
            ctx.checkpoint_sync({"page": page})
            stored = stored_checkpoint(db, ctx.run_id, name)
            note(ledger, f"{name} checkpointed {page}, stored {stored}")
        wait_for(release)
        raise ValueError("first try fails after its checkpoints")
    wait_for(release + "-2")
    return {"resumed": ctx.last_checkpoint, "pid": os.getpid()}


async def resumes_async(ledger: str, db: str, release: str, ctx: Context) -> dict[str, Any]:
    """``resumes`` for an async function (``await ctx.checkpoint``)."""
    name = ctx.task_id
    note(ledger, f"{name} {ctx.try_number} from {ctx.last_checkpoint}")
    if ctx.try_number == 1:
        for page in (1, 2):
            await ctx.checkpoint({"page": page})
            stored = stored_checkpoint(db, ctx.run_id, name)
            note(ledger, f"{name} checkpointed {page}, stored {stored}")
        wait_for(release)
        raise ValueError("first try fails after its checkpoints")
    wait_for(release + "-2")
    return {"resumed": ctx.last_checkpoint, "pid": os.getpid()}


def tagged(ledger: str, tries: int, ctx: Context) -> dict[str, Any]:
    """Checkpoints its own tag twice, each step once all ``tries`` tries took the one before
    (a barrier on the ledger), so the tries' checkpoints cross the cluster together."""
    tag = f"{ctx.params['name']}/{ctx.task_id}"
    seen = []
    for step in (1, 2):
        ctx.checkpoint_sync({"tag": tag, "step": step})
        seen.append(ctx.last_checkpoint)
        note(ledger, f"{tag} {step}")
        while sum(line.endswith(f" {step}") for line in lines(ledger)) < tries:
            time.sleep(0.01)
    return {"seen": seen, "pid": os.getpid()}


def bad_checkpoint(ctx: Context) -> None:
    ctx.checkpoint_sync({"ids": {1, 2}})


def big_checkpoint(ctx: Context) -> None:
    ctx.checkpoint_sync("x" * 5000)


def held_checkpoint(ledger: str, go: str, ctx: Context) -> int:
    """Try 1 checkpoints once ``go`` exists (the test holds the engine's commit meanwhile), then
    once more, noting what each call did; later tries return at once."""
    if ctx.try_number > 1:
        note(ledger, f"held {ctx.try_number} from {ctx.last_checkpoint}")
        return ctx.try_number
    note(ledger, "held started")
    wait_for(go)
    for attempt in ("first", "again"):
        note(ledger, f"held {attempt} checkpointing")
        try:
            ctx.checkpoint_sync({"page": 1})
        except RunnerError as exc:
            note(ledger, f"held {attempt} refused: {exc}")
        else:
            note(ledger, f"held {attempt} returned")
    return 1
