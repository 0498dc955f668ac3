"""Building an ``Engine``'s parts: the DAGs it serves checked and registered, and every part made
and wired to the others (docs/architecture.md draws them). The ``Engine`` keeps the parts, runs
them in its task group and delegates its public API to them; ``assemble`` is the one place that
knows how they connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio.abc
from prometheus_client import CollectorRegistry

from . import serialization
from .alerting import Alerting, SLAResolver
from .alerts import AlertKind
from .asset_triggers import AssetTriggers
from .clock import Clock
from .config import EngineConfig
from .dag import DAG
from .dispatcher import Dispatcher
from .errors import DAGError, PodiumError
from .ingest import EventIngest
from .limits import ReadyQueue
from .lineage import Lineage, declared_assets
from .lineage_events import LineageOptions
from .lineage_in import LineageIntake
from .logs import TaskLogHandler
from .logs import install as install_log_handler
from .metrics import Metrics
from .notifiers import Notifier
from .operations import Operations, task_capacity
from .prometheus import EngineCollector
from .recorder import Recorder
from .requests import RequestPoller
from .run_driver import RunDriver
from .run_state import ActiveRun
from .runbook import RunBook
from .runners.sessions import Runners
from .slowness import SLA, SlownessPolicy
from .source_supervisor import SourceSupervisor
from .store import Store
from .store import queries as q

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from opentelemetry.trace import TracerProvider

    from .lineage_out import LineageEmitter
    from .tracing import Tracing


def register_dags(dags: Iterable[DAG], pools: Mapping[str, int]) -> dict[str, DAG]:
    """The DAGs by id, each checked: built with ``@dag``, one per id, its pools configured, its
    triggers known; triggers that share a consumer must agree (``TriggerError``, ``DAGError``)."""
    from sensors.sources import check_shared_consumers, subscription_of

    registered: dict[str, DAG] = {}
    for d in dags:
        if not isinstance(d, DAG):
            raise DAGError(f"expected a DAG built with @dag, got {d!r}")
        if d.dag_id in registered and registered[d.dag_id] is not d:
            raise DAGError(f"two different DAGs are named {d.dag_id!r}")
        check_pools(d, pools)
        for index, trig in enumerate(d.triggers):
            subscription_of(trig, dag_id=d.dag_id, index=index)  # raises TriggerError if unknown
        registered[d.dag_id] = d
    check_shared_consumers([t for d in registered.values() for t in d.triggers])
    return registered


@dataclass(frozen=True, kw_only=True)
class EngineHooks:
    """What the parts call back in the ``Engine``."""

    crash: Callable[[BaseException], None]  # an engine bug escaped a try: stop the engine
    spawn: Callable[..., None]  # start a job in the engine's task group
    after_run: Callable[[ActiveRun], Awaitable[None]]  # a run finished
    check_open: Callable[[], None]  # raise unless the engine is running
    stopping: Callable[[], bool]


@dataclass(frozen=True, kw_only=True)
class Parts:
    """An engine's parts, wired."""

    store: Store
    alerting: Alerting
    metrics: Metrics
    registry: CollectorRegistry
    collector: EngineCollector
    recorder: Recorder
    dispatcher: Dispatcher
    driver: RunDriver
    book: RunBook
    runners: Runners
    tracing: Tracing | None
    ingest: EventIngest
    assets: AssetTriggers
    lineage: Lineage
    lineage_in: LineageIntake
    lineage_out: LineageEmitter | None
    ops: Operations
    requests: RequestPoller
    sensors: SourceSupervisor


