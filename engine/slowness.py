"""Durations, baselines and deadlines: when is a running try slow, and when is an SLA missed.

Pure logic over plain numbers (epoch seconds from the engine's clock): no I/O, no event loop. The
alerting loop (``engine.alerting``) feeds it observed durations and asks it about running tries.

- A task's **baseline** is the median of its last ``window`` successful try durations.
- A try is **slow** once it has run more than ``factor`` times its baseline, where a baseline below
  ``min_baseline`` counts as ``min_baseline`` (so a 20 ms task is not "slow" at 61 ms), and only
  once the task has at least ``min_samples`` successes (one lucky run is not a baseline).
- An **SLA** is a deadline ``seconds`` after the run's logical date (default) or the run's start; a
  DAG's SLA is missed when the run is not finished by then, a task's when the task is not.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

TaskKey = tuple[str, str]
"""(dag_id, task_id)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlownessPolicy:
    """When a try counts as slow. ``window`` = N, ``factor`` = k (issue 5's defaults)."""

    window: int = 20
    factor: float = 3.0
    min_baseline: float = 1.0
    min_samples: int = 3

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not self.factor > 1:
            raise ValueError(f"factor must be > 1, got {self.factor}")
        if self.min_baseline < 0:
            raise ValueError(f"min_baseline must be >= 0, got {self.min_baseline}")
        if not 1 <= self.min_samples <= self.window:
            raise ValueError(f"min_samples must be in 1..window, got {self.min_samples}")


def threshold(baseline: float, factor: float, min_baseline: float) -> float:
    """The elapsed time past which a try with this baseline is slow."""
    return factor * max(baseline, min_baseline)


def is_slow(elapsed: float, baseline: float, k: float, min_baseline: float) -> bool:
    """True when ``elapsed`` is more than ``k`` times ``max(baseline, min_baseline)``."""
    return elapsed > threshold(baseline, k, min_baseline)


class Baselines:
    """Rolling windows of successful durations per (dag_id, task_id); ``baseline`` is their median.

    Keeps at most ``capacity`` samples per task (the largest window any policy asks for).
    """

    def __init__(self, capacity: int = 20) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._samples: dict[TaskKey, deque[float]] = {}

    def add(self, dag_id: str, task_id: str, duration: float) -> None:
        """Record one successful try's duration (newest)."""
        if duration < 0:
            return  # a clock step backwards: not a duration
        window = self._samples.get((dag_id, task_id))
        if window is None:
            window = self._samples[(dag_id, task_id)] = deque(maxlen=self.capacity)
        window.append(duration)

    def seed(self, dag_id: str, task_id: str, durations: Iterable[float]) -> None:
        """Add older durations (oldest first) *before* the ones already recorded."""
        older = [d for d in durations if d >= 0]
        current = list(self._samples.get((dag_id, task_id), ()))
        merged = (older + current)[-self.capacity :]
        if merged:
            self._samples[(dag_id, task_id)] = deque(merged, maxlen=self.capacity)

    def samples(self, dag_id: str, task_id: str) -> list[float]:
        """The recorded durations, oldest first."""
        return list(self._samples.get((dag_id, task_id), ()))

    def baseline(self, dag_id: str, task_id: str, window: int | None = None) -> float | None:
        """Median of the last ``window`` durations (all kept ones by default); None without any."""
        samples = self.samples(dag_id, task_id)
        if window is not None:
            samples = samples[-window:]
        return statistics.median(samples) if samples else None


@dataclass(frozen=True, slots=True)
class RunningTry:
    """A try that is running now, as the slowness check needs it."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    started_at: float


@dataclass(frozen=True, slots=True)
class Slowdown:
    """A running try found slow: how long it has run and what it was compared with."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    elapsed: float
    baseline: float
    threshold: float
    samples: int


def find_slow(
    running: Iterable[RunningTry],
    baselines: Baselines,
    policy_for: Callable[[str, str], SlownessPolicy | None],
    now: float,
) -> list[Slowdown]:
    """The running tries that are slow at ``now`` (``policy_for`` returning None: never slow)."""
    slow: list[Slowdown] = []
    for t in running:
        policy = policy_for(t.dag_id, t.task_id)
        if policy is None:
            continue
        samples = baselines.samples(t.dag_id, t.task_id)[-policy.window :]
        if len(samples) < policy.min_samples:
            continue
        base = statistics.median(samples)
        elapsed = now - t.started_at
        limit = threshold(base, policy.factor, policy.min_baseline)
        if elapsed > limit:
            slow.append(
                Slowdown(
                    t.dag_id, t.run_id, t.task_id, t.try_number, elapsed, base, limit, len(samples)
                )
            )
    return slow


def policy_lookup(
    default: SlownessPolicy | None,
    overrides: Mapping[str | TaskKey, SlownessPolicy | None] | None = None,
) -> Callable[[str, str], SlownessPolicy | None]:
    """A ``policy_for(dag_id, task_id)``: ``overrides[(dag_id, task_id)]``, else
    ``overrides[dag_id]``, else ``default``. A None value turns slowness checks off there."""
    table = dict(overrides or {})

    def policy_for(dag_id: str, task_id: str) -> SlownessPolicy | None:
        if (dag_id, task_id) in table:
            return table[(dag_id, task_id)]
        if dag_id in table:
            return table[dag_id]
        return default

    return policy_for


# -- SLAs ----------------------------------------------------------------------------------------

Anchor = Literal["logical_date", "start"]


@dataclass(frozen=True, slots=True)
class SLA:
    """A deadline ``seconds`` after the run's logical date, or after the run started."""

    seconds: float
    relative_to: Anchor = "logical_date"

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"an SLA needs seconds > 0, got {self.seconds!r}")
        if self.relative_to not in ("logical_date", "start"):
            raise ValueError(
                f"relative_to must be 'logical_date' or 'start', not {self.relative_to!r}"
            )


def as_sla(value: SLA | float | None) -> SLA | None:
    """Accept ``sla=3600`` as shorthand for ``SLA(3600)`` (relative to the logical date)."""
    if value is None or isinstance(value, SLA):
        return value
    return SLA(float(value))


def sla_deadline(
    sla: SLA, *, logical_date: float | None, run_started_at: float | None
) -> float | None:
    """The deadline in epoch seconds, or None while its anchor is unknown (a run not started)."""
    anchor = logical_date if sla.relative_to == "logical_date" else run_started_at
    return None if anchor is None else anchor + sla.seconds


def sla_missed(
    sla: SLA,
    *,
    logical_date: float | None,
    run_started_at: float | None,
    finished_at: float | None,
    now: float,
) -> bool:
    """Whether the SLA is missed at ``now``: finished after the deadline, or still unfinished past
    it. (Finishing exactly at the deadline meets it.)"""
    deadline = sla_deadline(sla, logical_date=logical_date, run_started_at=run_started_at)
    if deadline is None:
        return False
    if finished_at is not None:
        return finished_at > deadline
    return now > deadline


__all__ = [
    "SLA",
    "Baselines",
    "RunningTry",
    "Slowdown",
    "SlownessPolicy",
    "as_sla",
    "find_slow",
    "is_slow",
    "policy_lookup",
    "sla_deadline",
    "sla_missed",
    "threshold",
]
