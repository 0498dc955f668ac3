"""The ``Recorder``: writes task, try, run and operation rows through the store's writer, then tells
the observers (metrics, alerts, ...) what was recorded.

Writes are queued on the group-commit writer and return at once; ``await flush()`` returns when
everything recorded before it is committed. The engine's parts call the recorder instead of the
writer, so no state change reaches the store without reaching the observers too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from . import serialization
from .assets import Asset, AssetEvent
from .errors import StoreError
from .observe import AssetObserver, Observer
from .run_state import ActiveRun, TaskRecord
from .states import TaskState
from .store import StoreWriter
from .store import queries as q


class _NotOpen:
    def __getattr__(self, name: str) -> Any:
        raise StoreError("the engine's store is not open")


_NOT_OPEN: Any = _NotOpen()

WAITING = "waiting"
"""The ``events`` outcome of an asset event queued for a DAG's ``OnAssets`` trigger, until a run
consumes it (``ran``)."""


class AssetRouting(Protocol):
    """Which DAGs an asset event is for (``AssetTriggers``), and who to wake once it is written."""

    def route(self, event: AssetEvent) -> list[tuple[str, str, str | None]]:
        """(dag_id, outcome, error) per DAG whose ``OnAssets`` trigger names the event's asset:
        ``waiting``, or ``filtered`` / ``dead`` by the trigger's filter."""
        ...

    def queued(self, dag_ids: set[str]) -> None:
        """Events were queued for these DAGs (committed by the next flush)."""
        ...


class _NoRouting:
    def route(self, event: AssetEvent) -> list[tuple[str, str, str | None]]:
        return []

    def queued(self, dag_ids: set[str]) -> None:
        pass


class Recorder:
    def __init__(self, observers: list[Observer]) -> None:
        self._observers = list(observers)
        self._writer: StoreWriter = _NOT_OPEN
        self.asset_routing: AssetRouting = _NoRouting()

    def open(self, writer: StoreWriter) -> None:
        """Write through ``writer`` (the store's, once it is open)."""
        self._writer = writer

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def new_run(self, row: tuple[Any, ...], task_ids: Sequence[str]) -> None:
        """Insert a new run's row and its pending task rows (see ``runbook.new_run_row``)."""
        self._writer.insert_run(row, task_ids)

    def ensure_tasks(self, run_id: str, task_ids: Sequence[str]) -> None:
        """Add missing task rows of an adopted run (its DAG may have gained tasks)."""
        self._writer.ensure_tasks(run_id, task_ids)

    def task(self, run: ActiveRun, rec: TaskRecord) -> None:
        """Record a task instance's current state and fields."""
        self._writer.update_task(
            run.run_id, rec.task_id, rec.state, rec.try_number, rec.queued_at,
            rec.started_at, rec.finished_at, rec.next_try_at, rec.result, rec.error,
            rec.traceback, rec.try_offset,
        )  # fmt: skip
        for observer in self._observers:
            observer.task_changed(run, rec)

    def run(self, run: ActiveRun) -> None:
        """Record a run's state, times and note."""
        self._writer.update_run(
            run.run_id, run.state.value, run.started_at, run.finished_at, run.note
        )
        for observer in self._observers:
            observer.run_changed(run)

    def try_ended(
        self,
        run: ActiveRun,
        rec: TaskRecord,
        state: TaskState,
        now: float,
        error: str | None,
        traceback: str | None = None,
    ) -> None:
        """Record how one try ended (its row in the try history)."""
        self._writer.record_try(
            run.run_id, rec.task_id, rec.try_number, state.value, rec.started_at, now,
            error if state is not TaskState.SUCCESS else None, traceback,
        )  # fmt: skip

    def asset_events(
        self, run: ActiveRun, rec: TaskRecord, events: Sequence[AssetEvent], now: float
    ) -> None:
        """Record what a successful try wrote and read: its asset events (queued for the DAGs they
        trigger) and its declared inlets. Call it just before recording the success, with no await
        in between: both are committed in one transaction."""
        writer = self._writer
        queued = self._write_asset_events(events, now)
        for inlet in rec.node.options.inlets:
            writer.execute(q.UPSERT_ASSET, (inlet.uri, None, None, now))
            writer.execute(
                q.INSERT_RUN_INPUT, (run.run_id, inlet.uri, "inlet", rec.task_id, "", now)
            )
        if queued:
            self.asset_routing.queued(queued)
        if events:
            for observer in self._observers:
                if isinstance(observer, AssetObserver):
                    observer.asset_events_recorded(run, rec, events)

    def external_asset_events(self, events: Sequence[AssetEvent], now: float) -> None:
        """Record asset events another tool reported (OpenLineage in, ``lineage_in``), queued for
        the DAGs they trigger exactly like a task's (issue 12, OpenLineage in)."""
        queued = self._write_asset_events(events, now)
        if queued:
            self.asset_routing.queued(queued)

    def _write_asset_events(self, events: Sequence[AssetEvent], now: float) -> set[str]:
        """Write asset events and their ``events`` rows per routed DAG; the DAGs queued for."""
        writer = self._writer
        queued: set[str] = set()
        for ev in events:
            writer.execute(q.UPSERT_ASSET, (ev.uri, None, None, now))
            writer.execute(
                q.INSERT_ASSET_EVENT,
                (
                    ev.event_id, ev.uri, ev.ts, ev.run_id, ev.dag_id, ev.task_id, ev.try_number,
                    _json_or_none(ev.metadata), _json_or_none(ev.schema),
                ),
            )  # fmt: skip
            for dag_id, outcome, error in self.asset_routing.route(ev):
                writer.record_event(ev.event_id, dag_id, "asset", now, outcome, None, error, None)
                if outcome == WAITING:
                    queued.add(dag_id)
        return queued

    def declare_assets(self, assets: Sequence[Asset], now: float) -> None:
        """Register declared assets (name, metadata, freshness) in the catalog."""
        for a in assets:
            metadata = serialization.dumps_for_display(dict(a.metadata)) if a.metadata else None
            self._writer.execute(q.DECLARE_ASSET, (a.uri, a.name, metadata, now, a.fresh_within))

    def checkpoint(self, run_id: str, task_id: str, data: bytes) -> None:
        self._writer.save_checkpoint(run_id, task_id, data)

    def operation(
        self,
        actor: str,
        operation: str,
        now: float,
        *,
        run: ActiveRun | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an operator action (who, when, what) in the ``operations`` table."""
        if run is not None:
            dag_id, run_id = run.dag.dag_id, run.run_id
        self._writer.execute(
            q.INSERT_OPERATION,
            (now, actor, operation, dag_id, run_id, serialization.dumps(details or {})),
        )

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Queue another named statement in the same group commit."""
        self._writer.execute(sql, params)

    async def flush(self) -> None:
        """Return once everything recorded so far is committed."""
        await self._writer.flush()


def _json_or_none(value: Any) -> bytes | None:
    return None if value is None else serialization.dumps_for_display(value)
