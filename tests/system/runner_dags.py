"""The DAG of the crash test of ``Process`` tasks: ``prepare`` succeeds first, then eight tasks on
``Process(workers=8)`` run at once. Each starts a child process of its own (as a task shelling out
to a tool would), notes its try, worker PID and child PID in the ledger, and waits for the gate file;
``total`` adds their results up."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from engine import Context, Process, dag, task

LEDGER = Path(os.environ["PODIUM_TEST_LEDGER"])
GATE = Path(os.environ["PODIUM_TEST_GATE"])
TASKS = 8
EIGHT = Process(workers=TASKS)


def note(line: str) -> None:
    with LEDGER.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@task(runner=EIGHT)
def prepare(ctx: Context) -> int:
    note(f"start prepare {ctx.try_number} {os.getpid()}")
    return 100


@task(runner=EIGHT, retries=1)
def held(ctx: Context, base: int, i: int) -> int:
    child = subprocess.Popen(
        ["sleep", "600"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        note(f"start {ctx.task_id} {ctx.try_number} {os.getpid()} {child.pid}")
        while not GATE.exists():
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    return base + 10 * i + ctx.try_number


@task
def total(values: list[int]) -> int:
    return sum(values)


@dag
def eight_processes() -> None:
    base = prepare()
    total([held.override(task_id=f"held_{i}")(base, i) for i in range(TASKS)])
