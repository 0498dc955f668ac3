"""The ``RetryTimer``: wakes tasks that wait for a retry when their time comes (on the engine clock)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import NoReturn

import anyio

from .clock import Clock

RetryDue = Callable[[str, str], None]
"""Called with (run_id, task_id) when a scheduled retry is due."""


class RetryTimer:
    def __init__(self, clock: Clock, on_due: RetryDue) -> None:
        self._clock = clock
        self._on_due = on_due
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._wakeup = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, run_id: str, task_id: str, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, run_id, task_id))
        self._wakeup.set()

    async def serve(self) -> NoReturn:
        while True:
            if not self._heap:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            due = self._heap[0][0]
            if due > self._clock.now():
                await self._sleep_until(due)
                continue
            _, _, run_id, task_id = heapq.heappop(self._heap)
            self._on_due(run_id, task_id)

    async def _sleep_until(self, due: float) -> None:
        """Sleep until ``due``, or until an earlier retry is scheduled."""
        self._wakeup = anyio.Event()
        with anyio.move_on_after(math.inf) as scope:
            async with anyio.create_task_group() as tg:

                async def wake_on_new_entry() -> None:
                    await self._wakeup.wait()
                    scope.cancel()

                tg.start_soon(wake_on_new_entry)
                await self._clock.sleep_until(due)
                tg.cancel_scope.cancel()
