"""Task functions for the Virtualenv runner tests (``tests/integration/test_venv_runner.py``).

They run inside virtualenvs that do not have the engine: this module imports only the standard
library at the top, and what each environment has inside the functions.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any


def versions(rows: list[list[Any]]) -> dict[str, Any]:
    """What the environment has: a package the engine lacks (tabulate) and an older packaging."""
    import packaging
    import tabulate

    return {
        "packaging": packaging.__version__,
        "table": tabulate.tabulate(rows, tablefmt="plain"),
        "prefix": sys.prefix,
        "pid": os.getpid(),
    }


def chatty(ctx: Any, pages: int, fail_after: int | None = None) -> dict[str, Any]:
    """Logs, prints and checkpoints each page; resumes after the last checkpoint."""
    start = ctx.last_checkpoint or 0
    for page in range(start, pages):
        ctx.log.info("page %d of %d", page + 1, pages)
        print(f"printed page {page + 1}")
        ctx.checkpoint_sync(page + 1)
        if fail_after is not None and ctx.try_number == 1 and page + 1 == fail_after:
            raise ValueError(f"failed after page {page + 1}")
    return {"started_at": start, "try": ctx.try_number, "task": ctx.task_id}


async def async_sum(values: list[int]) -> int:
    await asyncio.sleep(0)
    return sum(values)


def not_json() -> Any:
    return {1, 2, 3}


def spin_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        sum(i * i for i in range(10_000))


def table(rows: list[list[Any]]) -> str:
    import tabulate

    return str(tabulate.tabulate(rows, tablefmt="plain"))


_calls = 0  # module state: lives as long as the worker that imported this module


def where(ctx: Any) -> dict[str, Any]:
    """Which worker runs this try, how many tries this module has served there, what the try
    started from; and a printed and a logged line."""
    global _calls
    import logging
    import signal

    _calls += 1
    print(f"printed by try {ctx.try_number}")
    logging.getLogger("legacy.lib").warning("logged by try %d", ctx.try_number)
    return {
        "pid": os.getpid(),
        "calls": _calls,
        "cwd": os.getcwd(),
        "sigterm_ignored": signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,
    }


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def lower_file_limit() -> int:
    """Changes a process-wide limit: its worker must not serve another try."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512) - 1, hard))
    return os.getpid()


def wander(folder: str) -> int:
    """Moves to another folder, silences stdout, drops the log handlers and ignores SIGTERM:
    all put back before the next try on this worker."""
    import logging
    import signal

    os.chdir(folder)
    sys.stdout = open(os.devnull, "w")  # left open on purpose: a worker-wide change
    logging.getLogger().handlers.clear()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getpid()


def speaks(ctx: Any, tag: str) -> int:
    """Logs through every path a try's log has: ``ctx.log``, ``logging``, print, and stderr below
    Python (file descriptor 2, as a C library would)."""
    import logging

    ctx.log.info("%s: ctx.log", tag)
    logging.getLogger("legacy.lib").warning("%s: logging", tag)
    print(f"{tag}: print")
    os.write(2, f"{tag}: fd 2\n".encode())
    return os.getpid()


def print_lots(megabytes: int) -> int:
    line = "x" * 99
    for _ in range(megabytes * 10_000):
        print(line)
    return os.getpid()


def fail_first_try(ctx: Any) -> int:
    """Kills its worker on the first try; the retry runs on a replacement."""
    if ctx.try_number == 1:
        os._exit(5)
    return os.getpid()
