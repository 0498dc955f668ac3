"""The ``Engine``: wires the store, the run state machine, the ready queue and the task executor.

Lifecycle (``async with Engine(...)``): enter opens the state file (taking its owner lock), registers
the DAGs, resumes every unfinished run, and starts the background jobs in one task group: the store
writer, the dispatcher, the retry timer and the poller that adopts runs queued by other processes
(``podium trigger``). Exit stops intake, lets in-flight tasks finish within ``shutdown_grace``,
cancels the rest (recorded so they run again on the next start) and commits everything.

The engine's behaviour is split over mixins, one job each: ``TaskRunner`` (``runner.py``: dispatch,
tries, retries, callbacks), ``RunAdoption`` (``adoption.py``: runs and operations from the state
file, restart recovery) and ``RecoveryOps`` (``recovery.py``: operator actions). This module keeps
the lifecycle, the public API, run creation, admission and completion.

Durability rules the engine keeps:
- a run exists once its row is committed; ``trigger`` returns only after that;
- a try starts only after its ``running`` state (and so its try number) is committed, and only after
  the results of its upstream tasks are committed, so a crash never re-runs a committed success.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from sensors.base import Event, EventBatch, EventSource

from . import serialization
from .adoption import RunAdoption
from .alerts import DEFAULT_ON, DEFAULT_SLOWNESS, Alerting, AlertKind, Notifier, SLAResolver
from .clock import Clock, SystemClock
from .dag import DAG
from .errors import DAGError, DAGNotFoundError, EngineStoppedError, ParamError, PodiumError
from .ingest import EventIngest
from .limits import ReadyQueue
from .logs import DEFAULT_MAX_LOG_BYTES, TaskLogHandler
from .logs import install as install_log_handler
from .logs import uninstall as uninstall_log_handler
from .metrics import Metrics
from .models import Run
from .observe import Observer
from .recovery import BACKFILL_PRIORITY, UNLIMITED, RecoveryOps
from .router import Subscription
from .run_state import ActiveRun, TaskRecord, graph_spec_of
from .runner import TaskRunner, call_callback
from .scheduler import RunProgress
from .slowness import SLA, SlownessPolicy
from .states import RunState, TaskState
from .store import Durability, Store, run_from_row
from .store import queries as q
from .taskset import TaskSet

log = logging.getLogger("podium.engine")


class Engine(TaskRunner, RunAdoption, RecoveryOps):
    """An orchestration engine on the caller's event loop.

    ``db``: path of the SQLite state file. ``dags``: the DAGs it serves. ``max_tasks``: live tasks at most,
    across all runs. ``pools``: named slot counts (``{"db": 4}``) that tasks join with ``pool=``.
    ``max_threads``: worker threads for sync tasks. ``durability``: ``"normal"`` or ``"full"`` (fsync per
    commit). ``max_result_bytes``: cap on a stored result. ``shutdown_grace``: seconds in-flight tasks get
    to finish when the engine stops. ``poll_interval``: how often runs queued by other processes are
    picked up. ``sensors``: start the DAGs' event sources (Kafka, S3, timers); off, runs start only
    by ``trigger``. ``high_water`` / ``low_water``: unfinished runs above which sensors stop pulling,
    and below which they resume. ``bus_size``: event batches the bus holds before publishers wait.
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
        http: str | None = None,
        http_token: str | None = None,
    ) -> None:
        if max_tasks < 1:
            raise PodiumError(f"max_tasks must be >= 1, got {max_tasks}")
        if max_threads < 1:
            raise PodiumError(f"max_threads must be >= 1, got {max_threads}")
        self.db = os.fspath(db)
        self.max_tasks = max_tasks
        self.pools = dict(pools or {})
        for name, slots in self.pools.items():
            if not isinstance(slots, int) or slots < 1:
                raise PodiumError(f"pool {name!r} needs an int >= 1 slots, got {slots!r}")
        self.max_threads = max_threads
        self.max_result_bytes = max_result_bytes
        self.shutdown_grace = shutdown_grace
        self.poll_interval = poll_interval
        self.clock: Clock = clock or SystemClock()
        self._store = Store(self.db, owner=True, durability=durability)
        self._dags: dict[str, DAG] = {}
        for d in dags:
            self._register(d)
        from sensors.sources import check_shared_consumers

        check_shared_consumers([t for d in self._dags.values() for t in d.triggers])

        self._ready = ReadyQueue(max_tasks, {("pool", n): s for n, s in self.pools.items()})
        self._active: dict[str, ActiveRun] = {}
        self._by_key: dict[tuple[str, str], ActiveRun] = {}
        self._waiting_runs: dict[str, deque[ActiveRun]] = {}
        self._running_runs: dict[str, int] = {}
        self._retry_heap: list[tuple[float, int, str, str]] = []
        self._retry_seq = 0
        self._last_seq = 0
        self._in_flight = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._thread_limiter: anyio.CapacityLimiter | None = None
        self._dispatch_wakeup = anyio.Event()
        self._retry_wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._stopping = False
        self._started = False
        self.sensors_enabled = sensors
        self._ingest = EventIngest(
            self,
            bus_size=bus_size,
            high_water=high_water,
            low_water=high_water // 2 if low_water is None else low_water,
        )
        self._sources: dict[str, EventSource] = {}
        self.capture_logs = capture_logs
        self.max_log_bytes = max_log_bytes
        self._log_handler: TaskLogHandler | None = None
        self._observers: list[Observer] = []
        self._paused: set[str] = set()
        self._tries = TaskSet(self._crash)
        self._crashed: BaseException | None = None
        self.alerting = Alerting(
            self,
            notifiers,
            on=alert_on,
            base_url=base_url,
            slowness=slowness,
            slowness_overrides=slowness_overrides,
            sla=sla,
        )
        self.metrics = Metrics(loop_lag_threshold=loop_lag_threshold, alerting=self.alerting)
        self._observers += [self.metrics, self.alerting]
        self.http = _parse_http(http)
        self.http_token = http_token
        self.http_port: int | None = None
        self._after_dag: dict[str, list[Subscription]] = {}

    # -- registration -------------------------------------------------------------------------------

    def _register(self, d: DAG) -> None:
        if not isinstance(d, DAG):
            raise DAGError(f"expected a DAG built with @dag, got {d!r}")
        if d.dag_id in self._dags and self._dags[d.dag_id] is not d:
            raise DAGError(f"two different DAGs are named {d.dag_id!r}")
        check_pools(d, self.pools)
        from sensors.sources import subscription_of

        for index, trig in enumerate(d.triggers):
            subscription_of(trig, dag_id=d.dag_id, index=index)  # raises TriggerError if unknown
        self._dags[d.dag_id] = d

    @property
    def dags(self) -> dict[str, DAG]:
        return dict(self._dags)

    @property
    def store(self) -> Store:
        return self._store

    # -- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise PodiumError("an Engine can be entered only once")
        self._started = True
        await self._store.__aenter__()
        try:
            self._thread_limiter = anyio.CapacityLimiter(self.max_threads)
            for d in self._dags.values():
                for node in d.tasks.values():
                    if node.options.concurrency is not None:
                        key = ("task", d.dag_id, node.task_id)
                        self._ready.set_capacity(key, node.options.concurrency)
                self._ready.set_capacity(
                    ("dag", d.dag_id),
                    d.max_active_tasks if d.max_active_tasks is not None else UNLIMITED,
                )
                self._store.writer.execute(*_dag_upsert(d, self.clock.now()))
            self._last_seq = await self._store.max_seq()
            self._store.writer.execute(q.ABANDON_REQUESTS, ())
            self._paused = await self._store.paused_dags() & set(self._dags)
            for dag_id in self._paused:
                self._ready.set_capacity(("dag", dag_id), 0)
            self._ingest.open()
            if self.capture_logs:
                self._log_handler = TaskLogHandler(self._store.writer, self.max_log_bytes)
                install_log_handler(self._log_handler)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            self._ingest.close()
            if self._log_handler is not None:
                uninstall_log_handler(self._log_handler)
            await self._store.__aexit__(None, None, None)
            raise
        try:
            self._store.writer.on_commit = self.metrics.observe_commit
            await self._tg.start(self.alerting.run)  # seeds baselines before runs are adopted
            self._tg.start_soon(self.metrics.loop_lag.run)
            if self.http is not None:
                from .web import serve as serve_http

                self.http_port = await self._tg.start(
                    partial(serve_http, self, self.http[0], self.http[1], self.http_token)
                )
            for row in await self._store.unfinished_run_rows():
                await self._adopt(row, recovering=True)
            await self._store.writer.flush()
            self._tg.start_soon(self._dispatch_loop)
            self._tg.start_soon(self._retry_loop)
            self._tg.start_soon(self._poll_loop)
            self._tg.start_soon(self._ingest.serve)
            self._wake_dispatcher()
            self._start_sources()
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._shutdown(exc)

    def _crash(self, exc: BaseException) -> None:
        """An engine bug escaped a task try: stop the engine rather than run on in a bad state."""
        if self._crashed is None and self._tg is not None:
            self._crashed = exc
            self._tg.cancel_scope.cancel()

    def stop_now(self) -> None:
        """Cut the shutdown grace short: cancel in-flight tasks at once (they run again next start).

        For a second Ctrl-C; call it while the engine is stopping."""
        self._stopping = True
        self._cancel_in_flight("shutdown")

    def _cancel_in_flight(self, reason: str) -> int:
        cancelled = 0
        for run in self._active.values():
            for rec in run.tasks.values():
                if rec.scope is not None and rec.cancel_reason is None:
                    rec.cancel_reason = reason
                    rec.scope.cancel()
                    cancelled += 1
        return cancelled

    async def _shutdown(self, exc: BaseException | None) -> bool | None:
        assert self._tg is not None
        self._stopping = True
        suppress: bool | None = None
        try:
            with anyio.CancelScope(shield=True):
                if self._in_flight:
                    with anyio.move_on_after(self.shutdown_grace):
                        await self._idle.wait()
                if self._in_flight:
                    log.warning(
                        "stopping: cancelling %d task(s) still running after %.1fs grace",
                        self._in_flight,
                        self.shutdown_grace,
                    )
                    self._cancel_in_flight("shutdown")
                    with anyio.move_on_after(5):
                        await self._idle.wait()
                with anyio.move_on_after(5):
                    await self.alerting.flush()  # deliver the last failures' alerts
                self._tg.cancel_scope.cancel()
                await self._tries.cancel_and_wait(timeout=5)
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
                if self._log_handler is not None:
                    uninstall_log_handler(self._log_handler)
                await self._store.__aexit__(None, None, None)
        return suppress

    # -- public API ---------------------------------------------------------------------------------

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
        dag = self._dag(dag_id)
        run_params = dag.validate_params(params, strict=strict)
        if key is not None:
            existing = await self._existing_run(dag_id, key)
            if existing is not None:
                return existing
        run = self.new_run(
            dag_id, run_params, key=key, logical_date=logical_date, event=event, trigger=trigger
        )
        run_id = run.run_id
        try:
            await self._store.writer.flush()
        except BaseException:
            self.forget_runs([run])
            raise
        if key is not None:
            row = await self._store.find_run(dag_id, key)
            if row is not None and row[1] != run_id:  # another process stored this key first
                self.forget_runs([run])
                return run_from_row(row, {}, self)
        self.activate(run)
        return run.snapshot(self)

    # -- run creation (shared by trigger and the event router) ----------------------------------------

    def new_run(
        self,
        dag_id: str,
        params: dict[str, Any],
        *,
        key: str | None,
        logical_date: float | None,
        event: Any,
        trigger: str,
    ) -> ActiveRun:
        """Record a new run (committed by the next flush) and reserve its key; not started yet."""
        dag = self._dag(dag_id)
        try:
            params_json = serialization.dumps(params)
        except TypeError as exc:
            raise ParamError(f"DAG {dag_id!r}: params are not JSON-serializable: {exc}") from None
        event_json = serialization.dumps(event) if event is not None else None
        now = self.clock.now()
        run_id = _new_run_id(now)
        run = ActiveRun(
            dag=dag,
            run_id=run_id,
            key=key if key is not None else f"manual:{run_id}",
            params=params,
            logical_date=logical_date if logical_date is not None else now,
            trigger=trigger,
            event=event,
            created_at=now,
        )
        run.progress = RunProgress(graph_spec_of(dag))
        run.tasks = {tid: TaskRecord(node) for tid, node in dag.tasks.items()}
        self._by_key[(dag_id, run.key)] = run
        self._store.writer.insert_run(
            (
                run_id,
                dag_id,
                run.key,
                RunState.QUEUED.value,
                params_json,
                run.logical_date,
                trigger,
                event_json,
                now,
            ),
            dag.order,
        )
        return run

    def run_id_for_key(self, dag_id: str, key: str) -> str | None:
        run = self._by_key.get((dag_id, key))
        return run.run_id if run is not None else None

    def forget_runs(self, runs: Iterable[ActiveRun]) -> None:
        for run in runs:
            if self._by_key.get((run.dag.dag_id, run.key)) is run:
                del self._by_key[(run.dag.dag_id, run.key)]

    def activate(self, run: ActiveRun) -> None:
        """Serve a committed new run: start it, or queue it behind ``max_active_runs``."""
        self._active[run.run_id] = run
        self._admit(run)

    @property
    def sink(self) -> EventIngest:
        """The event bus, as an ``EventSink``: custom sensors publish ``EventBatch`` objects here."""
        return self._ingest

    async def events(self, outcome: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded events, newest first: one row per (event, DAG) with its outcome."""
        rows = await self._store.events(outcome=outcome, limit=limit)
        names = ("event_id", "dag_id", "source", "received_at", "outcome", "run_id", "error")
        return [dict(zip(names, row[:7], strict=True)) for row in rows]

    async def task_logs(
        self, run_id: str, task_id: str, try_number: int | None = None
    ) -> list[dict[str, Any]]:
        """A task's captured log lines (one try, or all tries), oldest first."""
        rows = await self._store.task_logs(run_id, task_id, try_number)
        names = ("try_number", "line", "ts", "level", "message")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def metrics_text(self) -> str:
        """Prometheus text exposition of the engine's metrics (served at ``/metrics``)."""
        return self.metrics.render(self)

    @property
    def pending_runs(self) -> int:
        """Unfinished runs this engine serves (the measure backpressure acts on)."""
        return len(self._active)

    @property
    def store_healthy(self) -> bool:
        return self._store.writer.healthy

    # -- event sources ----------------------------------------------------------------------------------

    def _start_sources(self) -> None:
        from sensors.sources import source_for, subscription_of

        assert self._tg is not None
        shared: dict[str, list[tuple[DAG, int, Any]]] = {}
        for d in self._dags.values():
            for index, trig in enumerate(d.triggers):
                subscription = subscription_of(trig, dag_id=d.dag_id, index=index)
                self._ingest.subscribe(subscription, Subscription(d, trig))
                shared.setdefault(subscription, []).append((d, index, trig))
        if not self.sensors_enabled:
            return
        for subscription, triggers in shared.items():
            d, index, first = triggers[0]
            source = source_for(
                first,
                dag_id=d.dag_id,
                index=index,
                clock=self.clock,
                sharing=[t for _, _, t in triggers[1:]],
            )
            if source is not None:
                self._sources[subscription] = source
                self._tg.start_soon(self._supervise_source, source)

    async def _supervise_source(self, source: EventSource) -> None:
        """Run a sensor; if it fails, log why and start it again after a pause."""
        delay = 0.5
        while not self._stopping:
            try:
                await source.run(self._ingest)
                return
            except Exception:
                log.exception("sensor %s failed; restarting in %.1fs", source.subscription, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _announce_completion(self, run: ActiveRun) -> None:
        """Deliver a finished run to the DAGs that trigger on it (``AfterDag``)."""
        subscription = f"dag:{run.dag.dag_id}"
        subs = self._ingest.subscriptions.get(subscription)
        if not subs or not any(run.state.value in s.trigger.states for s in subs):
            return
        event = Event(
            source="dag",
            event_id=f"dag:{run.dag.dag_id}:{run.run_id}",
            payload={
                "dag_id": run.dag.dag_id,
                "run_id": run.run_id,
                "state": run.state.value,
                "params": run.params,
            },
            logical_date=run.logical_date,
        )
        matching = [s for s in subs if run.state.value in s.trigger.states]
        await self._ingest.ingest(EventBatch(subscription, [event]), matching)

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
            run = self._active.get(run_id)
            if run is not None:
                await run.done.wait()
                return await self.get_run(run_id)
            while True:
                snapshot = await self.get_run(run_id)
                if snapshot.finished:
                    return snapshot
                run = self._active.get(run_id)
                if run is not None:
                    await run.done.wait()
                    return await self.get_run(run_id)
                await anyio.sleep(self.poll_interval)

    async def cancel(
        self, run_id: str, reason: str = "cancelled by user", *, actor: str = "api"
    ) -> Run:
        """Cancel a run: waiting tasks become ``cancelled``; running ones are cancelled through their
        cancel scope (their cleanup code runs) and recorded with ``reason``."""
        self._check_open()
        run = self._active.get(run_id)
        if run is None:
            snapshot = await self.get_run(run_id)
            if snapshot.finished:
                return snapshot
            raise PodiumError(f"run {run_id!r} is not served by this engine")
        if not run.cancelling and not run.finishing:
            self._record_operation(actor, "cancel", run=run, details={"reason": reason})
            run.cancelling = True
            run.note = reason
            self._ready.remove(lambda payload: payload[0] is run)
            now = self.clock.now()
            for rec in run.tasks.values():
                if rec.state.finished:
                    continue
                if rec.scope is not None:
                    rec.cancel_reason = reason
                    rec.scope.cancel()
                else:
                    rec.state = TaskState.CANCELLED
                    rec.finished_at = now
                    rec.error = reason
                    self._write_task(run, rec)
            waiting = self._waiting_runs.get(run.dag.dag_id)
            if waiting is not None and run in waiting:
                waiting.remove(run)
            self._finish_cancelled(run)
        await run.done.wait()
        return await self.get_run(run_id)

    # -- helpers for the public API -----------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._started or self._tg is None:
            raise PodiumError("the engine is not running; use `async with Engine(...)`")
        if self._stopping:
            raise EngineStoppedError("the engine is stopping")

    def _dag(self, dag_id: str) -> DAG:
        try:
            return self._dags[dag_id]
        except KeyError:
            known = ", ".join(sorted(self._dags)) or "none"
            raise DAGNotFoundError(f"no DAG {dag_id!r} (known: {known})") from None

    async def _existing_run(self, dag_id: str, key: str) -> Run | None:
        active = self._by_key.get((dag_id, key))
        if active is not None:
            return active.snapshot(self)
        row = await self._store.find_run(dag_id, key)
        if row is None:
            active = self._by_key.get((dag_id, key))  # may have been created while we read
            return active.snapshot(self) if active is not None else None
        return run_from_row(row, {}, self)

    # -- runs: admission, progress and completion ----------------------------------------------------

    def _admit(self, run: ActiveRun) -> None:
        """Queue the run behind its DAG's earlier runs and start as many as the limits allow."""
        self._waiting_runs.setdefault(run.dag.dag_id, deque()).append(run)
        self._admit_waiting(run.dag.dag_id)

    def _admit_waiting(self, dag_id: str) -> None:
        waiting = self._waiting_runs.get(dag_id)
        if not waiting or dag_id in self._paused or self._stopping:
            return
        limit = self._dags[dag_id].max_active_runs
        while waiting and (limit is None or self._running_runs.get(dag_id, 0) < limit):
            run = waiting.popleft()
            self._running_runs[dag_id] = self._running_runs.get(dag_id, 0) + 1
            run.admitted = True
            run.state = RunState.RUNNING
            if run.started_at is None:
                run.started_at = self.clock.now()
            self._write_run(run)
            self._start_run(run)

    def _start_run(self, run: ActiveRun) -> None:
        ready, resolved = run.progress.start()
        self._apply(run, ready, resolved)
        self._maybe_finish(run)

    def _apply(
        self, run: ActiveRun, ready: list[str], resolved: list[tuple[str, TaskState]]
    ) -> None:
        now = self.clock.now()
        for tid, state in resolved:  # settled by trigger rules without running
            rec = run.tasks[tid]
            rec.state = state
            rec.finished_at = now
            self._write_task(run, rec)
        if not ready:
            return
        dag_id = run.dag.dag_id
        for tid in ready:
            rec = run.tasks[tid]
            rec.state = TaskState.QUEUED
            rec.queued_at = now
            self._write_task(run, rec)
            priority = rec.node.options.priority
            if run.trigger == "backfill":
                priority += BACKFILL_PRIORITY
            self._ready.push((run, rec), priority=priority, limits=rec.limit_keys(dag_id))
        self._wake_dispatcher()

    def _maybe_finish(self, run: ActiveRun, force: RunState | None = None) -> None:
        if run.finishing:
            return
        outcome = force or run.progress.outcome()
        if outcome is None:
            return
        run.finishing = True
        run.state = outcome
        run.finished_at = self.clock.now()
        if outcome is RunState.FAILED and run.note is None:
            failed = [t for t, r in run.tasks.items() if r.state is TaskState.FAILED]
            run.note = f"failed task(s): {', '.join(failed)}" if failed else None
        self._write_run(run)
        assert self._tg is not None
        self._tg.start_soon(self._complete_run, run)

    async def _complete_run(self, run: ActiveRun) -> None:
        await self._store.writer.flush()
        self._active.pop(run.run_id, None)
        self._by_key.pop((run.dag.dag_id, run.key), None)
        dag_id = run.dag.dag_id
        if run.admitted:
            self._running_runs[dag_id] -= 1
            self._admit_waiting(dag_id)
        run.done.set()
        self._ingest.work_finished()
        log.info("run %s of %s finished: %s", run.run_id, dag_id, run.state.value)
        if not self._stopping:
            await self._announce_completion(run)
        callback = run.dag.on_success if run.state is RunState.SUCCESS else run.dag.on_failure
        if callable(callback) and run.state is not RunState.CANCELLED:
            await call_callback(callback, await self.get_run(run.run_id), f"DAG {dag_id!r}")

    def _fail_run_now(self, run: ActiveRun, note: str) -> None:
        run.note = note
        self._maybe_finish(run, force=RunState.FAILED)


def _parse_http(http: str | None) -> tuple[str, int] | None:
    """``"127.0.0.1:8080"`` or ``":8080"`` (loopback) → (host, port)."""
    if http is None:
        return None
    host, _, port = http.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise PodiumError(f"http must look like HOST:PORT, got {http!r}") from None
    if not 0 <= number <= 65535:
        raise PodiumError(f"http port must be within 0..65535, got {number}")
    return (host or "127.0.0.1", number)


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


def _dag_upsert(d: DAG, now: float) -> tuple[str, tuple[Any, ...]]:
    from .store import queries

    return queries.UPSERT_DAG, (
        d.dag_id,
        serialization.dumps_for_display(d.describe()),
        d.source_file,
        now,
    )


def _new_run_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(5)


__all__ = ["Engine"]
