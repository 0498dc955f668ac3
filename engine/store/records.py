"""Store rows as named records: the one place that knows each query's column order."""

from __future__ import annotations

from typing import NamedTuple


class RunRow(NamedTuple):
    """A row of ``runs`` (columns of ``queries.RUN_COLUMNS``)."""

    seq: int
    run_id: str
    dag_id: str
    run_key: str
    state: str
    params: bytes | None
    logical_date: float | None
    trigger: str
    event: bytes | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    note: str | None


class TaskRow(NamedTuple):
    """A row of ``task_instances`` (columns of ``queries.TASK_COLUMNS``)."""

    run_id: str
    task_id: str
    state: str
    try_number: int
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    next_try_at: float | None
    result: bytes | None
    error: str | None
    traceback: str | None
    checkpoint: bytes | None
    try_offset: int
