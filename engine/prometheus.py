"""Podium's metrics as a ``prometheus_client`` collector, read from the engine at scrape time.

``EngineCollector(engine, metrics)`` is a collector: ``registry.register(collector)`` adds Podium's
metric families to a ``prometheus_client.CollectorRegistry``, and every scrape of that registry
(``generate_latest(registry)``, the service's own ``/metrics`` route, ``start_http_server``) calls
``collect()``, which reads the counts the ``Metrics`` observer keeps in plain ints and dicts and what
the engine knows at that moment (queue depths, slots, events, the store's writer, loop lag, source
lag). Nothing is formatted or locked on the engine's hot path: the work happens here, per scrape.

``collect()`` may run on any thread (``start_http_server`` scrapes from its own): it copies each
dict it reads before iterating it, and only reads.

An ``Engine`` registers its collector on ``Engine(metrics_registry=...)`` (default: a private
registry, served at ``/metrics``) when it starts and unregisters it when it stops. One registry holds
one engine's metrics: ``export`` refuses a second with ``MetricsError`` rather than emit two
families of one name, which the text format forbids (and merging would need an ``engine`` label on
every series, changing them for the common single-engine case).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .errors import MetricsError, StoreError
from .metrics import Histogram, ReportsLag

if TYPE_CHECKING:
    from .metrics import Metrics
    from .observe import EngineView

log = logging.getLogger("podium.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of ``generate_latest``'s output (Prometheus text format 0.0.4)."""

Labels = Sequence[str]
Sample = tuple[Labels, float]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name as scraped, kind, help text and label names."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()

    def metric(
        self,
        samples: Iterable[Sample] = (),
        series: Iterable[tuple[Labels, Histogram]] = (),
    ) -> Metric:
        """The family with ``samples`` (counter, gauge) or ``series`` (histogram); empty by default."""
        if self.kind == "histogram":
            hist = HistogramMetricFamily(self.name, self.help, labels=self.labels)
            for labels, h in series:
                buckets = [(_le(bound), float(n)) for bound, n in h.cumulative()]
                hist.add_metric(labels, buckets, h.sum)
            return hist
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        family = cls(self.name, self.help, labels=self.labels)
        for labels, value in samples:
            family.add_metric(labels, value)
        return family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


RUNS = Family(
    "podium_runs_total", "counter", "Runs that reached a final state, by DAG and state.",
    ("dag", "state"),
)  # fmt: skip
TRANSITIONS = Family(
    "podium_task_transitions_total", "counter", "Task state changes, by DAG and the state entered.",
    ("dag", "state"),
)  # fmt: skip
TASKS_RUNNING = Family("podium_tasks_running", "gauge", "Task tries running now, by DAG.", ("dag",))
TASK_DURATION = Family(
    "podium_task_duration_seconds", "histogram",
    "Duration of finished task tries (succeeded, failed, or failed before a retry), by DAG.",
    ("dag",),
)  # fmt: skip
RUNS_ACTIVE = Family("podium_runs_active", "gauge", "Unfinished runs the engine serves.")
QUEUE_DEPTH = Family(
    "podium_queue_depth", "gauge",
    "Items waiting: ready tasks (ready), event batches on the bus (bus), uncommitted store changes (store).",
    ("queue",),
)  # fmt: skip
POOL_SLOTS = Family("podium_pool_slots", "gauge", "Slots of each pool.", ("pool",))
POOL_SLOTS_IN_USE = Family(
    "podium_pool_slots_in_use", "gauge", "Slots of each pool taken by running tasks.", ("pool",)
)
TASK_SLOTS = Family("podium_task_slots", "gauge", "Task slots across all runs (max_tasks).")
TASK_SLOTS_IN_USE = Family("podium_task_slots_in_use", "gauge", "Task slots taken.")
EVENTS = Family(
    "podium_events_total", "counter",
    "Events from sources, by outcome (ran, deduplicated, filtered, dead).", ("outcome",),
)  # fmt: skip
SOURCE_LAG_MESSAGES = Family(
    "podium_source_lag_messages", "gauge",
    "Messages a source has not consumed yet (Kafka consumer lag).", ("source",),
)  # fmt: skip
SOURCE_LAG_SECONDS = Family(
    "podium_source_lag_seconds", "gauge",
    "How old the events a source is about to deliver are (SQS oldest message age).", ("source",),
)  # fmt: skip
STORE_COMMITS = Family(
    "podium_store_commits_total", "counter", "State store transactions committed."
)
STORE_ROWS = Family("podium_store_rows_written_total", "counter", "State store changes committed.")
STORE_HEALTHY = Family(
    "podium_store_healthy", "gauge",
    "1 while state store writes succeed, 0 while they fail and are retried.",
)  # fmt: skip
STORE_BATCH_SIZE = Family(
    "podium_store_batch_size", "histogram", "Changes per state store transaction."
)
STORE_COMMIT_SECONDS = Family(
    "podium_store_commit_seconds", "histogram", "Duration of state store transactions."
)
LOOP_LAG = Family("podium_loop_lag_seconds", "gauge", "Event loop lag at the last check.")
LOOP_LAG_MAX = Family("podium_loop_lag_max_seconds", "gauge", "Largest event loop lag seen.")
LOOP_STALLS = Family(
    "podium_loop_stalls_total", "counter", "Event loop lags above the watchdog threshold."
)
ALERTS = Family(
    "podium_alerts_total", "counter",
    "Alert deliveries by notifier and outcome (delivered, failed, dropped).",
    ("notifier", "outcome"),
)  # fmt: skip
OPENLINEAGE_EVENTS = Family(
    "podium_openlineage_events_total", "counter",
    "OpenLineage events sent (emitted), sent again after a failure (retried), or given up (dropped).",
    ("outcome",),
)  # fmt: skip

