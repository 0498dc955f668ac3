"""The single writer: state changes that arrive within one commit's time share one transaction.

Callers record changes without waiting (``insert_run``, ``update_task``, ...). Changes to the same row
are coalesced: the row is written once per transaction with its latest values. ``await flush()`` returns
when everything recorded before the call is committed. While a commit is in progress new changes
collect in the next batch, so the batch size adapts to the load (group commit).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import aiosqlite
import anyio

from ..backoff import Backoff
from ..errors import StoreError
from . import queries as q

log = logging.getLogger("podium.store")

#: A failed commit is tried again after 1/16 s, doubling up to 2 s.
_RETRY = Backoff(0.0625, cap=2.0)


class _Batch:
    __slots__ = (
        "checkpoints",
        "committed",
        "cursors",
        "error",
        "events",
        "logs",
        "new_runs",
        "new_tasks",
        "other",
        "runs",
        "tasks",
        "tries",
    )

    def __init__(self) -> None:
        self.new_runs: list[tuple[Any, ...]] = []
        self.new_tasks: list[tuple[Any, ...]] = []
        self.tasks: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.runs: dict[str, tuple[Any, ...]] = {}
        self.tries: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self.checkpoints: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.logs: list[tuple[Any, ...]] = []
        self.cursors: dict[str, tuple[Any, ...]] = {}
        self.other: list[tuple[str, tuple[Any, ...]]] = []
        self.committed = anyio.Event()
        self.error: BaseException | None = None

    def __bool__(self) -> bool:
        return bool(
            self.new_runs
            or self.new_tasks
            or self.tasks
            or self.runs
            or self.tries
            or self.checkpoints
            or self.events
            or self.logs
            or self.cursors
            or self.other
        )

    def size(self) -> int:
        return (
            len(self.new_runs)
            + len(self.new_tasks)
            + len(self.tasks)
            + len(self.runs)
            + len(self.tries)
            + len(self.checkpoints)
            + len(self.events)
            + len(self.logs)
            + len(self.cursors)
            + len(self.other)
        )


class StoreWriter:
    """Owns the write connection; run ``serve()`` in a task group."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._pending = _Batch()
        self._in_flight: _Batch | None = None
        self._wakeup = anyio.Event()
        self.healthy = True
        self.last_error: str | None = None
        self.commits = 0
        self.rows_written = 0
        self._loop_thread = threading.get_ident()
        self.on_commit: Callable[[int, float], None] | None = None  # metrics: (rows, seconds)
        self._loop = asyncio.get_running_loop()
        self._thread_logs: deque[tuple[Any, ...]] = deque()

    # -- recording changes (no waiting) -------------------------------------------------------------

    def insert_run(self, row: tuple[Any, ...], task_ids: Sequence[str]) -> None:
        batch = self._pending
        batch.new_runs.append(row)
        run_id = row[0]
        batch.new_tasks.extend((run_id, tid, "pending") for tid in task_ids)
        self._wakeup.set()

    def ensure_tasks(self, run_id: str, task_ids: Sequence[str]) -> None:
        self._pending.new_tasks.extend((run_id, tid, "pending") for tid in task_ids)
        self._wakeup.set()

    def update_run(
        self,
        run_id: str,
        state: str,
        started_at: float | None,
        finished_at: float | None,
        note: str | None,
    ) -> None:
        self._pending.runs[run_id] = (state, started_at, finished_at, note, run_id)
        self._wakeup.set()

    def update_task(
        self,
        run_id: str,
        task_id: str,
        state: str,
        try_number: int,
        queued_at: float | None,
        started_at: float | None,
        finished_at: float | None,
        next_try_at: float | None,
        result: bytes | None,
        error: str | None,
        traceback: str | None,
        try_offset: int = 0,
    ) -> None:
        self._pending.tasks[(run_id, task_id)] = (
            state,
            try_number,
            queued_at,
            started_at,
            finished_at,
            next_try_at,
            result,
            error,
            traceback,
            try_offset,
            run_id,
            task_id,
        )
        self._wakeup.set()

    def record_try(
        self,
        run_id: str,
        task_id: str,
        try_number: int,
        state: str,
        started_at: float | None,
        finished_at: float | None,
        error: str | None,
        traceback: str | None,
    ) -> None:
        self._pending.tries[(run_id, task_id, try_number)] = (
            run_id,
            task_id,
            try_number,
            state,
            started_at,
            finished_at,
            error,
            traceback,
        )
        self._wakeup.set()

    def save_checkpoint(self, run_id: str, task_id: str, value: bytes) -> None:
        self._pending.checkpoints[(run_id, task_id)] = (value, run_id, task_id)
        self._wakeup.set()

    def record_event(
        self,
        event_id: str,
        dag_id: str,
        source: str,
        received_at: float,
        outcome: str,
        run_id: str | None,
        error: str | None,
        payload: bytes | None,
    ) -> None:
        self._pending.events.append(
            (event_id, dag_id, source, received_at, outcome, run_id, error, payload)
        )
        self._wakeup.set()

    def record_log(
        self,
        run_id: str,
        task_id: str,
        try_number: int,
        line_no: int,
        ts: float,
        level: str,
        message: str,
    ) -> None:
        """Safe to call from any thread (sync tasks log from worker threads)."""
        row = (run_id, task_id, try_number, line_no, ts, level, message)
        if threading.get_ident() == self._loop_thread:
            self._pending.logs.append(row)
            self._wakeup.set()
            return
        self._thread_logs.append(row)  # deque.append is thread-safe
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wakeup_from_thread)
            except RuntimeError:  # loop closed: the rows are drained at shutdown
                pass

    def _wakeup_from_thread(self) -> None:
        self._wakeup.set()

    def _take_thread_logs(self, batch: _Batch) -> None:
        while self._thread_logs:
            batch.logs.append(self._thread_logs.popleft())

    def save_cursor(self, sensor_id: str, value: bytes, updated_at: float) -> None:
        self._pending.cursors[sensor_id] = (sensor_id, value, updated_at)
        self._wakeup.set()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._pending.other.append((sql, params))
        self._wakeup.set()

    # -- waiting for durability ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Return once every change recorded before this call is committed."""
        batch: _Batch | None = self._pending
        if not batch:
            batch = self._in_flight
            if batch is None:
                return
        else:
            self._wakeup.set()
        await batch.committed.wait()
        if batch.error is not None:
            raise StoreError(f"state store write failed: {batch.error}") from batch.error

    @property
    def pending(self) -> int:
        return self._pending.size()

    # -- the writer loop ----------------------------------------------------------------------------

    async def serve(self) -> NoReturn:
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            batch = self._pending
            self._take_thread_logs(batch)
            if not batch:
                continue
            self._pending = _Batch()
            self._in_flight = batch
            await self._commit_with_retry(batch)
            self._in_flight = None
            batch.committed.set()

    async def drain(self) -> None:
        """Commit what is left (at shutdown, after ``serve`` was cancelled): the batch whose commit
        was interrupted, then the pending one."""
        self._take_thread_logs(self._pending)
        for batch in (self._in_flight, self._pending):
            if batch is None or batch.committed.is_set():
                continue
            if batch:
                try:
                    await self._commit(batch)
                except (sqlite3.Error, ValueError) as exc:
                    batch.error = exc
                    log.error(
                        "state store: final write of %d changes failed: %s", batch.size(), exc
                    )
            batch.committed.set()
        self._in_flight = None
        self._pending = _Batch()

    async def _commit_with_retry(self, batch: _Batch) -> None:
        delays = _RETRY.delays()
        while True:
            try:
                with anyio.CancelScope(shield=True):  # a commit, once begun, always completes
                    await self._commit(batch)
            except sqlite3.OperationalError as exc:
                # disk full, read-only file, locked by another process: keep the batch and try again
                delay = next(delays)
                self.healthy = False
                self.last_error = str(exc)
                log.error(
                    "state store write failed (%s); holding %d changes, retrying in %.2fs",
                    exc,
                    batch.size(),
                    delay,
                )
                await anyio.sleep(delay)
                continue
            except (sqlite3.Error, ValueError) as exc:
                log.exception("state store rejected a batch of %d changes", batch.size())
                batch.error = exc
                self.last_error = str(exc)
                return
            if not self.healthy:
                log.warning("state store writes recovered")
            self.healthy = True
            self.last_error = None
            return

    async def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        statements = _statements(batch)
        run_in_thread = getattr(self._conn, "_execute", None)
        raw = getattr(self._conn, "_connection", None)
        if run_in_thread is not None and raw is not None:
            # One hop to aiosqlite's thread for the whole transaction instead of one per statement:
            # this is most of the per-commit cost. (aiosqlite is pinned; the fallback below keeps
            # working should these internals change.)
            await run_in_thread(_apply_in_thread, raw, statements)
        else:
            await self._commit_statement_by_statement(statements)
        self.commits += 1
        self.rows_written += batch.size()
        if self.on_commit is not None:
            self.on_commit(batch.size(), time.perf_counter() - started)

    async def _commit_statement_by_statement(self, statements: list[tuple[str, Any, bool]]) -> None:
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, many in statements:
                if many:
                    await conn.executemany(sql, params)
                else:
                    await conn.execute(sql, params)
            await conn.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):
                if conn.in_transaction:
                    await conn.rollback()
            raise


