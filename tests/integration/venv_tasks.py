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