def assemble(
    config: EngineConfig,
    dags: dict[str, DAG],
    clock: Clock,
    view: Any,
    hooks: EngineHooks,
    *,
    notifiers: Sequence[Notifier],
    alert_on: Iterable[AlertKind],
    base_url: str | None,
    slowness: SlownessPolicy | None,
    slowness_overrides: Mapping[str | tuple[str, str], SlownessPolicy | None] | None,
    sla: Mapping[str | tuple[str, str], SLA | float] | SLAResolver | None,
    metrics_registry: CollectorRegistry | None,
    tracing: bool,
    tracer_provider: TracerProvider | None,
    lineage: bool | LineageOptions,
    openlineage_client: OpenLineageClient | None,
) -> Parts:
    """Make every part of an engine and connect them. ``view``: the engine as its parts read it
    (an ``EngineView`` for metrics and alerts, the run reader of the operations)."""
    loop_lag_threshold = config.loop_lag_threshold
    store = Store(config.db, owner=True, durability=config.durability)
    alerting = Alerting(
        view, notifiers, on=alert_on, base_url=base_url, slowness=slowness,
        slowness_overrides=slowness_overrides, sla=sla,
    )  # fmt: skip
    metrics = Metrics(loop_lag_threshold=loop_lag_threshold, alerting=alerting)
    # a live object, not a setting: kept beside the config (like clock and notifiers)
    registry = CollectorRegistry() if metrics_registry is None else metrics_registry
    collector = EngineCollector(view, metrics)
    recorder = Recorder([metrics, alerting])
    dispatcher = Dispatcher(
        ready=ReadyQueue(config.max_tasks, {("pool", n): s for n, s in config.pools.items()}),
        recorder=recorder,
        clock=clock,
        max_threads=config.max_threads,
        max_result_bytes=config.max_result_bytes,
        on_crash=hooks.crash,
    )
    driver = RunDriver(
        recorder=recorder,
        dispatcher=dispatcher,
        clock=clock,
        spawn=hooks.spawn,
    )
    driver.max_map_length = config.max_map_length
    book = RunBook(
        dags=MappingProxyType(dags),
        store=store,
        recorder=recorder,
        driver=driver,
        clock=clock,
        on_finished=hooks.after_run,
    )
    driver.attach(book)
    # runners (engine/runners): the pools of worker processes; opened in _start_jobs
    runners = Runners(
        dags=MappingProxyType(dags),
        default=config.runner,
        store=store,
        max_log_bytes=config.max_log_bytes,
    )
    dispatcher.runners = runners
    tracing_part: Tracing | None = None
    if tracing or tracer_provider is not None:
        tracing_part = make_tracing(recorder, tracer_provider)
        recorder.add_observer(tracing_part)
        book.tracing = dispatcher.tracing = tracing_part
    ingest = EventIngest(
        intake=book,
        store=store,
        clock=clock,
        bus_size=config.bus_size,
        high_water=config.high_water,
        low_water=config.low_water_mark,
    )
    # -- assets (issue 12): the asset router and trigger loop, and the lineage reads
    assets = AssetTriggers(
        dags=MappingProxyType(dags),
        intake=book,
        store=store,
        recorder=recorder,
        clock=clock,
    )
    recorder.asset_routing = assets
    lineage_reads = Lineage(store=store, dags=MappingProxyType(dags), now=clock.now)
    # -- OpenLineage (issue 12): events out (optional, background) and in (the HTTP API)
    lineage_in = LineageIntake(store=store, recorder=recorder, clock=clock)
    lineage_out: LineageEmitter | None = None
    if lineage is not False or openlineage_client is not None:
        options = lineage if isinstance(lineage, LineageOptions) else LineageOptions.from_env()
        lineage_out = make_lineage_emitter(options, store, recorder, clock, openlineage_client)
        recorder.add_observer(lineage_out)
        collector.openlineage = lineage_out
    ops = Operations(
        book=book,
        driver=driver,
        dispatcher=dispatcher,
        recorder=recorder,
        store=store,
        clock=clock,
        runs=view,
        check_open=hooks.check_open,
    )
    requests = RequestPoller(
        book=book,
        ops=ops,
        store=store,
        recorder=recorder,
        interval=config.poll_interval,
        spawn=hooks.spawn,
    )
    sensors = SourceSupervisor(
        dags=MappingProxyType(dags),
        ingest=ingest,
        clock=clock,
        enabled=config.sensors,
        stopping=hooks.stopping,
    )
    return Parts(
        store=store, alerting=alerting, metrics=metrics, registry=registry, collector=collector,
        recorder=recorder, dispatcher=dispatcher, driver=driver, book=book, runners=runners,
        tracing=tracing_part, ingest=ingest, assets=assets, lineage=lineage_reads,
        lineage_in=lineage_in, lineage_out=lineage_out, ops=ops, requests=requests,
        sensors=sensors,
    )  # fmt: skip


