"""A lightweight owner for the engine's per-try coroutines.

Every task try runs in its own asyncio task, so it gets a fresh copy of the context (context
variables a task sets never leak into another). Spawning through an anyio task group costs ~20 µs a
task, a third of the engine's whole per-task budget, so tries are spawned with ``create_task`` and
owned here instead: the set tracks them, an unexpected exception escaping a try (a bug in the engine,
since tries catch what tasks raise) is reported to ``on_crash``, and the engine's shutdown cancels
and awaits whatever is left. Everything else still lives in the engine's anyio task group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("podium.engine")


class TaskSet:
    def __init__(self, on_crash: Callable[[BaseException], None]) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_crash = on_crash

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("internal error in a task try", exc_info=exc)
            self._on_crash(exc)

    async def cancel_and_wait(self, timeout: float) -> None:
        """Cancel what is still running and wait (up to ``timeout``) for it to unwind."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