def _statements(batch: _Batch) -> list[tuple[str, Any, bool]]:
    """The batch as (sql, parameters, executemany?) in dependency order: runs before their tasks."""
    out: list[tuple[str, Any, bool]] = []
    for sql, rows in (
        (q.INSERT_RUN, batch.new_runs),
        (q.INSERT_TASK, batch.new_tasks),
        (q.UPDATE_TASK, list(batch.tasks.values())),
        (q.UPDATE_RUN, list(batch.runs.values())),
        (q.UPSERT_TRY, list(batch.tries.values())),
        (q.UPDATE_CHECKPOINT, list(batch.checkpoints.values())),
        (q.UPSERT_EVENT, batch.events),
        (q.INSERT_LOG, batch.logs),
        (q.UPSERT_CURSOR, list(batch.cursors.values())),
    ):
        if rows:
            out.append((sql, rows, True))
    out.extend((sql, params, False) for sql, params in batch.other)
    return out


def _apply_in_thread(raw: sqlite3.Connection, statements: list[tuple[str, Any, bool]]) -> None:
    raw.execute("BEGIN IMMEDIATE")
    try:
        for sql, params, many in statements:
            if many:
                raw.executemany(sql, params)
            else:
                raw.execute(sql, params)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:  # SQLite already rolled back on some errors (SQLITE_FULL)
            raw.execute("ROLLBACK")
        raise
