"""Every SQL statement the engine runs, by name.

A SELECT whose rows the store hands out lists its record's fields (``records.py``), in order.
"""

from __future__ import annotations

from . import records

RUN_COLUMNS = ", ".join(records.RunRow._fields)
TASK_COLUMNS = ", ".join(records.TaskRow._fields)
TRY_COLUMNS = ", ".join(records.TryRow._fields)
DAG_COLUMNS = ", ".join(records.DagRow._fields)
EVENT_COLUMNS = ", ".join(records.EventRow._fields)
LOG_COLUMNS = ", ".join(records.LogRow._fields)
OPERATION_COLUMNS = ", ".join(records.OperationRow._fields)
REQUEST_COLUMNS = ", ".join(records.RequestRow._fields)
REQUEST_STATUS_COLUMNS = ", ".join(records.RequestStatusRow._fields)
KEY_COLUMNS = ", ".join(records.KeyRow._fields)
RUNNER_PROCESS_COLUMNS = ", ".join(records.RunnerProcessRow._fields)

INSERT_RUN = """
INSERT INTO runs (run_id, dag_id, run_key, state, params, logical_date, trigger, event, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dag_id, run_key) DO NOTHING
"""

UPDATE_RUN = """
UPDATE runs SET state = ?, started_at = ?, finished_at = ?, note = ? WHERE run_id = ?
"""

SET_RUN_TRACE = "UPDATE runs SET trace_context = ? WHERE run_id = ?"

INSERT_TASK = """
INSERT INTO task_instances (run_id, task_id, state) VALUES (?, ?, ?)
ON CONFLICT (run_id, task_id) DO NOTHING
"""

UPDATE_TASK = """
UPDATE task_instances
SET state = ?, try_number = ?, queued_at = ?, started_at = ?, finished_at = ?, next_try_at = ?,
    result = ?, error = ?, traceback = ?, try_offset = ?
WHERE run_id = ? AND task_id = ?
"""

UPDATE_CHECKPOINT = "UPDATE task_instances SET checkpoint = ? WHERE run_id = ? AND task_id = ?"

UPSERT_TRY = """
INSERT INTO task_tries (run_id, task_id, try_number, state, started_at, finished_at, error, traceback)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, task_id, try_number) DO UPDATE SET
    state = excluded.state, finished_at = excluded.finished_at,
    error = excluded.error, traceback = excluded.traceback
"""

UPSERT_DAG = """
INSERT INTO dags (dag_id, description, source_file, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (dag_id) DO UPDATE SET
    description = excluded.description, source_file = excluded.source_file,
    updated_at = excluded.updated_at
"""

SET_OWNER = """
INSERT INTO engine_owner (id, pid, hostname, started_at) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, hostname = excluded.hostname,
    started_at = excluded.started_at
"""
CLEAR_OWNER = "DELETE FROM engine_owner WHERE id = 1 AND pid = ?"

SELECT_DAG = f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?"
SELECT_DAGS = f"SELECT {DAG_COLUMNS} FROM dags ORDER BY dag_id"

SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
SELECT_RUN_BY_KEY = f"SELECT {RUN_COLUMNS} FROM runs WHERE dag_id = ? AND run_key = ?"
SELECT_UNFINISHED_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running', 'paused') ORDER BY seq"
)
SELECT_QUEUED_RUNS_AFTER = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE seq > ? AND state = 'queued' ORDER BY seq"
)
SELECT_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM runs"

SELECT_TASKS = f"SELECT {TASK_COLUMNS} FROM task_instances WHERE run_id = ?"
SELECT_TRIES = f"""
SELECT {TRY_COLUMNS}
FROM task_tries WHERE run_id = ? ORDER BY task_id, try_number
"""


def select_runs(
    dag_id: str | None,
    state: str | None,
    *,
    since: bool = False,
    until: bool = False,
    trigger: bool = False,
    key_prefix: bool = False,
) -> str:
    """Runs, newest first, optionally filtered. Parameters, for the filters asked for, in order:
    dag_id, state, since, until, trigger, key prefix range (low, high); then limit, offset."""
    where = []
    if dag_id is not None:
        where.append("dag_id = ?")
    if state is not None:
        where.append("state = ?")
    if since:
        where.append("created_at >= ?")
    if until:
        where.append("created_at <= ?")
    if trigger:
        where.append("trigger = ?")
    if key_prefix:
        where.append("run_key >= ? AND run_key < ?")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY seq DESC LIMIT ? OFFSET ?"


UPSERT_EVENT = """
INSERT INTO events (event_id, dag_id, source, received_at, outcome, run_id, error, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (event_id, dag_id) DO UPDATE SET
    outcome = excluded.outcome, received_at = excluded.received_at, error = excluded.error,
    run_id = excluded.run_id
WHERE events.outcome != 'ran'
"""

UPSERT_CURSOR = """
INSERT INTO sensor_cursors (sensor_id, cursor, updated_at) VALUES (?, ?, ?)
ON CONFLICT (sensor_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
"""
SELECT_CURSOR = "SELECT cursor FROM sensor_cursors WHERE sensor_id = ?"

