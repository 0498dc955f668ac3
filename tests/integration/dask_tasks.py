"""Task functions for the Dask runner tests, importable by the Dask workers
(``tests/integration/test_dask.py``). Each appends to a ledger file what it did, so the tests can
count runs across tries, cancellations and a cluster that went away."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from engine import Context


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


def checkpoints(ctx: Context) -> None:
    ctx.checkpoint_sync({"done": 1})


def block(ledger: str, name: str, release: str) -> str:
    """Runs until the file ``release`` exists (the test creates it); notes its start and end."""
    note(ledger, f"{name} started {os.getpid()}")
    while not os.path.exists(release):
        time.sleep(0.01)
    note(ledger, f"{name} finished")
    return name