async def open_parts(
    parts: Parts, dags: Mapping[str, DAG], config: EngineConfig, now: float
) -> TaskLogHandler | None:
    """Once the state file is open: register the DAGs and their limits there, restore paused DAGs,
    open the bus, and capture task logs (the handler, to uninstall at the end)."""
    writer = parts.store.writer
    parts.recorder.open(writer)
    dispatcher = parts.dispatcher
    for d in dags.values():
        for node in d.tasks.values():
            if node.options.concurrency is not None:
                key = ("task", d.dag_id, node.task_id)
                dispatcher.set_capacity(key, node.options.concurrency)
        dispatcher.set_capacity(("dag", d.dag_id), task_capacity(d))
        writer.execute(
            q.UPSERT_DAG,
            (d.dag_id, serialization.dumps_for_display(d.describe()), d.source_file, now),
        )
    parts.recorder.declare_assets(declared_assets(dags), now)  # issue 12
    await parts.requests.prepare()
    paused = await parts.store.paused_dags() & set(dags)
    parts.book.paused.update(paused)
    for dag_id in paused:
        dispatcher.set_capacity(("dag", dag_id), 0)
    parts.ingest.open()
    if not config.capture_logs:
        return None
    handler = TaskLogHandler(writer, config.max_log_bytes)
    install_log_handler(handler)
    parts.dispatcher.log_handler = handler
    return handler


def start_background(parts: Parts, tg: anyio.abc.TaskGroup) -> None:
    """Start the parts' background jobs, once the unfinished runs are resumed."""
    tg.start_soon(parts.dispatcher.serve)
    tg.start_soon(parts.driver.retries.serve)
    tg.start_soon(parts.requests.serve)
    if parts.tracing is None:
        tg.start_soon(parts.ingest.serve)
    else:  # runs from events continue the event's trace, never the engine's ambient span
        tg.start_soon(parts.tracing.detached, parts.ingest.serve)
    tg.start_soon(parts.assets.serve)  # asset-triggered runs
    if parts.lineage_out is not None:  # OpenLineage events, in the background
        tg.start_soon(parts.lineage_out.serve)
    parts.assets.wake_all()  # events queued before a stop or a kill are evaluated again
    parts.dispatcher.wake()
    parts.sensors.start(tg)


def make_tracing(recorder: Recorder, provider: TracerProvider | None) -> Tracing:
    try:
        from .tracing import Tracing
    except ImportError as exc:
        raise PodiumError(
            f"tracing needs OpenTelemetry: pip install 'podium[otel]' ({exc})"
        ) from None
    return Tracing(recorder, provider)


def make_lineage_emitter(
    options: LineageOptions,
    store: Store,
    recorder: Recorder,
    clock: Clock,
    client: OpenLineageClient | None,
) -> LineageEmitter:
    try:
        from .lineage_out import LineageEmitter
    except ImportError as exc:
        raise PodiumError(
            f"OpenLineage needs its client: pip install 'podium[openlineage]' ({exc})"
        ) from None
    return LineageEmitter(
        options=options, store=store, flush=recorder.flush, clock=clock, client=client
    )


def check_pools(d: DAG, pools: Mapping[str, int]) -> None:
    """Raise ``DAGError`` if a task of ``d`` names a pool that is not configured."""
    for node in d.tasks.values():
        pool = node.options.pool
        if pool is not None and pool not in pools:
            raise DAGError(
                f"DAG {d.dag_id!r}, task {node.task_id!r}: pool {pool!r} is not configured; "
                f"add it to Engine(pools={{{pool!r}: N}}) or `podium run --pool {pool}=N` "
                f"(configured: {', '.join(pools) or 'none'})"
            )
