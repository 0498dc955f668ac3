"""The ``RunBook``: the runs an engine serves, and the only place a run is created, adopted,
admitted or forgotten.

- **create**: a new run (``Engine.trigger``, the event intake, a backfill) is recorded with a key
  reserved in memory; it is served once its row is committed (``activate``). The CLI, which has no
  engine, builds the same row with ``new_run_row`` and leaves it for an engine to adopt.
- **adopt**: a run found in the state file (after a restart, or queued by another process) is
  rebuilt from its rows; a try that was running when the engine died counts, and is retried if it
  has tries left.
- **admit**: runs wait behind their DAG's earlier runs (``max_active_runs``) and while the DAG is
  paused; admitted runs go to the ``RunDriver``.
- **complete**: a finished run is committed, dropped from the book, and handed to ``on_finished``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import serialization
from .clock import Clock
from .dag import DAG
from .errors import DAGNotFoundError, ParamError
from .recorder import Recorder
from .run_driver import RunDriver
from .run_state import ActiveRun, pauses_on_failure, split_instance_id
from .states import RunState, TaskState
from .store import Store, run_from_row
from .store.records import RunRow

if TYPE_CHECKING:
    from .models import Run, RunSource
    from .tracing import Tracing

log = logging.getLogger("podium.engine")

ENGINE_STOPPED = "engine stopped while running"


def new_run_id(now: float) -> str:
    """A run id that sorts by creation time: ``20261206T010203-9f8e7d6c5b``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(5)


def new_run_row(
    dag_id: str,
    params: Mapping[str, Any],
    *,
    key: str | None,
    logical_date: float | None,
    event: Any,
    trigger: str,
    now: float,
) -> tuple[str, str, tuple[Any, ...]]:
    """The ``runs`` row of a new queued run: (run_id, run key, row for ``StoreWriter.insert_run``).

    Raises ``ParamError`` if the params cannot be stored."""
    try:
        params_json = serialization.dumps(params)
    except TypeError as exc:
        raise ParamError(f"DAG {dag_id!r}: params are not JSON-serializable: {exc}") from None
    event_json = serialization.dumps(event) if event is not None else None
    run_id = new_run_id(now)
    run_key = key if key is not None else f"manual:{run_id}"
    date = logical_date if logical_date is not None else now
    row = (
        run_id, dag_id, run_key, RunState.QUEUED.value, params_json, date, trigger,
        event_json, now,
    )  # fmt: skip
    return run_id, run_key, row


