"""Observers: how monitoring (metrics, alerts, the web UI's live view) hears about state changes.

The engine calls every observer synchronously on each recorded change, on the loop thread, so an
observer must be cheap and must not block: count, or queue work for a background job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sensors.base import EventSource

    from .assets import AssetEvent
    from .clock import Clock
    from .dag import DAG
    from .ingest import EventIngest
    from .limits import ReadyQueue
    from .run_state import ActiveRun, TaskRecord
    from .store import Store


class Observer(Protocol):
    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        """``task.state`` was just recorded (queued, running, success, failed, up_for_retry, ...)."""
        ...

    def run_changed(self, run: ActiveRun) -> None:
        """``run.state`` was just recorded."""
        ...


@runtime_checkable
class AssetObserver(Protocol):
    """An observer that also hears about asset events (lineage emitters, the catalog): called once
    the events are queued in the same transaction as the task's success (not yet committed; an
    emitter that must not report uncommitted data waits for the task's ``task_changed``, which
    follows at once, or reads the store)."""

    def asset_events_recorded(
        self, run: ActiveRun, task: TaskRecord, events: Sequence[AssetEvent]
    ) -> None: ...


class EngineView(Protocol):
    """What monitoring reads of a running engine (``Engine`` is one): read-only, no private parts."""

    @property
    def dags(self) -> Mapping[str, DAG]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Store: ...

    @property
    def pending_runs(self) -> int: ...

    @property
    def pools(self) -> Mapping[str, int]: ...

    @property
    def max_tasks(self) -> int: ...

    @property
    def ready(self) -> ReadyQueue: ...

    @property
    def sink(self) -> EventIngest: ...

    @property
    def sources(self) -> Mapping[str, EventSource]: ...
