"""A DAG of one checkpointing task on ``Dask(address=$PODIUM_TEST_DASK)`` for the Dask crash test.

The Dask worker imports this file too (by its path), without the test's environment, hence the
defaults."""

from __future__ import annotations

import os
import time

from engine import Context, Dask, RunnerError, dag, task

ADDRESS = os.environ.get("PODIUM_TEST_DASK", "tcp://127.0.0.1:1")


def note(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:
        f.write(line + "\n")


def held(ledger: str, gate: str, ctx: Context) -> int:
    """Try 1 checkpoints once ``gate`` exists, then once more, noting what each call did; later
    tries note the checkpoint they found and return."""
    if ctx.try_number > 1:
        note(ledger, f"held {ctx.try_number} from {ctx.last_checkpoint}")
        return ctx.try_number
    note(ledger, "held started")
    while not os.path.exists(gate):
        time.sleep(0.01)
    for attempt in ("first", "again"):
        note(ledger, f"held {attempt} checkpointing")
        try:
            ctx.checkpoint_sync({"page": 1})
        except RunnerError as exc:
            note(ledger, f"held {attempt} refused: {exc}")
        else:
            note(ledger, f"held {attempt} returned")
    return 1


@dag(runner=Dask(address=ADDRESS))
def on_dask() -> None:
    ledger = os.environ.get("PODIUM_TEST_LEDGER", "")
    gate = os.environ.get("PODIUM_TEST_GATE", "")
    task(retries=1)(held)(ledger, gate)
