"""A DAG of four tasks on ``Process(workers=4)`` for the crash test: each notes its try and worker
PID in the ledger, then waits for the gate file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine import Context, Process, dag, task

LEDGER = Path(os.environ["PODIUM_TEST_LEDGER"])
GATE = Path(os.environ["PODIUM_TEST_GATE"])


def note(line: str) -> None:
    with LEDGER.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@task(runner=Process(workers=4), retries=1)
def held(ctx: Context) -> int:
    note(f"start {ctx.task_id} {ctx.try_number} {os.getpid()}")
    while not GATE.exists():
        time.sleep(0.02)
    return ctx.try_number


@dag
def four_processes() -> None:
    for i in range(4):
        held.override(task_id=f"held_{i}")()
