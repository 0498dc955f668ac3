"""Time as an argument: the engine reads time only through a ``Clock``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline`` (epoch seconds)."""
        ...


class SystemClock:
    """Wall-clock time; the default."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.time()
        if delay > 0:
            await anyio.sleep(delay)


class ManualClock:
    """A clock tests move by hand; sleepers wake when ``advance`` passes their deadline."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start
        self._changed = anyio.Event()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, epoch_seconds: float) -> None:
        self._now = epoch_seconds
        self._changed.set()
        self._changed = anyio.Event()

    async def sleep_until(self, deadline: float) -> None:
        while self._now < deadline:
            await self._changed.wait()


def utc_iso(epoch_seconds: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string (for display and params)."""
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()
