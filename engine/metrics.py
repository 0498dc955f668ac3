"""Metrics: counters kept by an engine observer, and the event-loop lag watchdog.

``Metrics`` is an ``Observer`` (``engine.add_observer(metrics)``): it counts runs reaching a final
state, task state changes and try durations, in plain ints and dicts, because it is called on every
task state change. Nothing is formatted here: ``engine.prometheus.EngineCollector`` reads these
counts, and what the engine knows at that moment, when a ``prometheus_client`` registry is scraped.

``LoopLagMonitor`` measures how late ``anyio.sleep(interval)`` wakes. A late wake-up means
something held the event loop: a task calling blocking code from ``async def``, or a flood of
callbacks. Above ``threshold`` it logs a WARNING naming the task tries that ran meanwhile; the
culprit is among them.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, runtime_checkable

import anyio
import anyio.abc

from .states import TaskState

if TYPE_CHECKING:
    from .alerting import Alerting
    from .run_state import ActiveRun, TaskRecord

log = logging.getLogger("podium.metrics")

DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

_TRY_ENDS = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY})


_FINISHED = frozenset(s for s in TaskState if s.finished)


class Histogram:
    """A Prometheus histogram: counts per upper bound, plus the sum and count of observations."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bound >= value ("le")
        if i < len(self.counts):
            self.counts[i] += times
        self.sum += value * times
        self.count += times

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound), ending with (+Inf, count)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((bound, running))
        out.append((math.inf, self.count))
        return out


@dataclass(frozen=True, slots=True)
class SourceLag:
    """How far an event source is behind: ``messages`` not yet consumed (Kafka consumer lag) and/or
    ``seconds`` (SQS: age of the oldest message; Kafka: age of the last record consumed)."""

    messages: int | None = None
    seconds: float | None = None


@runtime_checkable
class ReportsLag(Protocol):
    """Optional on an ``EventSource``: ``lag()`` is called at each scrape, on the scraping thread
    (the loop when the engine serves ``/metrics``; a thread of the caller's HTTP server perhaps), so
    it must return the last measured value at once without touching the loop (measure in the
    source's own loop), or None."""

    def lag(self) -> SourceLag | None: ...


# -- the loop-lag watchdog --------------------------------------------------------------------------


