"""Observers: how monitoring (metrics, alerts, the web UI's live view) hears about state changes.

The engine calls every observer synchronously on each recorded change, on the loop thread, so an
observer must be cheap and must not block: count, or queue work for a background job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .run_state import ActiveRun, TaskRecord


class Observer(Protocol):
    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        """``task.state`` was just recorded (queued, running, success, failed, up_for_retry, ...)."""
        ...

    def run_changed(self, run: ActiveRun) -> None:
        """``run.state`` was just recorded."""
        ...
