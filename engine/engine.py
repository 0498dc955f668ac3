"""The ``Engine``: its configuration, its lifecycle, and a thin public API over its parts.

The parts (``engine.assembly`` makes and wires them; docs/architecture.md draws them) each have one
job: the ``Recorder`` writes rows then tells the observers, the ``Dispatcher`` starts tries under
every limit, the ``RunDriver`` moves runs forward, the ``RunBook`` owns which runs exist, the
``EventIngest`` turns events into runs, ``Operations`` are the operator actions.

``async with Engine(...)`` opens the state file (taking its owner lock), registers the DAGs, resumes
every unfinished run and starts the background jobs in one task group; leaving it stops intake, lets
in-flight tries finish within ``shutdown_grace``, cancels the rest (they run again on the next start)
and commits everything. A run exists once its row is committed, and a try starts only after its
``running`` row and its upstream results are, so a crash never re-runs a committed success.
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
from .alerting import DEFAULT_SLOWNESS, SLAResolver
from .alerts import DEFAULT_ON, AlertKind
from .assembly import EngineHooks, assemble, open_parts, register_dags, start_background
from .backfill import BackfillResult
from .clock import Clock, SystemClock
from .config import EngineConfig
from .dag import DAG
from .errors import EngineStoppedError, PodiumError
from .ingest import EventIngest
from .limits import ReadyQueue
from .lineage_events import LineageOptions
from .logs import DEFAULT_MAX_LOG_BYTES, TaskLogHandler
from .logs import uninstall as uninstall_log_handler
from .models import Run
from .notifiers import Notifier
from .observe import Observer
from .operations import Operations
from .prometheus import export, scrape, unexport
from .run_driver import call_callback
from .run_state import ActiveRun
from .runners.base import Runner
from .slowness import SLA, SlownessPolicy
from .states import RunState
from .store import Durability, Store

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
        self._dags: dict[str, DAG] = register_dags(dags, config.pools)
        hooks = EngineHooks(
            crash=self._crash, spawn=self._spawn, after_run=self._after_run,
            check_open=self._check_open, stopping=lambda: self._stopping,
        )  # fmt: skip
        parts = assemble(
            config, self._dags, self.clock, self, hooks, notifiers=notifiers, alert_on=alert_on,
            base_url=base_url, slowness=slowness, slowness_overrides=slowness_overrides, sla=sla,
            metrics_registry=metrics_registry, tracing=tracing, tracer_provider=tracer_provider,
            lineage=lineage, openlineage_client=openlineage_client,
        )  # fmt: skip
        self._parts = parts  # those used here once are read from it
        self.alerting, self.metrics = parts.alerting, parts.metrics
        self._store, self._book, self._dispatcher = parts.store, parts.book, parts.dispatcher
        self._metrics_registry, self._collector = parts.registry, parts.collector
        self._tracing, self._ingest, self._ops = parts.tracing, parts.ingest, parts.ops
        self._lineage, self._lineage_out = parts.lineage, parts.lineage_out
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
        return MappingProxyType(self._parts.sensors.sources)

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
            self._log_handler = await open_parts(
                self._parts, self._dags, self.config, self.clock.now()
            )
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            await self._release()
            raise
        try:
            await self._start_jobs(self._tg)
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def _start_jobs(self, tg: anyio.abc.TaskGroup) -> None:
        self._store.writer.on_commit = self.metrics.observe_commit
        await tg.start(
            self._parts.runners.serve
        )  # reaps a killed engine's workers, opens the pools
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
        if await self._book.resume_unfinished():
            log.info("resumed %d unfinished run(s) from %s", len(self._book), self.config.db)
        start_background(self._parts, tg)

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
        self._book.stopping = self._parts.driver.stopping = self._parts.requests.stopping = True

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
                if self._tracing is not None:
                    self._tracing.close()
                if self._lineage_out is not None:
                    await self._lineage_out.close()
                await self._release()
        return suppress

    async def _release(self) -> None:
        """Close the bus, stop capturing logs, close the state file, take the metrics down."""
        self._ingest.close()
        if self._log_handler is not None:
            uninstall_log_handler(self._log_handler)
        try:
            await self._store.__aexit__(None, None, None)
        finally:
            unexport(self._metrics_registry, self._collector)

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
        return await self._book.create_committed(
            dag_id, params, key=key, logical_date=logical_date, event=event, trigger=trigger,
            strict=strict, source=self,
        )  # fmt: skip

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
        return await self._parts.lineage_in.accept(event)

    @property
    def lineage_emitter(self) -> LineageEmitter | None:
        """The OpenLineage emitter (its ``counts``, its ``client``), or None when it is off."""
        return self._lineage_out

    async def asset_condition(self, dag_id: str) -> dict[str, Any]:
        """Why an asset-triggered DAG has not run (yet): which parts of its condition are met."""
        return await self._parts.assets.condition(dag_id)

    def add_observer(self, observer: Observer) -> None:
        """Hear about every recorded task and run change (see ``engine.observe``)."""
        self._parts.recorder.add_observer(observer)

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


__all__ = ["Engine"]
