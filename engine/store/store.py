"""The state store: one SQLite file in WAL mode, one writer connection, one reader connection."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiosqlite
import anyio

from .. import serialization
from ..errors import RunNotFoundError, StoreError
from ..models import Run, RunSource, TaskInstance, TaskTry, epoch_to_datetime
from ..states import RunState, TaskState
from . import queries as q
from .lock import OwnerLock
from .records import (
    AssetEventRow,
    AssetNameRow,
    AssetRow,
    DagRow,
    EventRow,
    KeyRow,
    LineageRunRow,
    LogRow,
    OperationRow,
    RequestRow,
    RequestStatusRow,
    RunInputRow,
    RunnerProcessRow,
    RunRow,
    SchemaRow,
    SourceUseRow,
    TaskRow,
    TryRow,
)
from .schema import MIGRATIONS, SCHEMA_VERSION
from .writer import StoreWriter

Durability = Literal["normal", "full"]
Record = TypeVar("Record", bound=tuple[Any, ...])


class Store:
    """Open with ``async with Store(path) as store``.

    ``owner=True`` (the engine) takes the file's owner lock; ``owner=False`` (the CLI) only reads and
    queues runs. ``durability="normal"`` is WAL with ``synchronous=NORMAL`` (a commit survives a process
    crash; an OS crash may lose the last commits); ``"full"`` fsyncs every commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        owner: bool = True,
        durability: Durability = "normal",
        busy_timeout: float = 10.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', got {durability!r}")
        self.path = Path(path)
        self.owner = owner
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._lock = OwnerLock(self.path) if owner else None
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        self._writer: StoreWriter | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._read_lock = anyio.Lock()

    @property
    def writer(self) -> StoreWriter:
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer

    async def __aenter__(self) -> Self:
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._write = await self._connect()
            await self._migrate(self._write)
            self._read = await self._connect()
            if self.owner:
                await self._write.execute(
                    q.SET_OWNER, (os.getpid(), socket.gethostname(), time.time())
                )
            self._writer = StoreWriter(self._write)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._writer.serve)
        except BaseException:
            await self._close_connections()
            if self._lock is not None:
                self._lock.release()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None and self._writer is not None
        try:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    await self._writer.drain()
                    if self.owner and self._write is not None:
                        await self._write.execute(q.CLEAR_OWNER, (os.getpid(),))
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close_and_unlock()

    async def _close_and_unlock(self) -> None:
        try:
            await self._close_connections()
        finally:
            if self._lock is not None:
                self._lock.release()

    async def _connect(self) -> aiosqlite.Connection:
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            sync = "FULL" if self.durability == "full" else "NORMAL"
            await conn.execute(f"PRAGMA synchronous = {sync}")
        except sqlite3.Error as exc:
            await conn.close()
            raise StoreError(f"cannot use state file {self.path}: {exc}") from exc
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            async with conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                await conn.rollback()
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this Podium "
                    f"understands ({SCHEMA_VERSION}); upgrade Podium"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await conn.commit()
        except sqlite3.Error as exc:
            await conn.rollback()
            raise StoreError(f"cannot prepare state file {self.path}: {exc}") from exc

    async def _close_connections(self) -> None:
        conns = [c for c in (self._read, self._write) if c is not None]
        self._read = self._write = None
        try:
            for conn in conns:
                await conn.close()
        finally:
            # A close interrupted by a cancellation (a second Ctrl-C, a host cancelling the task
            # twice) would leave aiosqlite's non-daemon thread running and hang the process at exit.
            for conn in conns:
                if getattr(conn, "_running", False):
                    conn.stop()

    # -- reads --------------------------------------------------------------------------------------

    async def _read_snapshot(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Run SELECTs in one read transaction, in one hop to the reader's thread.

        Each query is executed and fully fetched before the next, so no half-read statement keeps a
        read transaction (and a stale snapshot) open while other coroutines share the connection,
        and several queries (a run and its tasks) see the same committed state.
        """
        assert self._read is not None, "store is not open"
        run_in_thread = getattr(self._read, "_execute", None)
        raw = getattr(self._read, "_connection", None)
        try:
            if run_in_thread is not None and raw is not None:
                result: list[list[Any]] = await run_in_thread(_read_in_thread, raw, queries)
                return result
            async with self._read_lock:
                return [list(await self._read.execute_fetchall(sql, p)) for sql, p in queries]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return (await self._read_snapshot([(sql, params)]))[0]

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _records(
        self, record: Callable[[Iterable[Any]], Record], sql: str, params: Sequence[Any] = ()
    ) -> list[Record]:
        return list(map(record, await self._fetchall(sql, params)))

    async def _record(
        self, record: Callable[[Iterable[Any]], Record], sql: str, params: Sequence[Any] = ()
    ) -> Record | None:
        rows = await self._fetchall(sql, params)
        return record(rows[0]) if rows else None

    async def get_run(self, run_id: str, *, source: RunSource | None = None) -> Run:
        run_rows, task_rows, try_rows = await self._read_snapshot(
            [(q.SELECT_RUN, (run_id,)), (q.SELECT_TASKS, (run_id,)), (q.SELECT_TRIES, (run_id,))]
        )
        if not run_rows:
            raise RunNotFoundError(f"no run {run_id!r} in {self.path}")
        return run_from_row(
            RunRow._make(run_rows[0]), _tasks_from_rows(task_rows, try_rows), source
        )

    async def find_run(self, dag_id: str, run_key: str) -> RunRow | None:
        """The stored row of the run with this key, or None."""
        return await self._record(RunRow._make, q.SELECT_RUN_BY_KEY, (dag_id, run_key))

    async def task_instances(self, run_id: str) -> dict[str, TaskInstance]:
        task_rows, try_rows = await self._read_snapshot(
            [(q.SELECT_TASKS, (run_id,)), (q.SELECT_TRIES, (run_id,))]
        )
        return _tasks_from_rows(task_rows, try_rows)

    async def list_runs(
        self,
        *,
        dag_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
        since: float | None = None,
        until: float | None = None,
        trigger: str | None = None,
        key_prefix: str | None = None,
        source: RunSource | None = None,
    ) -> list[Run]:
        params: list[Any] = [p for p in (dag_id, state, since, until, trigger) if p is not None]
        if key_prefix is not None:
            params += [key_prefix, key_prefix + "\U0010ffff"]
        params += [limit, offset]
        sql = q.select_runs(
            dag_id,
            state,
            since=since is not None,
            until=until is not None,
            trigger=trigger is not None,
            key_prefix=key_prefix is not None,
        )
        rows = await self._records(RunRow._make, sql, params)
        return [run_from_row(r, {}, source) for r in rows]

    async def unfinished_run_rows(self) -> list[RunRow]:
        """Queued, running and paused runs, oldest first."""
        return await self._records(RunRow._make, q.SELECT_UNFINISHED_RUNS)

    async def queued_run_rows_after(self, seq: int) -> list[RunRow]:
        """Queued runs stored after ``seq`` (by another process), oldest first."""
        return await self._records(RunRow._make, q.SELECT_QUEUED_RUNS_AFTER, (seq,))

    async def max_seq(self) -> int:
        row = await self._fetchone(q.SELECT_MAX_SEQ)
        return int(row[0])

    async def task_rows(self, run_id: str) -> list[TaskRow]:
        return await self._records(TaskRow._make, q.SELECT_TASKS, (run_id,))

    async def existing_keys(self, keys: Sequence[str]) -> dict[tuple[str, str], str]:
        """Runs that already exist for any of these run keys: (dag_id, run_key) -> run_id."""
        found: dict[tuple[str, str], str] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            for row in await self._records(KeyRow._make, q.select_existing_keys(len(chunk)), chunk):
                found[(row.dag_id, row.run_key)] = row.run_id
        return found

    async def load_cursor(self, sensor_id: str) -> Any:
        row = await self._fetchone(q.SELECT_CURSOR, (sensor_id,))
        return None if row is None else serialization.loads(row[0])

    async def events(self, *, outcome: str | None = None, limit: int = 100) -> list[EventRow]:
        """Recorded events (all, or those with this outcome), newest first."""
        return await self._records(EventRow._make, q.SELECT_EVENTS, (outcome, outcome, limit))

    async def task_logs(
        self, run_id: str, task_id: str, try_number: int | None = None, after_line: int = 0
    ) -> list[LogRow]:
        """Log lines of a task (one try, or all) after ``after_line``, oldest first."""
        return await self._records(
            LogRow._make, q.SELECT_LOGS, (run_id, task_id, try_number, try_number, after_line)
        )

    async def operations(
        self, *, run_id: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[OperationRow]:
        """Operator actions (of a run, of a DAG, or all), newest first."""
        return await self._records(
            OperationRow._make, q.SELECT_OPERATIONS, (run_id, run_id, dag_id, dag_id, limit)
        )

    async def pending_requests(self) -> list[RequestRow]:
        return await self._records(RequestRow._make, q.SELECT_PENDING_REQUESTS)

    async def request(self, request_id: int) -> RequestStatusRow | None:
        """Where the request stands, or None if there is no such request."""
        return await self._record(RequestStatusRow._make, q.SELECT_REQUEST, (request_id,))

    async def insert_request(self, actor: str, operation: str, args: dict[str, Any]) -> int:
        """Queue an operation for the engine that owns this file (used by the CLI)."""
        assert self._write is not None
        cursor = await self._write.execute(
            q.INSERT_REQUEST, (time.time(), actor, operation, serialization.dumps(args))
        )
        request_id = cursor.lastrowid
        await cursor.close()
        assert request_id is not None
        return request_id

    async def paused_dags(self) -> set[str]:
        return {row[0] for row in await self._fetchall(q.SELECT_PAUSED)}

    async def dag_rows(self) -> list[DagRow]:
        return await self._records(DagRow._make, q.SELECT_DAGS)

    async def dag_row(self, dag_id: str) -> DagRow | None:
        return await self._record(DagRow._make, q.SELECT_DAG, (dag_id,))

    # -- assets -------------------------------------------------------------------------------------

    async def assets(
        self, *, after: str = "", limit: int = 100, matching: str | None = None
    ) -> list[AssetRow]:
        """Known assets by URI (paged by key: those after ``after``), each with its latest seq;
        ``matching``: only those whose URI or name contains this text."""
        if matching:
            return await self._records(
                AssetRow._make, q.SELECT_ASSETS_MATCHING, (after, matching, matching, limit)
            )
        return await self._records(AssetRow._make, q.SELECT_ASSETS, (after, limit))

    async def asset_names(self, uris: Sequence[str]) -> dict[str, str]:
        """The declared names of these assets (those that have one)."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(uris))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            sql = q.select_asset_names(len(chunk))
            for row in await self._records(AssetNameRow._make, sql, chunk):
                if row.name:
                    found[row.uri] = row.name
        return found

    async def fresh_assets(self) -> list[AssetRow]:
        """The assets declared with a ``fresh_within``, by URI."""
        return await self._records(AssetRow._make, q.SELECT_FRESH_ASSETS)

    async def asset_schemas(
        self, uris_and_seqs: Sequence[tuple[str, int]], count: int = 2
    ) -> dict[str, list[SchemaRow]]:
        """Per URI, its latest ``count`` reported schemas at or below the seq, newest first (one
        read transaction, one indexed lookup per asset)."""
        found = await self._read_snapshot(
            [(q.SELECT_ASSET_SCHEMAS, (uri, seq, count)) for uri, seq in uris_and_seqs]
        )
        return {
            uri: [SchemaRow._make(r) for r in rows]
            for (uri, _), rows in zip(uris_and_seqs, found, strict=True)
        }

    async def asset_events_after(self, seq: int, *, limit: int = 500) -> list[AssetEventRow]:
        """Asset events committed after ``seq``, oldest first."""
        return await self._records(AssetEventRow._make, q.SELECT_ASSET_EVENTS_AFTER, (seq, limit))

    async def max_asset_seq(self) -> int:
        row = await self._fetchone(q.SELECT_MAX_ASSET_SEQ)
        return int(row[0])

    async def source_uses(self, uri: str, *, limit: int = 100) -> list[SourceUseRow]:
        """The DAGs whose runs the source ``uri`` started, with how many runs."""
        return await self._records(SourceUseRow._make, q.SELECT_SOURCE_USES, (uri, limit))

    async def asset(self, uri: str) -> AssetRow | None:
        return await self._record(AssetRow._make, q.SELECT_ASSET, (uri,))

    async def asset_events(
        self, uri: str, *, before: int | None = None, limit: int = 100
    ) -> list[AssetEventRow]:
        """Events of one asset, newest first, with a seq below ``before`` (paged by key)."""
        top = before if before is not None else 2**63 - 1
        return await self._records(AssetEventRow._make, q.SELECT_ASSET_EVENTS, (uri, top, limit))

    async def asset_events_by_seq(self, seqs: Sequence[int]) -> dict[int, AssetEventRow]:
        found: dict[int, AssetEventRow] = {}
        unique = list(dict.fromkeys(seqs))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            sql = q.select_asset_events_by_seq(len(chunk))
            for row in await self._records(AssetEventRow._make, sql, chunk):
                found[row.seq] = row
        return found

    async def run_outputs(self, run_id: str) -> list[AssetEventRow]:
        """The asset events a run's tasks recorded, oldest first."""
        return await self._records(AssetEventRow._make, q.SELECT_RUN_OUTPUTS, (run_id,))

    async def run_inputs(self, run_id: str) -> list[RunInputRow]:
        """The assets a run read: its source event, the asset events it consumed, its inlets."""
        return await self._records(RunInputRow._make, q.SELECT_RUN_INPUTS, (run_id,))

    async def lineage_run(self, run_id: str) -> LineageRunRow | None:
        """A run of another tool's job, known from its OpenLineage events (None if unknown)."""
        return await self._record(LineageRunRow._make, q.SELECT_LINEAGE_RUN, (run_id,))

    async def asset_event_exists(self, event_id: str) -> bool:
        return await self._fetchone(q.SELECT_ASSET_EVENT_ID, (event_id,)) is not None

    async def waiting_asset_events(self, dag_id: str) -> list[AssetEventRow]:
        """The asset events queued for ``dag_id`` that no run consumed yet, oldest first."""
        return await self._records(AssetEventRow._make, q.SELECT_WAITING_ASSET_EVENTS, (dag_id,))

    async def runner_processes(self) -> list[RunnerProcessRow]:
        """The worker processes recorded by runners (``engine.runners.reaper``)."""
        return await self._records(RunnerProcessRow._make, q.SELECT_RUNNER_PROCESSES)


def _read_in_thread(
    raw: sqlite3.Connection, queries: Sequence[tuple[str, Sequence[Any]]]
) -> list[list[Any]]:
    if len(queries) == 1:
        sql, params = queries[0]
        return [raw.execute(sql, params).fetchall()]
    raw.execute("BEGIN")
    try:
        return [raw.execute(sql, params).fetchall() for sql, params in queries]
    finally:
        raw.execute("COMMIT")


def _tasks_from_rows(
    task_rows: Iterable[Sequence[Any]], try_rows: Iterable[Sequence[Any]]
) -> dict[str, TaskInstance]:
    tries: dict[str, list[TaskTry]] = {}
    for t in map(TryRow._make, try_rows):
        tries.setdefault(t.task_id, []).append(
            TaskTry(
                t.try_number, TaskState(t.state), t.started_at, t.finished_at, t.error, t.traceback
            )
        )
    return {
        r.task_id: task_from_row(r, tuple(tries.get(r.task_id, ())))
        for r in map(TaskRow._make, task_rows)
    }


def run_from_row(row: RunRow, tasks: dict[str, TaskInstance], source: RunSource | None) -> Run:
    """The run of a stored row, with these tasks (``{}`` for a summary)."""
    return Run(
        run_id=row.run_id,
        dag_id=row.dag_id,
        key=row.run_key,
        state=RunState(row.state),
        params=serialization.loads(row.params) or {},
        logical_date=epoch_to_datetime(row.logical_date),
        trigger=row.trigger,
        event=serialization.loads(row.event),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        note=row.note,
        seq=row.seq,
        tasks=tasks,
        _source=source,
    )


def task_from_row(row: TaskRow, tries: tuple[TaskTry, ...] = ()) -> TaskInstance:
    """The task instance of a stored row, with its tries."""
    return TaskInstance(
        task_id=row.task_id,
        state=TaskState(row.state),
        try_number=row.try_number,
        result=serialization.loads(row.result),
        error=row.error,
        traceback=row.traceback,
        queued_at=row.queued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_try_at=row.next_try_at,
        checkpoint=serialization.loads(row.checkpoint),
        tries=tries,
    )
