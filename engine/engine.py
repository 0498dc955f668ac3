"""The ``Engine``: its configuration, its lifecycle, and a thin public API over its parts.

The parts, each with one job (docs/architecture.md draws them):
- ``Recorder`` writes task, run and operation rows through the store's group-commit writer, then
  tells the observers (metrics, alerts);
- ``Dispatcher`` starts ready tasks under every limit, one try each, after their ``running`` rows
  are committed;
- ``RunDriver`` moves each run forward: what to queue next, retries, pauses, cancellation, the end;
- ``RunBook`` is the only place a run is created, adopted after a restart, admitted or forgotten;
- ``EventIngest`` is the bus and the router loop: events become runs, exactly once each;
- ``Operations`` are the operator actions; ``RequestPoller`` runs those that the CLI leaves in the
  state file, and adopts the runs it queues there.

Lifecycle (``async with Engine(...)``): enter opens the state file (taking its owner lock), registers
the DAGs, resumes every unfinished run, and starts the background jobs in one task group. Exit stops
intake, lets in-flight tasks finish within ``shutdown_grace``, cancels the rest (recorded so they
run again on the next start) and commits everything.

Durability rules the parts keep:
- a run exists once its row is committed; ``trigger`` returns only after that;
- a try starts only after its ``running`` state (and so its try number) is committed, and only after
  the results of its upstream tasks are committed, so a crash never re-runs a committed success.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import partial
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry

from sensors.base import EventSource

from . import serialization
from .alerting import DEFAULT_SLOWNESS, Alerting, SLAResolver
from .alerts import DEFAULT_ON, AlertKind
from .asset_triggers import AssetTriggers
from .backfill import BackfillResult
from .clock import Clock, SystemClock
from .config import EngineConfig
from .dag import DAG
from .dispatcher import Dispatcher
from .errors import DAGError, EngineStoppedError, PodiumError
from .ingest import EventIngest
from .limits import ReadyQueue
from .lineage import Lineage, declared_assets
from .lineage_events import LineageOptions
from .lineage_in import LineageIntake
from .logs import DEFAULT_MAX_LOG_BYTES, TaskLogHandler
from .logs import install as install_log_handler
from .logs import uninstall as uninstall_log_handler
from .metrics import Metrics
from .models import Run
from .notifiers import Notifier
from .observe import Observer
from .operations import Operations, task_capacity
from .prometheus import EngineCollector, export, scrape, unexport
from .recorder import Recorder
from .requests import RequestPoller
from .run_driver import RunDriver, call_callback
from .run_state import ActiveRun
from .runbook import RunBook
from .runners.base import Runner
from .runners.sessions import Runners
from .slowness import SLA, SlownessPolicy
from .source_supervisor import SourceSupervisor
from .states import RunState
from .store import Durability, Store, run_from_row
from .store import queries as q

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from opentelemetry.trace import TracerProvider

    from .lineage_out import LineageEmitter
    from .tracing import Tracing

log = logging.getLogger("podium.engine")

HTTP_SERVER = "engine.web:serve"
"""The web UI and API, found by name when ``http=`` is set: the core never imports the web package."""


class Engine:
    """An orchestration engine on the caller's event loop.

    ``db``: path of the SQLite state file. ``dags``: the DAGs it serves. ``max_tasks``: live tasks at most,
    across all runs. ``pools``: named slot counts (``{"db": 4}``) that tasks join with ``pool=``.
    ``max_threads``: worker threads for sync tasks. ``durability``: ``"normal"`` or ``"full"`` (fsync per
    commit). ``max_result_bytes``: cap on a stored result. ``shutdown_grace``: seconds in-flight tasks get
    to finish when the engine stops. ``poll_interval``: how often runs queued by other processes are
    picked up. ``sensors``: start the DAGs' event sources (Kafka, S3, timers); off, runs start only
    by ``trigger``. ``high_water`` / ``low_water``: unfinished runs above which sensors stop pulling,
    and below which they resume. ``bus_size``: event batches the bus holds before publishers wait.
    ``max_map_length``: the most instances one mapped task (``task.map(...)``) may have.
    ``http``: serve the web UI and API on ``HOST:PORT`` (``http_token`` guards its writes, and its reads
    off loopback unless ``http_public_read``; ``http_private_probes`` guards ``/metrics`` and ``/api/health``
    there too).
    ``metrics_registry``: the ``prometheus_client.CollectorRegistry`` the engine exports its metrics
    on while it runs (default: a private one, served at ``/metrics``); one registry takes one
    engine, a second one raises ``MetricsError`` when it starts.
    ``tracing``: OpenTelemetry spans per run and per try through the global tracer provider, or
    through ``tracer_provider`` if given (needs ``podium[otel]``; see ``engine.tracing``).
    ``runner``: where tasks run unless their DAG or the task names a runner (default ``Local()``:
    async on the loop, sync in a thread; ``Process(workers=N)``: worker processes; docs/runners.md).
    ``lineage``: OpenLineage RunEvents for every run and task try, sent in the background through
    the ``openlineage-python`` client configured its own way (``openlineage.yml``,
    ``OPENLINEAGE_URL``), or through ``openlineage_client`` if given; a ``LineageOptions`` tunes it
    (needs ``podium[openlineage]``; see docs/lineage.md).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] = "podium.db",
        *,
        dags: Iterable[DAG] = (),
        max_tasks: int = 64,
        pools: Mapping[str, int] | None = None,
        max_threads: int = 8,
        durability: Durability = "normal",
        max_result_bytes: int | None = serialization.DEFAULT_MAX_RESULT_BYTES,
        shutdown_grace: float = 30.0,
        poll_interval: float = 0.25,
        clock: Clock | None = None,
        sensors: bool = True,
        high_water: int = 2000,
        low_water: int | None = None,
        bus_size: int = 64,
        capture_logs: bool = True,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        notifiers: Sequence[Notifier] = (),
        alert_on: Iterable[AlertKind] = DEFAULT_ON,
        base_url: str | None = None,
        slowness: SlownessPolicy | None = DEFAULT_SLOWNESS,
        slowness_overrides: Mapping[str | tuple[str, str], SlownessPolicy | None] | None = None,
        sla: Mapping[str | tuple[str, str], SLA | float] | SLAResolver | None = None,
        loop_lag_threshold: float = 0.5,
        max_map_length: int = 10_000,
        http: str | None = None,
        http_token: str | None = None,
        http_public_read: bool = False,
        http_private_probes: bool = False,
        metrics_registry: CollectorRegistry | None = None,
        tracing: bool = False,
        tracer_provider: TracerProvider | None = None,
        runner: Runner | None = None,
        lineage: bool | LineageOptions = False,
        openlineage_client: OpenLineageClient | None = None,
    ) -> None:
        self.config = EngineConfig(
            db=os.fspath(db), max_tasks=max_tasks, pools=pools or {}, max_threads=max_threads,
            durability=durability, max_result_bytes=max_result_bytes,
            shutdown_grace=shutdown_grace, poll_interval=poll_interval, sensors=sensors,
            high_water=high_water, low_water=low_water, bus_size=bus_size,
            capture_logs=capture_logs, max_log_bytes=max_log_bytes,
            loop_lag_threshold=loop_lag_threshold, max_map_length=max_map_length, http=http,
            http_token=http_token,
            http_public_read=http_public_read, http_private_probes=http_private_probes,
            runner=runner,
        )  # fmt: skip
        config = self.config
        self.clock: Clock = clock or SystemClock()
        self._dags: dict[str, DAG] = {}
        for d in dags:
            self._register(d)
        from sensors.sources import check_shared_consumers

        check_shared_consumers([t for d in self._dags.values() for t in d.triggers])

        self._store = Store(config.db, owner=True, durability=config.durability)
        self.alerting = Alerting(
            self, notifiers, on=alert_on, base_url=base_url, slowness=slowness,
            slowness_overrides=slowness_overrides, sla=sla,
        )  # fmt: skip
        self.metrics = Metrics(loop_lag_threshold=loop_lag_threshold, alerting=self.alerting)
        # a live object, not a setting: kept beside the config (like clock and notifiers)
        self._metrics_registry = (
            CollectorRegistry() if metrics_registry is None else metrics_registry
        )
        self._collector = EngineCollector(self, self.metrics)
        self._recorder = Recorder([self.metrics, self.alerting])
        self._dispatcher = Dispatcher(
            ready=ReadyQueue(config.max_tasks, {("pool", n): s for n, s in config.pools.items()}),
            recorder=self._recorder,
            clock=self.clock,
            max_threads=config.max_threads,
            max_result_bytes=config.max_result_bytes,
            on_crash=self._crash,
        )
        self._driver = RunDriver(
            recorder=self._recorder,
            dispatcher=self._dispatcher,
            clock=self.clock,
            spawn=self._spawn,
        )
        self._driver.max_map_length = config.max_map_length
        self._book = RunBook(
            dags=MappingProxyType(self._dags),
            store=self._store,
            recorder=self._recorder,
            driver=self._driver,
            clock=self.clock,
            on_finished=self._after_run,
        )
        self._driver.attach(self._book)
        # runners (engine/runners): the pools of worker processes; opened in _start_jobs
        self._runners = Runners(
            dags=MappingProxyType(self._dags),
            default=config.runner,
            store=self._store,
            max_log_bytes=config.max_log_bytes,
        )
        self._dispatcher.runners = self._runners
        self._tracing: Tracing | None = None
        if tracing or tracer_provider is not None:
            self._tracing = _make_tracing(self._recorder, tracer_provider)
            self._recorder.add_observer(self._tracing)
            self._book.tracing = self._dispatcher.tracing = self._tracing
        self._ingest = EventIngest(
            intake=self._book,
            store=self._store,
            clock=self.clock,
            bus_size=config.bus_size,
            high_water=config.high_water,
            low_water=config.low_water_mark,
        )
        # -- assets (issue 12): the asset router and trigger loop, and the lineage reads
        self._assets = AssetTriggers(
            dags=MappingProxyType(self._dags),
            intake=self._book,
            store=self._store,
            recorder=self._recorder,
            clock=self.clock,
        )
        self._recorder.asset_routing = self._assets
        self._lineage = Lineage(
            store=self._store, dags=MappingProxyType(self._dags), now=self.clock.now
        )
        # -- OpenLineage (issue 12): events out (optional, background) and in (the HTTP API)
        self._lineage_in = LineageIntake(
            store=self._store, recorder=self._recorder, clock=self.clock
        )
        self._lineage_out: LineageEmitter | None = None
        if lineage is not False or openlineage_client is not None:
            options = lineage if isinstance(lineage, LineageOptions) else LineageOptions.from_env()
            self._lineage_out = _make_lineage_emitter(
                options, self._store, self._recorder, self.clock, openlineage_client
            )
            self._recorder.add_observer(self._lineage_out)
            self._collector.openlineage = self._lineage_out
        self._ops = Operations(
            book=self._book,
            driver=self._driver,
            dispatcher=self._dispatcher,
            recorder=self._recorder,
            store=self._store,
            clock=self.clock,
            runs=self,
            check_open=self._check_open,
        )
        self._requests = RequestPoller(
            book=self._book,
            ops=self._ops,
            store=self._store,
            recorder=self._recorder,
            interval=config.poll_interval,
            spawn=self._spawn,
        )
        self._sensors = SourceSupervisor(
            dags=MappingProxyType(self._dags),
            ingest=self._ingest,
            clock=self.clock,
            enabled=config.sensors,
            stopping=lambda: self._stopping,
        )
        self._log_handler: TaskLogHandler | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._crashed: BaseException | None = None
        self._stopping = False
        self._started = False
        self.http_port: int | None = None

    # -- configuration, as attributes -----------------------------------------------------------------

    @property
    def db(self) -> str:
        return self.config.db

    @property
    def max_tasks(self) -> int:
        return self.config.max_tasks

    @property
    def pools(self) -> Mapping[str, int]:
        return self.config.pools

    @property
    def http(self) -> tuple[str, int] | None:
        """Where the web UI and API are served, as (host, port), or None."""
        return self.config.http_address

    @property
    def dags(self) -> dict[str, DAG]:
        return dict(self._dags)

    @property
    def store(self) -> Store:
        return self._store

    @property
    def sink(self) -> EventIngest:
        """The event bus, as an ``EventSink``: custom sensors publish ``EventBatch`` objects here."""
        return self._ingest

    @property
    def ready(self) -> ReadyQueue:
        """The ready queue (read it; the dispatcher owns it)."""
        return self._dispatcher.ready

    @property
    def sources(self) -> Mapping[str, EventSource]:
        """The running event sources, by subscription."""
        return MappingProxyType(self._sensors.sources)

    @property
    def pending_runs(self) -> int:
        """Unfinished runs this engine serves (the measure backpressure acts on)."""
        return len(self._book)

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The ``prometheus_client`` registry this engine exports its metrics on while it runs."""
        return self._metrics_registry

    @property
    def tracing(self) -> Tracing | None:
        """The engine's OpenTelemetry spans, or None when tracing is off."""
        return self._tracing

    @property
    def store_healthy(self) -> bool:
        return self._store.writer.healthy

    def _register(self, d: DAG) -> None:
        if not isinstance(d, DAG):
            raise DAGError(f"expected a DAG built with @dag, got {d!r}")
        if d.dag_id in self._dags and self._dags[d.dag_id] is not d:
            raise DAGError(f"two different DAGs are named {d.dag_id!r}")
        check_pools(d, self.config.pools)
        from sensors.sources import subscription_of

        for index, trig in enumerate(d.triggers):
            subscription_of(trig, dag_id=d.dag_id, index=index)  # raises TriggerError if unknown
        self._dags[d.dag_id] = d

    # -- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise PodiumError("an Engine can be entered only once")
        self._started = True
        export(self._metrics_registry, self._collector)  # MetricsError: the registry is taken
        try:
            await self._store.__aenter__()
        except BaseException:
            unexport(self._metrics_registry, self._collector)
            raise
        try:
            await self._prepare()
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            self._ingest.close()
            if self._log_handler is not None:
                uninstall_log_handler(self._log_handler)
            try:
                await self._store.__aexit__(None, None, None)
            finally:
                unexport(self._metrics_registry, self._collector)
            raise
        try:
            await self._start_jobs(self._tg)
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def _prepare(self) -> None:
        """Register the DAGs and their limits in the opened store; open the bus."""
        writer = self._store.writer
        self._recorder.open(writer)
        dispatcher = self._dispatcher
        now = self.clock.now()
        for d in self._dags.values():
            for node in d.tasks.values():
                if node.options.concurrency is not None:
                    key = ("task", d.dag_id, node.task_id)
                    dispatcher.set_capacity(key, node.options.concurrency)
            dispatcher.set_capacity(("dag", d.dag_id), task_capacity(d))
            writer.execute(
                q.UPSERT_DAG,
                (d.dag_id, serialization.dumps_for_display(d.describe()), d.source_file, now),
            )
        self._recorder.declare_assets(declared_assets(self._dags), now)  # issue 12
        await self._requests.prepare()
        paused = await self._store.paused_dags() & set(self._dags)
        self._book.paused.update(paused)
        for dag_id in paused:
            dispatcher.set_capacity(("dag", dag_id), 0)
        self._ingest.open()
        if self.config.capture_logs:
            self._log_handler = TaskLogHandler(writer, self.config.max_log_bytes)
            install_log_handler(self._log_handler)
            self._dispatcher.log_handler = self._log_handler

    async def _start_jobs(self, tg: anyio.abc.TaskGroup) -> None:
        self._store.writer.on_commit = self.metrics.observe_commit
        await tg.start(self._runners.serve)  # reaps a killed engine's workers, opens the pools
        await tg.start(self.alerting.run)  # seeds baselines before runs are adopted
        tg.start_soon(self.metrics.loop_lag.run)
        address = self.config.http_address
        if address is not None:
            module, _, name = HTTP_SERVER.partition(":")
            serve_http = getattr(importlib.import_module(module), name)
            self.http_port = await tg.start(
                partial(
                    serve_http, self, address[0], address[1], self.config.http_token,
                    public_read=self.config.http_public_read,
                    private_probes=self.config.http_private_probes,
                )
            )  # fmt: skip
        unfinished = await self._store.unfinished_run_rows()
        for row in unfinished:
            await self._book.adopt(row, recovering=True)
        await self._recorder.flush()
        if unfinished:
            log.info("resumed %d unfinished run(s) from %s", len(self._book), self.config.db)
        tg.start_soon(self._dispatcher.serve)
        tg.start_soon(self._driver.retries.serve)
        tg.start_soon(self._requests.serve)
        if self._tracing is None:
            tg.start_soon(self._ingest.serve)
        else:  # runs from events continue the event's trace, never the engine's ambient span
            tg.start_soon(self._tracing.detached, self._ingest.serve)
        tg.start_soon(self._assets.serve)  # issue 12: asset-triggered runs
        if self._lineage_out is not None:  # issue 12: OpenLineage events, in the background
            tg.start_soon(self._lineage_out.serve)
        self._assets.wake_all()  # events queued before a stop or a kill are evaluated again
        self._dispatcher.wake()
        self._sensors.start(tg)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._shutdown(exc)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._tg is not None, "the engine is not running"
        self._tg.start_soon(fn, *args)

    def _crash(self, exc: BaseException) -> None:
        """An engine bug escaped a task try: stop the engine rather than run on in a bad state."""
        if self._crashed is None and self._tg is not None:
            self._crashed = exc
            self._tg.cancel_scope.cancel()

    def stop_now(self) -> None:
        """Cut the shutdown grace short: cancel in-flight tasks at once (they run again next start).

        For a second Ctrl-C; call it while the engine is stopping."""
        self._set_stopping()
        self._dispatcher.cancel_in_flight(list(self._book), "shutdown")

    def _set_stopping(self) -> None:
        self._stopping = True
        self._book.stopping = self._driver.stopping = self._requests.stopping = True

    async def _shutdown(self, exc: BaseException | None) -> bool | None:
        assert self._tg is not None
        self._set_stopping()
        dispatcher = self._dispatcher
        suppress: bool | None = None
        try:
            with anyio.CancelScope(shield=True):
                grace = self.config.shutdown_grace
                if not await dispatcher.wait_idle(grace):
                    log.warning(
                        "stopping: cancelling %d task(s) still running after %.1fs grace",
                        dispatcher.in_flight,
                        grace,
                    )
                    dispatcher.cancel_in_flight(list(self._book), "shutdown")
                    await dispatcher.wait_idle(5)
                dispatcher.stopping = True
                with anyio.move_on_after(5):
                    await self.alerting.flush()  # deliver the last failures' alerts
                if self._lineage_out is not None:  # issue 12: the last OpenLineage events
                    await self._lineage_out.drain()
                self._tg.cancel_scope.cancel()
                await dispatcher.cancel_and_wait(timeout=5)
        finally:
            try:
                suppress = await self._tg.__aexit__(
                    type(exc) if exc else None, exc, exc.__traceback__ if exc else None
                )
                if self._crashed is not None:
                    raise PodiumError(
                        "the engine stopped after an internal error"
                    ) from self._crashed
            finally:
                self._ingest.close()
                if self._tracing is not None:
                    self._tracing.close()
                if self._lineage_out is not None:
                    await self._lineage_out.close()
                if self._log_handler is not None:
                    uninstall_log_handler(self._log_handler)
                try:
                    await self._store.__aexit__(None, None, None)
                finally:
                    unexport(self._metrics_registry, self._collector)
        return suppress

    def _check_open(self) -> None:
        if not self._started or self._tg is None:
            raise PodiumError("the engine is not running; use `async with Engine(...)`")
        if self._stopping:
            raise EngineStoppedError("the engine is stopping")

    # -- runs ---------------------------------------------------------------------------------------

    async def trigger(
        self,
        dag_id: str,
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        logical_date: float | None = None,
        event: Any = None,
        trigger: str = "api",
        strict: bool = True,
    ) -> Run:
        """Create a run of ``dag_id`` and return it once it is committed.

        The returned ``Run`` is the run as created (``queued`` or ``running``, without task
        instances); ``await run.wait()`` returns it finished, with its tasks.

        With ``key``, triggering is idempotent: if a run of this DAG with that key exists (in any
        state), it is returned and nothing starts. ``strict=False`` keeps params the DAG does not
        declare (used for event-triggered runs).
        """
        self._check_open()
        book = self._book
        run_params = book.dag(dag_id).validate_params(params, strict=strict)
        if key is not None:
            existing = await self._existing_run(dag_id, key)
            if existing is not None:
                return existing
        run = book.create(
            dag_id, run_params, key=key, logical_date=logical_date, event=event, trigger=trigger
        )
        try:
            await self._recorder.flush()
        except BaseException:
            book.forget([run])
            raise
        if key is not None:
            row = await self._store.find_run(dag_id, key)
            if row is not None and row.run_id != run.run_id:  # another process stored it first
                book.forget([run])
                return run_from_row(row, {}, self)
        book.activate(run)
        return run.snapshot(self)

    async def _existing_run(self, dag_id: str, key: str) -> Run | None:
        active = self._book.by_key(dag_id, key)
        if active is not None:
            return active.snapshot(self)
        row = await self._store.find_run(dag_id, key)
        if row is None:
            active = self._book.by_key(dag_id, key)  # may have been created while we read
            return active.snapshot(self) if active is not None else None
        return run_from_row(row, {}, self)

    async def runs(
        self,
        dag_id: str | None = None,
        state: str | RunState | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        since: float | None = None,
        until: float | None = None,
        trigger: str | None = None,
        key_prefix: str | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one DAG, in one state, created within
        [``since``, ``until``] (epoch seconds), by one trigger kind, or with a run key prefix
        (``"kafka:orders:"``: the runs of one source)."""
        state_value = RunState(state).value if state is not None else None
        return await self._store.list_runs(
            dag_id=dag_id, state=state_value, limit=limit, offset=offset, since=since,
            until=until, trigger=trigger, key_prefix=key_prefix, source=self,
        )  # fmt: skip

    async def get_run(self, run_id: str) -> Run:
        """The run with its task instances, as committed."""
        return await self._store.get_run(run_id, source=self)

    async def wait_run(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is finished (``TimeoutError`` after ``timeout`` seconds)."""
        with anyio.fail_after(timeout):
            while True:
                run = self._book.get(run_id)
                if run is not None:
                    await run.done.wait()
                    return await self.get_run(run_id)
                snapshot = await self.get_run(run_id)
                if snapshot.finished:
                    return snapshot
                await anyio.sleep(self.config.poll_interval)

    async def events(self, outcome: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded events, newest first: one row per (event, DAG) with its outcome."""
        rows = await self._store.events(outcome=outcome, limit=limit)
        return [{k: v for k, v in row._asdict().items() if k != "payload"} for row in rows]

    async def task_logs(
        self, run_id: str, task_id: str, try_number: int | None = None
    ) -> list[dict[str, Any]]:
        """A task's captured log lines (one try, or all tries), oldest first."""
        rows = await self._store.task_logs(run_id, task_id, try_number)
        return [
            {"try_number": r.try_number, "line": r.line_no, "ts": r.ts, "level": r.level,
             "message": r.message}
            for r in rows
        ]  # fmt: skip

    # -- assets and lineage (issue 12; ``lineage.Lineage``, ``asset_triggers.AssetTriggers``) -------

    async def assets(
        self, *, after: str = "", limit: int = 100, matching: str | None = None
    ) -> list[dict[str, Any]]:
        """Known assets by URI (paged by key: those after ``after``; ``matching``: whose URI or
        name contains it), each with its latest event, producers, consumers, the DAGs it
        triggers, freshness, and its latest schema with the changes since the one before."""
        return await self._lineage.assets(after=after, limit=limit, matching=matching)

    async def asset(self, uri: str) -> dict[str, Any] | None:
        """One asset as ``assets`` lists it (plus the DAGs it started as a source), or None."""
        return await self._lineage.asset(uri)

    async def lineage(
        self, *, uri: str | None = None, dag_id: str | None = None, task_id: str | None = None
    ) -> dict[str, Any]:
        """One node of the lineage graph (an asset, a task, or an asset-triggered DAG) and its
        neighbours one hop each way (``lineage.Lineage.hop``)."""
        return await self._lineage.hop(uri=uri, dag_id=dag_id, task_id=task_id)

    async def asset_events(
        self, uri: str, *, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Events of one asset, newest first; the next page: ``before=`` the last one's ``seq``."""
        return await self._lineage.asset_events(uri, limit=limit, before=before)

    async def run_lineage(self, run_id: str) -> dict[str, Any]:
        """What a run read (``inputs``) and wrote (``outputs``)."""
        return await self._lineage.run_lineage(run_id)

    async def ingest_lineage(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Store an OpenLineage RunEvent from another tool (``POST /api/v1/lineage``): its job and
        run, its inputs as the run's inputs, and a COMPLETE event's outputs as asset events (which
        trigger ``OnAssets`` DAGs like any other). ``LineageEventError`` if it is not valid."""
        self._check_open()
        return await self._lineage_in.accept(event)

    @property
    def lineage_emitter(self) -> LineageEmitter | None:
        """The OpenLineage emitter (its ``counts``, its ``client``), or None when it is off."""
        return self._lineage_out

    async def asset_condition(self, dag_id: str) -> dict[str, Any]:
        """Why an asset-triggered DAG has not run (yet): which parts of its condition are met."""
        return await self._assets.condition(dag_id)

    def add_observer(self, observer: Observer) -> None:
        """Hear about every recorded task and run change (see ``engine.observe``)."""
        self._recorder.add_observer(observer)

    def metrics_text(self) -> str:
        """``generate_latest(engine.metrics_registry)`` as text: the engine's metrics while it runs,
        with whatever else that registry holds (served at ``/metrics``)."""
        return scrape(self._metrics_registry)

    # -- operator actions (``Operations``) ----------------------------------------------------------

    async def cancel(
        self, run_id: str, reason: str = "cancelled by user", *, actor: str = "api"
    ) -> Run:
        """Cancel a run: waiting tasks become ``cancelled``; running ones are cancelled through their
        cancel scope (their cleanup code runs) and recorded with ``reason``."""
        return await self._ops.cancel(run_id, reason, actor=actor)

    async def cancel_task(
        self, run_id: str, task_id: str, *, reason: str = "cancelled by user", actor: str = "api"
    ) -> Run:
        """Cancel one task of a run; downstream tasks follow their trigger rules."""
        return await self._ops.cancel_task(run_id, task_id, reason=reason, actor=actor)

    async def resume(self, run_id: str, *, actor: str = "api") -> Run:
        """Continue a run paused by a failure (``on_failure="pause"``)."""
        return await self._ops.resume(run_id, actor=actor)

    async def rerun(
        self,
        run_id: str,
        tasks: Sequence[str] | None = None,
        *,
        failed_only: bool = False,
        downstream: bool = False,
        actor: str = "api",
    ) -> Run:
        """Run some task instances of a finished run again, in the same run (see ``Operations``)."""
        return await self._ops.rerun(
            run_id, tasks, failed_only=failed_only, downstream=downstream, actor=actor
        )

    async def backfill(
        self,
        dag_id: str,
        start: str | date | datetime,
        end: str | date | datetime,
        *,
        missing_only: bool = False,
        max_active: int | None = None,
        actor: str = "api",
        on_progress: Callable[[int, int], None] | None = None,
    ) -> BackfillResult:
        """One run per schedule slot of the DAG's timer in [``start``, ``end``] (see ``Operations``)."""
        return await self._ops.backfill(
            dag_id, start, end, missing_only=missing_only, max_active=max_active, actor=actor,
            on_progress=on_progress,
        )  # fmt: skip

    async def pause_dag(self, dag_id: str, *, actor: str = "api") -> None:
        """Stop starting runs and tasks of ``dag_id``; its events are still stored as queued runs."""
        await self._ops.pause_dag(dag_id, actor=actor)

    async def unpause_dag(
        self, dag_id: str, *, skip_queued: bool = False, actor: str = "api"
    ) -> list[str]:
        """Start the DAG's queued runs again, or cancel them with ``skip_queued``."""
        return await self._ops.unpause_dag(dag_id, skip_queued=skip_queued, actor=actor)

    async def operations(
        self, *, run_id: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Recorded operator actions, newest first (who, when, what)."""
        return await self._ops.history(run_id=run_id, dag_id=dag_id, limit=limit)

    @property
    def ops(self) -> Operations:
        """The operator actions (also the targets of ``requests.OPERATIONS``)."""
        return self._ops

    # -- run completion -----------------------------------------------------------------------------

    async def _after_run(self, run: ActiveRun) -> None:
        """A run finished: lift backpressure, trigger the DAGs that follow it, run its callbacks."""
        self._ingest.work_finished()
        if self._tracing is not None:
            with self._tracing.upstream(run):  # the runs it triggers are children of its span
                if not self._stopping:
                    await self._ingest.deliver_completion(run)
        elif not self._stopping:
            await self._ingest.deliver_completion(run)
        callback = run.dag.on_success if run.state is RunState.SUCCESS else run.dag.on_failure
        if callable(callback) and run.state is not RunState.CANCELLED:
            await call_callback(callback, await self.get_run(run.run_id), f"DAG {run.dag.dag_id!r}")


def _make_tracing(recorder: Recorder, provider: TracerProvider | None) -> Tracing:
    try:
        from .tracing import Tracing
    except ImportError as exc:
        raise PodiumError(
            f"tracing needs OpenTelemetry: pip install 'podium[otel]' ({exc})"
        ) from None
    return Tracing(recorder, provider)


def _make_lineage_emitter(
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


__all__ = ["Engine", "check_pools"]