class RunBook:
    def __init__(
        self,
        *,
        dags: Mapping[str, DAG],
        store: Store,
        recorder: Recorder,
        driver: RunDriver,
        clock: Clock,
        on_finished: Callable[[ActiveRun], Awaitable[None]],
    ) -> None:
        self._dags = dags
        self._store = store
        self._recorder = recorder
        self._driver = driver
        self._clock = clock
        self._on_finished = on_finished
        self._active: dict[str, ActiveRun] = {}
        self._by_key: dict[tuple[str, str], ActiveRun] = {}
        self._waiting: dict[str, deque[ActiveRun]] = {}
        self._running: dict[str, int] = {}
        self.paused: set[str] = set()
        self.stopping = False
        self.tracing: Tracing | None = None  # engine/tracing.py; None when tracing is off

    # -- lookups ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Unfinished runs served (what backpressure measures)."""
        return len(self._active)

    def __iter__(self) -> Iterator[ActiveRun]:
        return iter(list(self._active.values()))

    def get(self, run_id: str) -> ActiveRun | None:
        return self._active.get(run_id)

    def by_key(self, dag_id: str, key: str) -> ActiveRun | None:
        """The served (or just created) run with this key."""
        return self._by_key.get((dag_id, key))

    def dag(self, dag_id: str) -> DAG:
        try:
            return self._dags[dag_id]
        except KeyError:
            known = ", ".join(sorted(self._dags)) or "none"
            raise DAGNotFoundError(f"no DAG {dag_id!r} (known: {known})") from None

    # -- create -------------------------------------------------------------------------------------

    def create(
        self,
        dag_id: str,
        params: dict[str, Any],
        *,
        key: str | None,
        logical_date: float | None,
        event: Any,
        trigger: str,
    ) -> ActiveRun:
        """Record a new run (committed by the next flush) and reserve its key; call ``activate``
        once it is committed, or ``forget`` if the commit failed."""
        dag = self.dag(dag_id)
        now = self._clock.now()
        run_id, run_key, row = new_run_row(
            dag_id, params, key=key, logical_date=logical_date, event=event, trigger=trigger,
            now=now,
        )  # fmt: skip
        run = ActiveRun(
            dag=dag,
            run_id=run_id,
            key=run_key,
            params=params,
            logical_date=row[5],
            trigger=trigger,
            event=event,
            created_at=now,
        )
        self._by_key[(dag_id, run_key)] = run
        self._recorder.new_run(row, dag.order)
        if self.tracing is not None:  # tracing: the run's span, its context stored with the row
            self.tracing.run_created(run)
        return run

    def forget(self, runs: Sequence[ActiveRun]) -> None:
        """Release the keys of created runs whose rows were not committed."""
        for run in runs:
            if self._by_key.get((run.dag.dag_id, run.key)) is run:
                del self._by_key[(run.dag.dag_id, run.key)]
            if self.tracing is not None:  # tracing: drop the span of a run that does not exist
                self.tracing.run_forgotten(run)

    def activate(self, run: ActiveRun) -> None:
        """Serve a committed new run: start it, or queue it behind ``max_active_runs``."""
        self._active[run.run_id] = run
        self._admit(run)

    # -- adopt --------------------------------------------------------------------------------------

    async def create_committed(
        self,
        dag_id: str,
        params: Mapping[str, Any] | None,
        *,
        key: str | None,
        logical_date: float | None,
        event: Any,
        trigger: str,
        strict: bool,
        source: RunSource,
    ) -> Run:
        """A new run of ``dag_id``, returned once its row is committed (``Engine.trigger``). With
        ``key`` it is idempotent: the run of that key, active or stored, if there is one."""
        run_params = self.dag(dag_id).validate_params(params, strict=strict)
        if key is not None:
            existing = await self._existing(dag_id, key, source)
            if existing is not None:
                return existing
        run = self.create(
            dag_id, run_params, key=key, logical_date=logical_date, event=event, trigger=trigger
        )
        try:
            await self._recorder.flush()
        except BaseException:
            self.forget([run])
            raise
        if key is not None:
            row = await self._store.find_run(dag_id, key)
            if row is not None and row.run_id != run.run_id:  # another process stored it first
                self.forget([run])
                return run_from_row(row, {}, source)
        self.activate(run)
        return run.snapshot(source)

    async def _existing(self, dag_id: str, key: str, source: RunSource) -> Run | None:
        active = self.by_key(dag_id, key)
        if active is not None:
            return active.snapshot(source)
        row = await self._store.find_run(dag_id, key)
        if row is None:
            active = self.by_key(dag_id, key)  # may have been created while we read
            return active.snapshot(source) if active is not None else None
        return run_from_row(row, {}, source)

    async def resume_unfinished(self) -> int:
        """At start: adopt every unfinished run of the state file; how many there were."""
        unfinished = await self._store.unfinished_run_rows()
        for row in unfinished:
            await self.adopt(row, recovering=True)
        await self._recorder.flush()
        return len(unfinished)

    async def adopt(self, row: RunRow, *, recovering: bool) -> None:
        """Serve a run found in the state file (unfinished after a restart, or queued elsewhere)."""
        if row.run_id in self._active or (row.dag_id, row.run_key) in self._by_key:
            return  # already served (or created here and about to be activated)
        dag = self._dags.get(row.dag_id)
        if dag is None:
            log.warning(
                "run %s belongs to DAG %r, which this engine does not serve; left %s",
                row.run_id, row.dag_id, row.state,
            )  # fmt: skip
            return
        snapshot = run_from_row(row, {}, None)
        run = ActiveRun(
            dag=dag,
            run_id=row.run_id,
            key=row.run_key,
            params=snapshot.params,
            logical_date=row.logical_date,
            trigger=row.trigger,
            event=snapshot.event,
            created_at=row.created_at,
            started_at=row.started_at,
            state=RunState(row.state),
        )
        self._by_key[(dag.dag_id, run.key)] = run
        self._active[run.run_id] = run
        self._recorder.ensure_tasks(run.run_id, dag.order)
        if self.tracing is not None:  # tracing: a new span for the run, under its stored one
            self.tracing.run_adopted(run, row.trace_context)
        try:
            run.params = dag.validate_params(run.params, strict=run.trigger in ("api", "cli"))
        except ParamError as exc:
            self._driver.fail_run(run, f"invalid params: {exc}")
            return
        stored = {r.task_id: r for r in await self._store.task_rows(run.run_id)}
        pauses = set()
        if run.state is RunState.PAUSED:
            pauses = {
                tid for tid, r in stored.items()
                if r.state == TaskState.FAILED and pauses_on_failure(dag, split_instance_id(tid)[0])
            }  # fmt: skip
        now = self._clock.now()
        for rec in run.load_tasks(stored, pauses=pauses, now=now, crash_error=ENGINE_STOPPED):
            self._recorder.try_ended(run, rec, TaskState.FAILED, now, ENGINE_STOPPED)
            self._recorder.task(run, rec)
        for rec in run.tasks.values():
            if rec.state is TaskState.UP_FOR_RETRY:
                self._driver.retries.schedule(run.run_id, rec.task_id, rec.next_try_at or now)
        if run.state in (RunState.RUNNING, RunState.PAUSED):
            self._running[dag.dag_id] = self._running.get(dag.dag_id, 0) + 1
            run.admitted = True
            self._driver.start(run)
        elif run.state is RunState.QUEUED:
            self._admit(run)
        if recovering and row.state == RunState.RUNNING:
            log.debug("resuming run %s of %s", run.run_id, dag.dag_id)

    # -- admit --------------------------------------------------------------------------------------

    def _admit(self, run: ActiveRun) -> None:
        """Queue the run behind its DAG's earlier runs and start as many as the limits allow."""
        self._waiting.setdefault(run.dag.dag_id, deque()).append(run)
        self.admit_waiting(run.dag.dag_id)

    def admit_waiting(self, dag_id: str) -> None:
        waiting = self._waiting.get(dag_id)
        if not waiting or dag_id in self.paused or self.stopping:
            return
        limit = self._dags[dag_id].max_active_runs
        while waiting and (limit is None or self._running.get(dag_id, 0) < limit):
            run = waiting.popleft()
            self._running[dag_id] = self._running.get(dag_id, 0) + 1
            run.admitted = True
            run.state = RunState.RUNNING
            if run.started_at is None:
                run.started_at = self._clock.now()
            self._recorder.run(run)
            self._driver.start(run)

    def take_waiting(self, dag_id: str) -> list[ActiveRun]:
        """Remove and return the DAG's runs that wait to be admitted."""
        return list(self._waiting.pop(dag_id, ()))

    def withdraw(self, run: ActiveRun) -> None:
        """Stop a run from waiting for admission (it is being cancelled)."""
        waiting = self._waiting.get(run.dag.dag_id)
        if waiting is not None and run in waiting:
            waiting.remove(run)

    # -- complete -----------------------------------------------------------------------------------

    async def complete(self, run: ActiveRun) -> None:
        """A run reached its final state: commit it, drop it, admit the next, tell ``on_finished``."""
        await self._recorder.flush()
        self._active.pop(run.run_id, None)
        self._by_key.pop((run.dag.dag_id, run.key), None)
        dag_id = run.dag.dag_id
        if run.admitted:
            self._running[dag_id] -= 1
            self.admit_waiting(dag_id)
        run.done.set()
        log.info("run %s of %s finished: %s", run.run_id, dag_id, run.state.value)
        await self._on_finished(run)