SELECT_EVENTS = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE (? IS NULL OR outcome = ?) ORDER BY received_at DESC LIMIT ?
"""


def select_existing_keys(count: int) -> str:
    """(dag_id, run_key) pairs among ``count`` candidate keys; parameters: the keys."""
    marks = ", ".join("?" * count)
    return f"SELECT {KEY_COLUMNS} FROM runs WHERE run_key IN ({marks})"


INSERT_LOG = """
INSERT OR REPLACE INTO task_logs (run_id, task_id, try_number, line_no, ts, level, message)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SELECT_LOGS = f"""
SELECT {LOG_COLUMNS} FROM task_logs
WHERE run_id = ? AND task_id = ? AND (? IS NULL OR try_number = ?) AND line_no > ?
ORDER BY try_number, line_no
"""

INSERT_OPERATION = """
INSERT INTO operations (ts, actor, operation, dag_id, run_id, details) VALUES (?, ?, ?, ?, ?, ?)
"""
SELECT_OPERATIONS = f"""
SELECT {OPERATION_COLUMNS} FROM operations
WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR dag_id = ?) ORDER BY id DESC LIMIT ?
"""
SET_PAUSED = "UPDATE dags SET paused = ? WHERE dag_id = ?"
SELECT_PAUSED = "SELECT dag_id FROM dags WHERE paused = 1"
RESET_TASK = """
UPDATE task_instances SET state = 'pending', queued_at = NULL, started_at = NULL,
    finished_at = NULL, next_try_at = NULL, result = NULL, error = NULL, traceback = NULL,
    try_offset = try_number
WHERE run_id = ? AND task_id = ?
"""

INSERT_REQUEST = "INSERT INTO requests (ts, actor, operation, args) VALUES (?, ?, ?, ?)"
SELECT_PENDING_REQUESTS = (
    f"SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'pending' ORDER BY id"
)
SELECT_REQUEST = f"SELECT {REQUEST_STATUS_COLUMNS} FROM requests WHERE id = ?"
FINISH_REQUEST = "UPDATE requests SET state = ?, result = ?, error = ? WHERE id = ?"
ABANDON_REQUESTS = (
    "UPDATE requests SET state = 'failed', error = 'engine stopped while running it' "
    "WHERE state = 'running'"
)

# -- assets (issue 12) ------------------------------------------------------------------------------

ASSET_COLUMNS = ", ".join(records.AssetRow._fields)
ASSET_EVENT_COLUMNS = ", ".join(records.AssetEventRow._fields)
RUN_INPUT_COLUMNS = ", ".join(records.RunInputRow._fields)

UPSERT_ASSET = """
INSERT INTO assets (uri, name, metadata, first_seen) VALUES (?, ?, ?, ?)
ON CONFLICT (uri) DO UPDATE SET
    name = COALESCE(excluded.name, assets.name),
    metadata = COALESCE(excluded.metadata, assets.metadata)
"""
# A declaration (at the engine's start) sets the freshness it declares, or clears it.
DECLARE_ASSET = """
INSERT INTO assets (uri, name, metadata, first_seen, fresh_within) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (uri) DO UPDATE SET
    name = COALESCE(excluded.name, assets.name),
    metadata = COALESCE(excluded.metadata, assets.metadata),
    fresh_within = excluded.fresh_within
"""

INSERT_ASSET_EVENT = """
INSERT INTO asset_events (event_id, uri, ts, run_id, dag_id, task_id, try_number, metadata, schema)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (event_id) DO NOTHING
"""

