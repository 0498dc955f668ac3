"""The rows the store hands out, as named records: read them by name (``row.state``), not by position.

Each record's fields are its query's columns, in order: the column lists in ``queries.py`` are built
from these fields, and ``tests/unit/test_store_records.py`` checks every named query against the schema.
They are ``NamedTuple`` classes, so a row is still a tuple (cheap to build from what SQLite returns,
and unpacking keeps working while callers move to names).
"""

from __future__ import annotations

from typing import NamedTuple


class RunRow(NamedTuple):
    """A row of ``runs``: one DAG run. ``params``, ``event`` and ``trace_context`` (the W3C
    ``traceparent``/``tracestate`` of its span, when tracing is on) are serialized JSON."""

    seq: int
    run_id: str
    dag_id: str
    run_key: str
    state: str
    params: bytes
    logical_date: float | None
    trigger: str
    event: bytes | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    note: str | None
    trace_context: bytes | None


class TaskRow(NamedTuple):
    """A row of ``task_instances``: one task of one run. ``result``/``checkpoint`` are serialized."""

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


class TryRow(NamedTuple):
    """A row of ``task_tries``: one try of one task."""

    run_id: str
    task_id: str
    try_number: int
    state: str
    started_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None


class EventRow(NamedTuple):
    """A row of ``events``: one event's outcome for one DAG. ``payload`` is serialized."""

    event_id: str
    dag_id: str
    source: str
    received_at: float
    outcome: str
    run_id: str | None
    error: str | None
    payload: bytes | None


class LogRow(NamedTuple):
    """A line of ``task_logs`` (the run and task are the query's)."""

    try_number: int
    line_no: int
    ts: float
    level: str
    message: str


class OperationRow(NamedTuple):
    """A row of ``operations``: one operator action, for the audit log. ``details`` is serialized."""

    id: int
    ts: float
    actor: str
    operation: str
    dag_id: str | None
    run_id: str | None
    details: bytes | None


class RequestRow(NamedTuple):
    """A pending row of ``requests``: an operation another process asked the engine to do."""

    id: int
    actor: str
    operation: str
    args: bytes


class RequestStatusRow(NamedTuple):
    """Where a request stands: ``state`` is pending, running, done or failed; ``result`` is
    serialized."""

    id: int
    state: str
    result: bytes | None
    error: str | None


class DagRow(NamedTuple):
    """A row of ``dags``: a DAG an engine served. ``description`` is serialized."""

    dag_id: str
    description: bytes
    source_file: str | None
    paused: int
    updated_at: float


class KeyRow(NamedTuple):
    """An existing run found by its key."""

    dag_id: str
    run_key: str
    run_id: str


class AssetRow(NamedTuple):
    """A row of ``assets`` with its latest event's seq (None before any). ``metadata`` is
    serialized (the declared one); ``fresh_within`` is the declared freshness in seconds."""

    uri: str
    name: str | None
    metadata: bytes | None
    first_seen: float
    fresh_within: float | None
    last_seq: int | None


class AssetNameRow(NamedTuple):
    """An asset's declared name (None: it has none)."""

    uri: str
    name: str | None


class SchemaRow(NamedTuple):
    """An asset event that reported a schema (serialized)."""

    uri: str
    seq: int
    schema: bytes


class SourceUseRow(NamedTuple):
    """A DAG whose runs a source (Kafka topic, S3 prefix) started, and how many of them."""

    dag_id: str
    runs: int


class AssetEventRow(NamedTuple):
    """A row of ``asset_events``: data written (or read at a source). ``metadata`` and ``schema``
    are serialized; ``run_id``, ``dag_id``, ``task_id`` and ``try_number`` name who wrote it."""

    seq: int
    event_id: str
    uri: str
    ts: float
    run_id: str | None
    dag_id: str | None
    task_id: str | None
    try_number: int | None
    metadata: bytes | None
    schema: bytes | None


class RunInputRow(NamedTuple):
    """A row of ``run_inputs``: an asset a run read. ``kind`` is ``source`` (the Kafka topic or S3
    prefix whose event started it), ``asset`` (an asset event an ``OnAssets`` run consumed) or
    ``inlet`` (declared by a task that succeeded) or ``openlineage`` (read by another tool's job,
    from its OpenLineage events); ``event_id`` is the event, ``''`` if none."""

    run_id: str
    uri: str
    kind: str
    task_id: str
    event_id: str
    ts: float


class RunnerProcessRow(NamedTuple):
    """A worker process an engine started (``engine.runners``): its PID and start time (clock ticks
    since boot, None where unknown)."""

    pid: int
    start_time: int | None
    engine_pid: int
    started_at: float


class LineageRunRow(NamedTuple):
    """A row of ``lineage_runs``: a run of another tool's job, known from its OpenLineage events.
    ``state`` is the latest ``eventType`` (by ``event_time``)."""

    run_id: str
    namespace: str
    job: str
    state: str
    event_time: float
    producer: str
    parent_run_id: str | None
    first_seen: float
    updated_at: float
