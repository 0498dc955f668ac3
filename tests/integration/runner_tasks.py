"""Task functions for the Process runner tests, importable by the worker processes
(``tests/integration/test_runners.py``)."""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

from engine import Context


def rendezvous(folder: str, name: str, n: int = 2, deadline: float = 60.0) -> dict[str, Any]:
    """CPU-bound work that can only finish once ``n`` tasks are inside it at the same time: each
    marks its arrival in ``folder`` and spins (pure Python, holding its GIL) until all have arrived."""
    started = time.time()
    Path(folder, name).write_text(str(os.getpid()))
    spins = 0
    give_up = time.monotonic() + deadline
    while len(list(Path(folder).iterdir())) < n:
        spins += sum(i * i for i in range(2000))  # burn CPU, not sleep
        if time.monotonic() > give_up:
            raise RuntimeError(f"{name}: the others never arrived")
    return {"pid": os.getpid(), "start": started, "end": time.time()}


def pid_of() -> int:
    return os.getpid()


def sort_by(values: list[int], key: Any) -> list[int]:
    return sorted(values, key=key)


def locked(lock: Any) -> str:
    return "never runs"


def segfault() -> None:
    ctypes.string_at(0)


def exit_hard(code: int) -> None:
    os._exit(code)


def killed_like_oom() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def over_memory_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, hard))
    block = bytearray(1024 * 1024 * 1024)  # 1 GiB under a 512 MiB limit: MemoryError
    return len(block)


def print_lots(megabytes: int) -> int:
    line = "x" * 99
    for _ in range(megabytes * 10_000):
        print(line)
    return os.getpid()


def spin_forever(pid_file: str, ignore_sigterm: bool = False) -> None:
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        sum(i * i for i in range(10_000))


def flaky(ctx: Context) -> int:
    if ctx.try_number == 1:
        os._exit(1)
    return ctx.try_number


def checkpointing(ctx: Context) -> Any:
    """Checkpoint, then fail the first try; the second sees the checkpoint."""
    if ctx.last_checkpoint is None:
        ctx.checkpoint_sync({"page": 3})
        raise ValueError("first try fails after its checkpoint")
    return ctx.last_checkpoint


async def async_checkpointing(ctx: Context, x: int) -> dict[str, Any]:
    await ctx.checkpoint({"x": x})
    ctx.log.info("checkpointed %s", ctx.last_checkpoint)
    logging.getLogger("podium.task").warning("a warning")
    print("printed")
    return {"pid": os.getpid(), "x": x, "try": ctx.try_number}


def raises() -> None:
    raise ValueError("bad input 42")
