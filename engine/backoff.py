"""Capped exponential back-off: how long to wait after the n-th failure in a row. Pure: no clock, no I/O.

``Backoff`` is the policy and ``delay(n)`` its arithmetic; a retry loop that counts failures itself
calls it directly. A loop that only wants "the next wait, and start over after a success" takes
``backoff.delays()``, an iterator with ``reset()``::

    delays = RECONNECT.delays()
    while True:
        try:
            async with connect() as conn:
                while True:
                    await poll(conn)
                    delays.reset()  # healthy again: the next failure waits ``initial``
        except OSError as exc:
            delay = next(delays)
            log.warning("%s; reconnecting in %.1fs", describe_exception(exc), delay)
            await anyio.sleep(delay)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of ``initial``, ``initial * factor``, ``initial * factor ** 2``, ... seconds, plus up to
    ``jitter`` of themselves at random, then capped at ``cap`` (after the jitter, so ``cap`` is a true
    bound; ``None``: no cap)."""

    initial: float
    cap: float | None = None
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial) and self.initial >= 0):
            raise ValueError(
                f"back-off initial delay must be a finite number >= 0, got {self.initial}"
            )
        if self.cap is not None and not self.cap >= 0:
            raise ValueError(f"back-off cap must be >= 0, got {self.cap}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"back-off factor must be a finite number >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"back-off jitter must be within [0, 1], got {self.jitter}")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` failures in a row (1 for the first; less counts as 1).

        ``rand`` (values in [0, 1)) is called once when ``jitter`` is set, never otherwise."""
        try:
            base = self.initial * self.factor ** max(failures - 1, 0)
        except OverflowError:
            base = math.inf if self.initial else 0.0
        if self.jitter:
            base += base * self.jitter * rand()
        if self.cap is not None:
            base = min(base, self.cap)
        return float(base)

    def delays(self, rand: Callable[[], float] = random.random) -> Delays:
        """An iterator over this policy's waits, one per failure, with ``reset()`` after a success."""
        return Delays(self, rand)


class Delays(Iterator[float]):
    """The waits of one ``Backoff`` for one loop: ``next()`` after each failure, ``reset()`` after a
    success. Endless: past the cap it keeps answering the cap."""

    __slots__ = ("_rand", "backoff", "failures")

    def __init__(self, backoff: Backoff, rand: Callable[[], float] = random.random) -> None:
        self.backoff = backoff
        self.failures = 0
        self._rand = rand

    def __next__(self) -> float:
        self.failures += 1
        return self.backoff.delay(self.failures, self._rand)

    def reset(self) -> None:
        """Start over: the next wait is the policy's first."""
        self.failures = 0


__all__ = ["Backoff", "Delays"]