FAMILIES: tuple[Family, ...] = (
    RUNS, TRANSITIONS, TASKS_RUNNING, TASK_DURATION, RUNS_ACTIVE, QUEUE_DEPTH, POOL_SLOTS,
    POOL_SLOTS_IN_USE, TASK_SLOTS, TASK_SLOTS_IN_USE, EVENTS, SOURCE_LAG_MESSAGES,
    SOURCE_LAG_SECONDS, STORE_COMMITS, STORE_ROWS, STORE_HEALTHY, STORE_BATCH_SIZE,
    STORE_COMMIT_SECONDS, LOOP_LAG, LOOP_LAG_MAX, LOOP_STALLS, ALERTS, OPENLINEAGE_EVENTS,
)  # fmt: skip
"""Every family Podium exports, in scrape order (``podium_alerts_total`` only with alerting,
``podium_openlineage_events_total`` only with OpenLineage on)."""


class EventCounts(Protocol):
    """Something that counts its events by outcome (the OpenLineage emitter)."""

    @property
    def counts(self) -> Mapping[str, int]: ...


class EngineCollector:
    """A ``prometheus_client`` collector of one engine's metrics: ``registry.register(it)``.

    ``metrics`` is the ``Metrics`` observer added to ``engine`` (``engine.metrics`` for the one an
    ``Engine`` makes itself). ``describe()`` names every family without reading the engine, so a
    registry detects a clash when the collector is registered."""

    def __init__(self, engine: EngineView, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.openlineage: EventCounts | None = None  # set before export when OpenLineage is on

    def describe(self) -> list[Metric]:
        skip = set()
        if self.metrics.alerting is None:
            skip.add(ALERTS)
        if self.openlineage is None:
            skip.add(OPENLINEAGE_EVENTS)
        return [f.metric() for f in FAMILIES if f not in skip]

    def collect(self) -> Iterator[Metric]:
        engine, metrics = self.engine, self.metrics
        yield RUNS.metric(((d, s), n) for (d, s), n in sorted(metrics.runs_total.items()))
        yield TRANSITIONS.metric(
            ((d, s), n) for (d, s), n in sorted(metrics.task_transitions.items())
        )
        running = metrics.running_by_dag()
        dags = sorted(set(engine.dags) | set(running))
        yield TASKS_RUNNING.metric(((d,), running.get(d, 0)) for d in dags)
        durations = sorted(metrics.task_durations.items())
        yield TASK_DURATION.metric(series=(((d,), h) for d, h in durations))
        yield RUNS_ACTIVE.metric([((), engine.pending_runs)])
        ready, sink = engine.ready, engine.sink
        depths: list[Sample] = [(("ready",), len(ready)), (("bus",), sink.bus_depth)]
        try:
            writer = engine.store.writer
        except StoreError:
            writer = None  # the engine is not open: no store metrics
        if writer is not None:
            depths.append((("store",), writer.pending))
        yield QUEUE_DEPTH.metric(depths)
        pools = sorted(engine.pools.items())
        used = dict(ready.used)
        yield POOL_SLOTS.metric(((p,), n) for p, n in pools)
        yield POOL_SLOTS_IN_USE.metric(((p,), used.get(("pool", p), 0)) for p, _ in pools)
        yield TASK_SLOTS.metric([((), engine.max_tasks)])
        yield TASK_SLOTS_IN_USE.metric([((), ready.global_used)])
        yield EVENTS.metric(((o,), n) for o, n in sorted(sink.counts.items()))
        messages, seconds = self._source_lag()
        yield SOURCE_LAG_MESSAGES.metric(messages)
        yield SOURCE_LAG_SECONDS.metric(seconds)
        if writer is not None:
            metrics.catch_up_commits(writer.commits, writer.rows_written)
            yield STORE_COMMITS.metric([((), writer.commits)])
            yield STORE_ROWS.metric([((), writer.rows_written)])
            yield STORE_HEALTHY.metric([((), 1 if writer.healthy else 0)])
        yield STORE_BATCH_SIZE.metric(series=[((), metrics.batch_sizes)])
        yield STORE_COMMIT_SECONDS.metric(series=[((), metrics.commit_seconds)])
        lag = metrics.loop_lag
        yield LOOP_LAG.metric([((), lag.last)])
        yield LOOP_LAG_MAX.metric([((), lag.max)])
        yield LOOP_STALLS.metric([((), lag.stalls)])
        if metrics.alerting is not None:
            stats = sorted(metrics.alerting.stats.items())
            yield ALERTS.metric(((n, o), c) for (n, o), c in stats)
        if self.openlineage is not None:
            counts = sorted(dict(self.openlineage.counts).items())
            yield OPENLINEAGE_EVENTS.metric(((o,), n) for o, n in counts)

    def _source_lag(self) -> tuple[list[Sample], list[Sample]]:
        messages: list[Sample] = []
        seconds: list[Sample] = []
        for subscription, source in sorted(self.engine.sources.items()):
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
                messages.append(((subscription,), lag.messages))
            if lag.seconds is not None:
                seconds.append(((subscription,), lag.seconds))
        return messages, seconds


def export(registry: CollectorRegistry, collector: EngineCollector) -> None:
    """Register ``collector`` on ``registry``; ``MetricsError`` if the registry already has a
    metric of the same name (another engine's, most likely)."""
    try:
        registry.register(collector)
    except ValueError as exc:  # prometheus_client's DuplicateTimeseries
        names = sorted(getattr(exc, "duplicates", ()))
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise MetricsError(
            f"this metrics registry already has {shown or 'these metrics'} (another engine's?); "
            "one registry holds one engine's metrics: give each Engine its own metrics_registry "
            "(or stop the other engine first)"
        ) from exc


def unexport(registry: CollectorRegistry, collector: EngineCollector) -> None:
    """Remove ``collector`` from ``registry`` if it is there."""
    try:
        registry.unregister(collector)
    except KeyError:
        pass


def scrape(registry: CollectorRegistry) -> str:
    """The registry's metrics in the Prometheus text format (``generate_latest``)."""
    return generate_latest(registry).decode("utf-8")


__all__ = [
    "CONTENT_TYPE",
    "FAMILIES",
    "EngineCollector",
    "Family",
    "export",
    "scrape",
    "unexport",
]
