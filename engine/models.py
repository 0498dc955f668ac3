"""Snapshots of runs and task instances, as the API hands them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .states import RunState, TaskState


class RunSource(Protocol):
    async def wait_run(self, run_id: str, timeout: float | None) -> Run: ...
    async def get_run(self, run_id: str) -> Run: ...


@dataclass(frozen=True, slots=True)
class TaskTry:
    try_number: int
    state: TaskState
    started_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class TaskInstance:
    """One task of one run: its state, the number of its current try, and its result or error."""

    task_id: str
    state: TaskState
    try_number: int
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    next_try_at: float | None = None
    checkpoint: Any = None
    tries: tuple[TaskTry, ...] = ()

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class Run:
    """A DAG run as stored. ``await run.wait()`` returns the finished run; ``refresh()`` re-reads it."""

    run_id: str
    dag_id: str
    key: str
    state: RunState
    params: dict[str, Any]
    logical_date: datetime | None
    trigger: str
    event: Any
    created_at: float
    started_at: float | None
    finished_at: float | None
    note: str | None
    seq: int
    tasks: dict[str, TaskInstance] = field(default_factory=dict)
    _source: RunSource | None = field(default=None, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    async def wait(self, timeout: float | None = None) -> Run:
        """Wait until the run is finished and return it with its task instances."""
        if self._source is None:
            raise RuntimeError("this Run snapshot is not attached to an engine or store")
        return await self._source.wait_run(self.run_id, timeout)

    async def refresh(self) -> Run:
        if self._source is None:
            raise RuntimeError("this Run snapshot is not attached to an engine or store")
        return await self._source.get_run(self.run_id)


def epoch_to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)
