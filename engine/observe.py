"""Observers: how monitoring (metrics, alerts, the web UI's live view) hears about state changes.

The engine calls every observer synchronously on each recorded change, on the loop thread, so an
observer must be cheap and must not block: count, or queue work for a background job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sensors.base import EventSource

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
