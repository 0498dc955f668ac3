"""Each named SELECT returns exactly its record's fields, in order, against the real schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import serialization
from engine.store import Store, queries, records
from engine.store.schema import MIGRATIONS

# every SELECT in queries.py: the record its rows become ...
RECORD_OF: dict[str, Any] = {
    "SELECT_DAG": records.DagRow,
    "SELECT_DAGS": records.DagRow,
    "SELECT_RUN": records.RunRow,
    "SELECT_RUN_BY_KEY": records.RunRow,
    "SELECT_UNFINISHED_RUNS": records.RunRow,
    "SELECT_QUEUED_RUNS_AFTER": records.RunRow,
    "select_runs": records.RunRow,
    "SELECT_TASKS": records.TaskRow,
    "SELECT_TRIES": records.TryRow,
    "SELECT_EVENTS": records.EventRow,
    "select_existing_keys": records.KeyRow,
    "SELECT_LOGS": records.LogRow,
    "SELECT_OPERATIONS": records.OperationRow,
    "SELECT_PENDING_REQUESTS": records.RequestRow,
    "SELECT_REQUEST": records.RequestStatusRow,
    "SELECT_ASSETS": records.AssetRow,
    "SELECT_ASSET": records.AssetRow,
    "SELECT_ASSETS_MATCHING": records.AssetRow,
    "select_asset_names": records.AssetNameRow,
    "SELECT_FRESH_ASSETS": records.AssetRow,
    "SELECT_ASSET_SCHEMAS": records.SchemaRow,
    "SELECT_ASSET_EVENTS_AFTER": records.AssetEventRow,
    "SELECT_SOURCE_USES": records.SourceUseRow,
    "SELECT_ASSET_EVENTS": records.AssetEventRow,
    "select_asset_events_by_seq": records.AssetEventRow,
    "SELECT_RUN_OUTPUTS": records.AssetEventRow,
    "SELECT_RUN_INPUTS": records.RunInputRow,
    "SELECT_WAITING_ASSET_EVENTS": records.AssetEventRow,
    "SELECT_RUNNER_PROCESSES": records.RunnerProcessRow,
    "SELECT_LINEAGE_RUN": records.LineageRunRow,
}
# ... or the one column the store reads itself
ONE_COLUMN = {
    "SELECT_MAX_SEQ",
    "SELECT_MAX_ASSET_SEQ",
    "SELECT_CURSOR",
    "SELECT_PAUSED",
    "SELECT_ASSET_EVENT_ID",
}


def _sql(name: str) -> str:
    found = getattr(queries, name)
    if name == "select_runs":
        sql: str = found("d", "s", since=True, until=True, trigger=True, key_prefix=True)
        return sql
    if name in ("select_existing_keys", "select_asset_events_by_seq", "select_asset_names"):
        sql = found(3)
        return sql
    assert isinstance(found, str)
    return found


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    for script in MIGRATIONS:
        conn.executescript(script)
    try:
        yield conn
    finally:
        conn.close()


def _columns(db: sqlite3.Connection, sql: str) -> list[str]:
    cursor = db.execute(sql, [1] * sql.count("?"))  # 1 suits every parameter, LIMIT too
    return [d[0] for d in cursor.description]


def test_every_select_is_known_here() -> None:
    selects = {
        name
        for name, value in vars(queries).items()
        if (name.startswith("SELECT_") and isinstance(value, str)) or name.startswith("select_")
    }
    assert selects == set(RECORD_OF) | ONE_COLUMN, "give a new SELECT its record in RECORD_OF"


@pytest.mark.parametrize("name", sorted(RECORD_OF))
def test_query_columns_are_the_record_fields(db: sqlite3.Connection, name: str) -> None:
    record = RECORD_OF[name]
    assert _columns(db, _sql(name)) == list(record._fields)


@pytest.mark.parametrize("name", sorted(ONE_COLUMN))
def test_single_column_queries(db: sqlite3.Connection, name: str) -> None:
    assert len(_columns(db, _sql(name))) == 1


async def test_the_store_hands_out_records(tmp_path: Path) -> None:
    async with Store(tmp_path / "state.db") as store:
        params = serialization.dumps({"n": 1})
        store.writer.insert_run(
            ("r1", "d", "k1", "queued", params, None, "cli", None, 5.0), ["a", "b"]
        )
        await store.writer.flush()
        row = await store.find_run("d", "k1")
        assert isinstance(row, records.RunRow)
        assert (row.run_id, row.state, row.created_at) == ("r1", "queued", 5.0)
        assert await store.find_run("d", "missing") is None
        assert [r.run_id for r in await store.unfinished_run_rows()] == ["r1"]
        assert await store.queued_run_rows_after(row.seq) == []
        tasks = await store.task_rows("r1")
        assert all(isinstance(t, records.TaskRow) for t in tasks)
        assert sorted((t.task_id, t.state) for t in tasks) == [("a", "pending"), ("b", "pending")]
        request_id = await store.insert_request("me", "pause", {"dag_id": "d"})
        assert await store.pending_requests() == [
            records.RequestRow(request_id, "me", "pause", serialization.dumps({"dag_id": "d"}))
        ]
        status = await store.request(request_id)
        assert status == records.RequestStatusRow(request_id, "pending", None, None)
        assert await store.request(request_id + 1) is None
        run = await store.get_run("r1")
        assert run.params == {"n": 1} and set(run.tasks) == {"a", "b"}