class LoopLagMonitor:
    """Measures event-loop lag: how much later than asked ``anyio.sleep(interval)`` returns.

    ``last`` / ``max`` lag in seconds, ``stalls`` = wake-ups later than ``threshold``. On a stall it
    logs a WARNING with the lag and ``suspects(since)``: the task tries running at any moment since
    the lagging sleep began (one of them held the loop). ``timer`` is a monotonic clock: lag is
    about real time even when the engine runs on a manual clock.
    """

    def __init__(
        self,
        *,
        interval: float = 0.25,
        threshold: float = 0.5,
        suspects: Callable[[float], Sequence[str]] | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not interval > 0 or not threshold > 0:
            raise ValueError("interval and threshold must be > 0")
        self.interval = interval
        self.threshold = threshold
        self._suspects = suspects
        self._timer = timer
        self.last = 0.0
        self.max = 0.0
        self.stalls = 0
        self.ticks = 0

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        task_status.started()
        while True:
            began = self._timer()
            await anyio.sleep(self.interval)
            self.record(self._timer() - began - self.interval, since=began)

    def record(self, lag: float, *, since: float) -> None:
        """Account one wake-up ``lag`` seconds late of a sleep that began at ``since`` (timer)."""
        lag = max(lag, 0.0)
        self.ticks += 1
        self.last = lag
        self.max = max(self.max, lag)
        if lag < self.threshold:
            return
        self.stalls += 1
        names = list(self._suspects(since)) if self._suspects is not None else []
        running = ", ".join(names) if names else "none (engine or sensor code, not a task)"
        log.warning(
            "event loop blocked for %.3fs (threshold %.3fs): something ran blocking code on the "
            "loop; task tries running meanwhile: %s",
            lag,
            self.threshold,
            running,
        )


# -- the observer -----------------------------------------------------------------------------------


class Metrics:
    """Counters and histograms fed by engine changes; ``engine.prometheus.EngineCollector`` exports
    them.

    Also owns the loop-lag watchdog (``metrics.loop_lag``; run ``loop_lag.run`` in a task group),
    whose warnings name the task tries this observer saw running. Give ``alerting`` to export
    alert delivery counts.
    """

    def __init__(
        self,
        *,
        loop_lag_interval: float = 0.25,
        loop_lag_threshold: float = 0.5,
        alerting: Alerting | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._timer = timer
        self.alerting = alerting
        self.loop_lag = LoopLagMonitor(
            interval=loop_lag_interval,
            threshold=loop_lag_threshold,
            suspects=self.running_since,
            timer=timer,
        )
        self.runs_total: Counter[tuple[str, str]] = Counter()
        self._transitions: Counter[tuple[str, TaskState]] = Counter()
        self.task_durations: dict[str, Histogram] = {}
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_SECONDS_BUCKETS)
        # (run_id, task_id) -> (dag_id, run_id, task_id, try): the tries running now
        self._running: dict[tuple[str, str], tuple[str, str, str, int]] = {}
        self._ended: deque[tuple[float, tuple[str, str, str, int]]] = deque(maxlen=1024)
        self._seen_commits = 0
        self._seen_rows = 0

    # -- Observer -----------------------------------------------------------------------------------

    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        try:
            self._task_changed(run, task)
        except Exception:  # monitoring must never break a run
            log.exception("metrics: could not account a task change")

    def _task_changed(self, run: ActiveRun, rec: TaskRecord) -> None:
        # Called on every recorded task change: keep it to dict operations (no formatting here).
        # The recorder calls observers once per transition, so every call counts.
        state = rec.state
        dag_id = run.dag.dag_id
        transitions = self._transitions
        counted = (dag_id, state)
        transitions[counted] = transitions.get(counted, 0) + 1
        key = (run.run_id, rec.task_id)
        ended = self._running.pop(key, None)
        if ended is not None:
            self._ended.append((self._timer(), ended))
            if state in _TRY_ENDS and rec.started_at is not None and rec.finished_at is not None:
                hist = self.task_durations.get(dag_id)
                if hist is None:
                    hist = self.task_durations[dag_id] = Histogram(DURATION_BUCKETS)
                hist.observe(max(rec.finished_at - rec.started_at, 0.0))
        if state is TaskState.RUNNING:
            self._running[key] = (dag_id, run.run_id, rec.task_id, rec.try_number)

    @property
    def task_transitions(self) -> Counter[tuple[str, str]]:
        """Task state changes by (dag_id, state)."""
        return Counter({(d, s.value): n for (d, s), n in list(self._transitions.items())})

    def running_by_dag(self) -> Counter[str]:
        """Task tries running now, by DAG."""
        return Counter(ran[0] for ran in list(self._running.values()))

    def run_changed(self, run: ActiveRun) -> None:
        if run.state.finished:
            self.runs_total[(run.dag.dag_id, run.state.value)] += 1

    # -- what the watchdog and the writer feed in ----------------------------------------------------

    def running_since(self, since: float) -> list[str]:
        """Task tries running now or that stopped running at or after ``since`` (timer time)."""
        tries = list(self._running.values())
        for stamp, ran in reversed(self._ended):
            if stamp < since:
                break
            tries.append(ran)
        names = [f"{d}.{t} (run {r}, try {n})" for d, r, t, n in tries]
        return list(dict.fromkeys(names))

    def observe_commit(self, rows: int, seconds: float) -> None:
        """One store transaction of ``rows`` changes took ``seconds`` (the writer's commit hook)."""
        self.batch_sizes.observe(rows)
        self.commit_seconds.observe(seconds)
        self._seen_commits += 1
        self._seen_rows += rows

    def catch_up_commits(self, commits: int, rows: int) -> None:
        """The writer's totals at a scrape: commits the hook did not report (no hook wired) are
        observed at their mean batch size."""
        new_commits = commits - self._seen_commits
        if new_commits <= 0:
            return
        new_rows = rows - self._seen_rows
        self.batch_sizes.observe(new_rows / new_commits, times=new_commits)
        self._seen_commits, self._seen_rows = commits, rows


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "COMMIT_SECONDS_BUCKETS",
    "DURATION_BUCKETS",
    "Histogram",
    "LoopLagMonitor",
    "Metrics",
    "ReportsLag",
    "SourceLag",
]
