"""The state file's schema, as forward-only migrations. ``MIGRATIONS[n]`` moves version n to n + 1."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 -> 1: the core tables
    """
    CREATE TABLE dags (
        dag_id       TEXT PRIMARY KEY,
        description  BLOB NOT NULL,
        source_file  TEXT,
        paused       INTEGER NOT NULL DEFAULT 0,
        updated_at   REAL NOT NULL
    );
    CREATE TABLE runs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id       TEXT NOT NULL UNIQUE,
        dag_id       TEXT NOT NULL,
        run_key      TEXT NOT NULL,
        state        TEXT NOT NULL,
        params       BLOB NOT NULL,
        logical_date REAL,
        trigger      TEXT NOT NULL,
        event        BLOB,
        created_at   REAL NOT NULL,
        started_at   REAL,
        finished_at  REAL,
        note         TEXT,
        UNIQUE (dag_id, run_key)
    );
    CREATE INDEX runs_by_state ON runs (state, seq);
    CREATE INDEX runs_by_dag_state ON runs (dag_id, state, seq);
    CREATE TABLE task_instances (
        run_id       TEXT NOT NULL,
        task_id      TEXT NOT NULL,
        state        TEXT NOT NULL,
        try_number   INTEGER NOT NULL DEFAULT 0,
        queued_at    REAL,
        started_at   REAL,
        finished_at  REAL,
        next_try_at  REAL,
        result       BLOB,
        error        TEXT,
        traceback    TEXT,
        checkpoint   BLOB,
        PRIMARY KEY (run_id, task_id)
    ) WITHOUT ROWID;
    CREATE TABLE task_tries (
        run_id       TEXT NOT NULL,
        task_id      TEXT NOT NULL,
        try_number   INTEGER NOT NULL,
        state        TEXT NOT NULL,
        started_at   REAL,
        finished_at  REAL,
        error        TEXT,
        traceback    TEXT,
        PRIMARY KEY (run_id, task_id, try_number)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        event_id     TEXT NOT NULL,
        dag_id       TEXT NOT NULL,
        source       TEXT NOT NULL,
        received_at  REAL NOT NULL,
        outcome      TEXT NOT NULL,
        run_id       TEXT,
        error        TEXT,
        payload      BLOB,
        PRIMARY KEY (event_id, dag_id)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_outcome ON events (outcome, received_at);
    CREATE TABLE sensor_cursors (
        sensor_id    TEXT PRIMARY KEY,
        cursor       BLOB NOT NULL,
        updated_at   REAL NOT NULL
    );
    CREATE TABLE task_logs (
        run_id       TEXT NOT NULL,
        task_id      TEXT NOT NULL,
        try_number   INTEGER NOT NULL,
        line_no      INTEGER NOT NULL,
        ts           REAL NOT NULL,
        level        TEXT NOT NULL,
        message      TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, try_number, line_no)
    ) WITHOUT ROWID;
    CREATE TABLE engine_owner (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        pid          INTEGER NOT NULL,
        hostname     TEXT NOT NULL,
        started_at   REAL NOT NULL
    );
    """,
    # 1 -> 2: recovery operations (issue 6): a fresh retry budget after a rerun, and an audit log
    """
    ALTER TABLE task_instances ADD COLUMN try_offset INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE operations (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        ts           REAL NOT NULL,
        actor        TEXT NOT NULL,
        operation    TEXT NOT NULL,
        dag_id       TEXT,
        run_id       TEXT,
        details      BLOB
    );
    CREATE INDEX operations_by_run ON operations (run_id, id);
    CREATE TABLE requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        ts           REAL NOT NULL,
        actor        TEXT NOT NULL,
        operation    TEXT NOT NULL,
        args         BLOB NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending',
        result       BLOB,
        error        TEXT
    );
    CREATE INDEX requests_by_state ON requests (state, id);
    CREATE INDEX runs_by_created ON runs (created_at);
    """,
    # 2 -> 3: tracing (engine/tracing.py): the W3C trace context of the run's span, so a run resumed
    # after a restart stays in its trace
    """
    ALTER TABLE runs ADD COLUMN trace_context BLOB;
    """,
    # 3 -> 4: data assets (issue 12): what each run read and wrote, and runs triggered by data
    """
    CREATE TABLE assets (
        uri          TEXT PRIMARY KEY,
        name         TEXT,
        metadata     BLOB,
        first_seen   REAL NOT NULL
    );
    CREATE TABLE asset_events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id     TEXT NOT NULL UNIQUE,
        uri          TEXT NOT NULL,
        ts           REAL NOT NULL,
        run_id       TEXT,
        dag_id       TEXT,
        task_id      TEXT,
        try_number   INTEGER,
        metadata     BLOB,
        schema       BLOB
    );
    CREATE INDEX asset_events_by_uri ON asset_events (uri, seq);
    CREATE INDEX asset_events_by_run ON asset_events (run_id);
    CREATE TABLE run_inputs (
        run_id       TEXT NOT NULL,
        uri          TEXT NOT NULL,
        kind         TEXT NOT NULL,
        task_id      TEXT NOT NULL DEFAULT '',
        event_id     TEXT NOT NULL DEFAULT '',
        ts           REAL NOT NULL,
        PRIMARY KEY (run_id, uri, kind, task_id, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX events_waiting ON events (dag_id) WHERE outcome = 'waiting';
    """,
    # 4 -> 5: runners (engine/runners): the worker processes the engine started, so the next start
    # after a kill -9 reaps those still alive (start_time tells a reused PID apart)
    """
    CREATE TABLE runner_processes (
        pid          INTEGER PRIMARY KEY,
        start_time   INTEGER,
        engine_pid   INTEGER NOT NULL,
        started_at   REAL NOT NULL
    );
    """,
    # 5 -> 6: the catalog (issue 12): an asset's declared freshness, and the runs a source started
    # found by the source's URI (lineage from a Kafka topic or S3 prefix to its DAGs)
    """
    ALTER TABLE assets ADD COLUMN fresh_within REAL;
    CREATE INDEX run_inputs_by_uri ON run_inputs (uri, kind);
    """,
    # 6 -> 7: OpenLineage in (issue 12): the runs of other tools' jobs (dbt, Spark, ...) that sent
    # RunEvents to POST /api/v1/lineage; their inputs are run_inputs (kind 'openlineage'), their
    # outputs asset_events (run_id = the OpenLineage run id)
    """
    CREATE TABLE lineage_runs (
        run_id        TEXT PRIMARY KEY,
        namespace     TEXT NOT NULL,
        job           TEXT NOT NULL,
        state         TEXT NOT NULL,
        event_time    REAL NOT NULL,
        producer      TEXT NOT NULL,
        parent_run_id TEXT,
        first_seen    REAL NOT NULL,
        updated_at    REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX lineage_runs_by_job ON lineage_runs (namespace, job);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