INSERT_RUN_INPUT = """
INSERT INTO run_inputs (run_id, uri, kind, task_id, event_id, ts) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

ASSET_NAME_COLUMNS = ", ".join(records.AssetNameRow._fields)
SCHEMA_COLUMNS = ", ".join(records.SchemaRow._fields)
SOURCE_USE_COLUMNS = ", ".join(records.SourceUseRow._fields)

SELECT_ASSETS = f"""
SELECT {ASSET_COLUMNS} FROM (
    SELECT a.uri, a.name, a.metadata, a.first_seen, a.fresh_within,
           (SELECT MAX(e.seq) FROM asset_events e WHERE e.uri = a.uri) AS last_seq
    FROM assets a WHERE a.uri > ? ORDER BY a.uri LIMIT ?
)
"""
# The same page, only the URIs containing a text (the catalog's filter): still by key.
SELECT_ASSETS_MATCHING = f"""
SELECT {ASSET_COLUMNS} FROM (
    SELECT a.uri, a.name, a.metadata, a.first_seen, a.fresh_within,
           (SELECT MAX(e.seq) FROM asset_events e WHERE e.uri = a.uri) AS last_seq
    FROM assets a WHERE a.uri > ? AND (instr(a.uri, ?) > 0 OR instr(COALESCE(a.name, ''), ?) > 0)
    ORDER BY a.uri LIMIT ?
)
"""
SELECT_ASSET = f"""
SELECT {ASSET_COLUMNS} FROM (
    SELECT a.uri, a.name, a.metadata, a.first_seen, a.fresh_within,
           (SELECT MAX(e.seq) FROM asset_events e WHERE e.uri = a.uri) AS last_seq
    FROM assets a WHERE a.uri = ?
)
"""
SELECT_FRESH_ASSETS = f"""
SELECT {ASSET_COLUMNS} FROM (
    SELECT a.uri, a.name, a.metadata, a.first_seen, a.fresh_within,
           (SELECT MAX(e.seq) FROM asset_events e WHERE e.uri = a.uri) AS last_seq
    FROM assets a WHERE a.fresh_within IS NOT NULL ORDER BY a.uri
)
"""
# The latest reported schemas of an asset (at or below a seq), newest first: what it is now and
# what it was before.
SELECT_ASSET_SCHEMAS = f"""
SELECT {SCHEMA_COLUMNS} FROM asset_events
WHERE uri = ? AND seq <= ? AND schema IS NOT NULL ORDER BY seq DESC LIMIT ?
"""
# Asset events committed after a seq, oldest first (the alerting watch follows them).
SELECT_ASSET_EVENTS_AFTER = f"""
SELECT {ASSET_EVENT_COLUMNS} FROM asset_events WHERE seq > ? ORDER BY seq LIMIT ?
"""
SELECT_MAX_ASSET_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM asset_events"
# The DAGs whose runs a source started (``run_inputs`` of kind ``source``).
SELECT_SOURCE_USES = f"""
SELECT {SOURCE_USE_COLUMNS} FROM (
    SELECT r.dag_id AS dag_id, COUNT(*) AS runs
    FROM run_inputs i JOIN runs r ON r.run_id = i.run_id
    WHERE i.uri = ? AND i.kind = 'source' GROUP BY r.dag_id ORDER BY r.dag_id LIMIT ?
)
"""

SELECT_ASSET_EVENTS = f"""
SELECT {ASSET_EVENT_COLUMNS} FROM asset_events
WHERE uri = ? AND seq < ? ORDER BY seq DESC LIMIT ?
"""
SELECT_RUN_OUTPUTS = f"SELECT {ASSET_EVENT_COLUMNS} FROM asset_events WHERE run_id = ? ORDER BY seq"
SELECT_RUN_INPUTS = (
    f"SELECT {RUN_INPUT_COLUMNS} FROM run_inputs WHERE run_id = ? ORDER BY kind, uri, event_id"
)


def select_asset_names(count: int) -> str:
    """Names of assets by URI; parameters: ``count`` URIs."""
    marks = ", ".join("?" * count)
    return f"SELECT {ASSET_NAME_COLUMNS} FROM assets WHERE uri IN ({marks})"


def select_asset_events_by_seq(count: int) -> str:
    """Asset events by seq; parameters: ``count`` seqs."""
    marks = ", ".join("?" * count)
    return f"SELECT {ASSET_EVENT_COLUMNS} FROM asset_events WHERE seq IN ({marks})"


# The asset events queued for a DAG (``OnAssets``): their ``events`` row says ``waiting``; the run
# that consumes them turns it into ``ran`` in the transaction that stores the run.
SELECT_WAITING_ASSET_EVENTS = f"""
SELECT {", ".join("a." + c for c in records.AssetEventRow._fields)}
FROM events w JOIN asset_events a ON a.event_id = w.event_id
WHERE w.dag_id = ? AND w.outcome = 'waiting' ORDER BY a.seq
"""


INSERT_RUNNER_PROCESS = """
INSERT OR REPLACE INTO runner_processes (pid, start_time, engine_pid, started_at) VALUES (?, ?, ?, ?)
"""
DELETE_RUNNER_PROCESS = "DELETE FROM runner_processes WHERE pid = ?"
CLEAR_RUNNER_PROCESSES = "DELETE FROM runner_processes"
SELECT_RUNNER_PROCESSES = f"SELECT {RUNNER_PROCESS_COLUMNS} FROM runner_processes ORDER BY pid"


# -- OpenLineage in (issue 12): runs of other tools' jobs -------------------------------------------

LINEAGE_RUN_COLUMNS = ", ".join(records.LineageRunRow._fields)

# The state follows the latest event by its time: a START that arrives after the COMPLETE does not
# reopen the run.
UPSERT_LINEAGE_RUN = """
INSERT INTO lineage_runs (run_id, namespace, job, state, event_time, producer, parent_run_id,
                          first_seen, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    state = CASE WHEN excluded.event_time >= lineage_runs.event_time
                 THEN excluded.state ELSE lineage_runs.state END,
    event_time = MAX(excluded.event_time, lineage_runs.event_time),
    parent_run_id = COALESCE(lineage_runs.parent_run_id, excluded.parent_run_id),
    updated_at = excluded.updated_at
"""
SELECT_LINEAGE_RUN = f"SELECT {LINEAGE_RUN_COLUMNS} FROM lineage_runs WHERE run_id = ?"
SELECT_ASSET_EVENT_ID = "SELECT event_id FROM asset_events WHERE event_id = ?"
