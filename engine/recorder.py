"""The ``Recorder``: writes task, try, run and operation rows through the store's writer, then tells
the observers (metrics, alerts, ...) what was recorded.

Writes are queued on the group-commit writer and return at once; ``await flush()`` returns when
everything recorded before it is committed. The engine's parts call the recorder instead of the
writer, so no state change reaches the store without reaching the observers too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import serialization
from .errors import StoreError
from .observe import Observer
from .run_state import ActiveRun, TaskRecord
from .states import TaskState
from .store import StoreWriter
from .store import queries as q


class _NotOpen:
    def __getattr__(self, name: str) -> Any:
        raise StoreError("the engine's store is not open")


_NOT_OPEN: Any = _NotOpen()


class Recorder:
    def __init__(self, observers: list[Observer]) -> None:
        self._observers = list(observers)
        self._writer: StoreWriter = _NOT_OPEN

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
