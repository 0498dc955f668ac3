"""Retry policy: pure arithmetic over try numbers, no clock and no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .backoff import Backoff
from .errors import DAGError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How many times a task is retried, and how long to wait before each retry.

    The delay before retry ``n`` (``n = 1`` is the first retry) is
    ``delay * backoff ** (n - 1)``, plus up to ``jitter`` of itself at random, then capped at ``max_delay``
    (the cap applies after jitter so ``max_delay`` is a true bound).
    """

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise DAGError(f"retries must be >= 0, got {self.retries}")
        if self.delay < 0:
            raise DAGError(f"retry_delay must be >= 0, got {self.delay}")
        if self.backoff < 1:
            raise DAGError(f"retry backoff must be >= 1, got {self.backoff}")
        if self.max_delay is not None and self.max_delay < 0:
            raise DAGError(f"max_retry_delay must be >= 0, got {self.max_delay}")
        if not 0 <= self.jitter <= 1:
            raise DAGError(f"retry jitter must be within [0, 1], got {self.jitter}")

    def should_retry(self, try_number: int, error: BaseException | None) -> bool:
        """Whether a try that just failed with ``error`` gets another try.

        ``error`` is None when the failure has no exception object (the engine stopped during the try);
        such failures are always retryable while tries remain.
        """
        if try_number > self.retries:
            return False
        return error is None or isinstance(error, self.retry_on)

    def delay_before(self, try_number: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before try ``try_number + 1``, after try ``try_number`` failed."""
        policy = Backoff(self.delay, cap=self.max_delay, factor=self.backoff, jitter=self.jitter)
        return policy.delay(try_number, rand)
