"""Prometheus metrics: counters kept by an engine observer, gauges read from the engine at scrape
time, and the event-loop lag watchdog.

``Metrics`` is an ``Observer`` (``engine.add_observer(metrics)``): it counts runs reaching a final
state, task state changes and try durations. ``metrics.render(engine)`` returns the Prometheus text
exposition format (version 0.0.4), adding what the engine knows at that moment: queue depths, slots
in use per pool, events by outcome, the state store's writer, loop lag, and lag per event source
when the source reports it (``SourceLag``).

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, runtime_checkable

import anyio
import anyio.abc
from aiohttp import web

from .errors import StoreError
from .states import TaskState

if TYPE_CHECKING:
    from .alerts import Alerting
    from .observe import EngineView
    from .run_state import ActiveRun, TaskRecord

log = logging.getLogger("podium.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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
    """Optional on an ``EventSource``: ``lag()`` is called at each scrape, on the loop, so it must
    return the last measured value at once (measure in the source's own loop), or None."""

    def lag(self) -> SourceLag | None: ...


# -- the text format ------------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Label values escape backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


Sample = tuple[Mapping[str, str], float]


class Exposition:
    """Builds a scrape: one ``# HELP`` / ``# TYPE`` header per family, its samples after it."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def _header(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def counter(self, name: str, help_text: str, samples: Iterable[Sample]) -> None:
        self._family(name, "counter", help_text, samples)

    def gauge(self, name: str, help_text: str, samples: Iterable[Sample]) -> None:
        self._family(name, "gauge", help_text, samples)

    def _family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self._header(name, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {format_value(value)}")

    def histogram(
        self, name: str, help_text: str, series: Iterable[tuple[Mapping[str, str], Histogram]]
    ) -> None:
        self._header(name, "histogram", help_text)
        for labels, hist in series:
            for bound, n in hist.cumulative():
                le = "+Inf" if math.isinf(bound) else repr(bound)
                self._lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {n}")
            self._lines.append(f"{name}_sum{_labels(labels)} {format_value(hist.sum)}")
            self._lines.append(f"{name}_count{_labels(labels)} {hist.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


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
    """Counters and histograms fed by engine changes; ``render(engine)`` produces a scrape.

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
        self._states: dict[tuple[str, str], TaskState] = {}  # unfinished tasks' last state
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
        key = (run.run_id, rec.task_id)
        state = rec.state
        if self._states.get(key) is state:
            return  # re-recorded without a state change
        dag_id = run.dag.dag_id
        self._transitions[(dag_id, state)] += 1
        if state in _FINISHED:
            self._states.pop(key, None)
        else:
            self._states[key] = state
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
        return Counter({(d, s.value): n for (d, s), n in self._transitions.items()})

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

    def _catch_up_commits(self, commits: int, rows: int) -> None:
        """Commits the hook did not report (no hook wired): observe their mean batch size."""
        new_commits = commits - self._seen_commits
        if new_commits <= 0:
            return
        new_rows = rows - self._seen_rows
        self.batch_sizes.observe(new_rows / new_commits, times=new_commits)
        self._seen_commits, self._seen_rows = commits, rows

    # -- the scrape ----------------------------------------------------------------------------------

    def render(self, engine: EngineView) -> str:
        """The engine's metrics in the Prometheus text format."""
        out = Exposition()
        out.counter(
            "podium_runs_total",
            "Runs that reached a final state, by DAG and state.",
            (({"dag": d, "state": s}, n) for (d, s), n in sorted(self.runs_total.items())),
        )
        out.counter(
            "podium_task_transitions_total",
            "Task state changes, by DAG and the state entered.",
            (({"dag": d, "state": s}, n) for (d, s), n in sorted(self.task_transitions.items())),
        )
        running: Counter[str] = Counter(ran[0] for ran in self._running.values())
        out.gauge(
            "podium_tasks_running",
            "Task tries running now, by DAG.",
            (({"dag": d}, running.get(d, 0)) for d in sorted(set(engine.dags) | set(running))),
        )
        out.histogram(
            "podium_task_duration_seconds",
            "Duration of finished task tries (succeeded, failed, or failed before a retry), by DAG.",
            (({"dag": d}, h) for d, h in sorted(self.task_durations.items())),
        )
        out.gauge(
            "podium_runs_active", "Unfinished runs the engine serves.", [({}, engine.pending_runs)]
        )
        ready = engine.ready
        sink = engine.sink
        depths: list[Sample] = [
            ({"queue": "ready"}, len(ready)),
            ({"queue": "bus"}, sink.bus_depth),
        ]
        writer = None
        try:
            writer = engine.store.writer
        except StoreError:
            pass  # the engine is not open: no store metrics
        if writer is not None:
            depths.append(({"queue": "store"}, writer.pending))
        out.gauge(
            "podium_queue_depth",
            "Items waiting: ready tasks (ready), event batches on the bus (bus), uncommitted store changes (store).",
            depths,
        )
        pools = sorted(engine.pools.items())
        out.gauge("podium_pool_slots", "Slots of each pool.", (({"pool": p}, n) for p, n in pools))
        out.gauge(
            "podium_pool_slots_in_use",
            "Slots of each pool taken by running tasks.",
            (({"pool": p}, ready.used.get(("pool", p), 0)) for p, _ in pools),
        )
        out.gauge(
            "podium_task_slots", "Task slots across all runs (max_tasks).", [({}, engine.max_tasks)]
        )
        out.gauge("podium_task_slots_in_use", "Task slots taken.", [({}, ready.global_used)])
        out.counter(
            "podium_events_total",
            "Events from sources, by outcome (ran, deduplicated, filtered, dead).",
            (({"outcome": o}, n) for o, n in sorted(sink.counts.items())),
        )
        self._render_source_lag(out, engine)
        if writer is not None:
            self._catch_up_commits(writer.commits, writer.rows_written)
            out.counter(
                "podium_store_commits_total",
                "State store transactions committed.",
                [({}, writer.commits)],
            )
            out.counter(
                "podium_store_rows_written_total",
                "State store changes committed.",
                [({}, writer.rows_written)],
            )
            out.gauge(
                "podium_store_healthy",
                "1 while state store writes succeed, 0 while they fail and are retried.",
                [({}, 1 if writer.healthy else 0)],
            )
        out.histogram(
            "podium_store_batch_size",
            "Changes per state store transaction.",
            [({}, self.batch_sizes)],
        )
        out.histogram(
            "podium_store_commit_seconds",
            "Duration of state store transactions.",
            [({}, self.commit_seconds)],
        )
        lag = self.loop_lag
        out.gauge("podium_loop_lag_seconds", "Event loop lag at the last check.", [({}, lag.last)])
        out.gauge("podium_loop_lag_max_seconds", "Largest event loop lag seen.", [({}, lag.max)])
        out.counter(
            "podium_loop_stalls_total",
            "Event loop lags above the watchdog threshold.",
            [({}, lag.stalls)],
        )
        if self.alerting is not None:
            stats = self.alerting.stats
            out.counter(
                "podium_alerts_total",
                "Alert deliveries by notifier and outcome (delivered, failed, dropped).",
                (({"notifier": n, "outcome": o}, c) for (n, o), c in sorted(stats.items())),
            )
        return out.text()

    def _render_source_lag(self, out: Exposition, engine: EngineView) -> None:
        messages: list[Sample] = []
        seconds: list[Sample] = []
        for subscription, source in sorted(engine.sources.items()):
            if not isinstance(source, ReportsLag):
                continue
            try:
                lag = source.lag()
            except Exception:
                log.debug("source %s could not report its lag", subscription, exc_info=True)
                continue
            if lag is None:
                continue
            if lag.messages is not None:
                messages.append(({"source": subscription}, lag.messages))
            if lag.seconds is not None:
                seconds.append(({"source": subscription}, lag.seconds))
        out.gauge(
            "podium_source_lag_messages",
            "Messages a source has not consumed yet (Kafka consumer lag).",
            messages,
        )
        out.gauge(
            "podium_source_lag_seconds",
            "How old the events a source is about to deliver are (SQS oldest message age).",
            seconds,
        )


def metrics_handler(
    engine: EngineView, metrics: Metrics
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving ``metrics.render(engine)``: ``app.router.add_get("/metrics", ...)``."""

    async def handle(request: web.Request) -> web.Response:
        body = metrics.render(engine).encode("utf-8")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return handle


__all__ = [
    "CONTENT_TYPE",
    "Exposition",
    "Histogram",
    "LoopLagMonitor",
    "Metrics",
    "ReportsLag",
    "SourceLag",
    "escape_label_value",
    "metrics_handler",
]
