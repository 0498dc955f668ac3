"""Task functions for the Virtualenv crash test (``venv_dags.py``). They run in a virtualenv without
the engine: standard library only."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

LEDGER = Path(os.environ["PODIUM_TEST_LEDGER"])
GATE = Path(os.environ["PODIUM_TEST_GATE"])


def note(line: str) -> None:
    with LEDGER.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def lines(prefix: str) -> list[str]:
    return [line for line in LEDGER.read_text().splitlines() if line.startswith(prefix)]


def warm(ctx: Any) -> int:
    """Notes its worker, and returns once both ``warm`` tasks are running (so they ran on two
    workers at once)."""
    note(f"warm {ctx.task_id} {ctx.try_number} {os.getpid()}")
    while len(lines("warm ")) < 2:
        time.sleep(0.02)
    return os.getpid()


def held(ctx: Any) -> int:
    """Notes its try and worker, then waits for the gate file."""
    note(f"start {ctx.task_id} {ctx.try_number} {os.getpid()}")
    while not GATE.exists():
        time.sleep(0.02)
    return int(ctx.try_number)
