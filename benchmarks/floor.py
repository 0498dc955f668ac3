"""The floor: the same workloads on plain asyncio + stdlib sqlite3, as a lower bound for Podium.

A deliberately minimal runner, not a competitor: one asyncio task per node, an ``asyncio.Future`` per
node for its result, an ``asyncio.Semaphore`` for the live-task limit (shared by all runs of a
measurement, like Podium's ``max_tasks``), and every state transition written to a SQLite file in WAL
mode with ``synchronous=NORMAL`` (Podium's default durability). Per task it records ``queued`` (inputs
ready), ``running`` and ``success`` with the JSON result; per run ``running`` and ``success``.

Two commit policies:
- ``batch100``: rows are buffered and committed 100 at a time, plus a final commit when a run ends
  (a run is reported finished only once everything it wrote is committed);
- ``pertask``: one commit per task, when it succeeds (holding its three rows), plus one per run end.

What it leaves out, and Podium does not: the write-ahead ordering guarantees (a task starts before its
``running`` row is committed; a downstream task starts before its input is committed), retries, timeouts,
cancellation, failure states, trigger rules, reading results back from the store, restart recovery,
thread hops (sqlite3 is called directly on the event loop thread) and a public API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from typing import Any

from .workloads import Node, Outcome, Ref, Workload

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_instances (
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    result      BLOB,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
"""

UPSERT_RUN = (
    "INSERT INTO runs VALUES (?, ?, ?) ON CONFLICT (run_id) "
    "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)
UPSERT_TASK = (
    "INSERT INTO task_instances VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, task_id) "
    "DO UPDATE SET state = excluded.state, result = excluded.result, updated_at = excluded.updated_at"
)

POLICIES = ("batch100", "pertask")


class FloorStore:
    """Buffered state rows over one sqlite3 connection; ``batch_rows=None`` leaves commits to the caller."""

    def __init__(self, path: str | os.PathLike[str], *, batch_rows: int | None) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(SCHEMA)
        self.batch_rows = batch_rows
        self._runs: list[tuple[Any, ...]] = []
        self._tasks: list[tuple[Any, ...]] = []
        self.commits = 0
        self.rows_written = 0

    def run(self, run_id: str, state: str) -> None:
        self._runs.append((run_id, state, time.time()))
        self._maybe_commit()

    def task(self, run_id: str, task_id: str, state: str, result: str | None = None) -> None:
        self._tasks.append((run_id, task_id, state, result, time.time()))
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        if self.batch_rows is not None and len(self._runs) + len(self._tasks) >= self.batch_rows:
            self.commit()

    def commit(self) -> None:
        if not self._runs and not self._tasks:
            return
        conn = self.conn
        conn.execute("BEGIN")
        if self._runs:
            conn.executemany(UPSERT_RUN, self._runs)
        if self._tasks:
            conn.executemany(UPSERT_TASK, self._tasks)
        conn.execute("COMMIT")
        self.commits += 1
        self.rows_written += len(self._runs) + len(self._tasks)
        self._runs.clear()
        self._tasks.clear()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.conn.close()


async def run_once(
    wl: Workload, store: FloorStore, limit: asyncio.Semaphore, run_id: str, *, per_task: bool
) -> Any:
    """One run of the workload's graph; returns the sink's result once the run's rows are committed."""
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[Any]] = {n.task_id: loop.create_future() for n in wl.nodes}
    store.run(run_id, "running")

    async def resolve(value: Any) -> Any:
        if isinstance(value, Ref):
            return await done[value.task_id]
        if isinstance(value, list):
            return [await resolve(v) for v in value]
        return value

    async def one_try(node: Node, task_id: str, args: list[Any]) -> Any:
        store.task(run_id, task_id, "queued")
        async with limit:
            store.task(run_id, task_id, "running")
            value = await node.fn(*args)
            store.task(run_id, task_id, "success", json.dumps(value))
            if per_task:
                store.commit()
        return value

    async def execute(node: Node) -> None:
        args = [await resolve(a) for a in node.args]
        if node.mapped:  # one instance per element of the first argument, results in order
            instances = (
                one_try(node, f"{node.task_id}[{i}]", [item, *args[1:]])
                for i, item in enumerate(args[0])
            )
            value: Any = list(await asyncio.gather(*instances))
        else:
            value = await one_try(node, node.task_id, args)
        done[node.task_id].set_result(value)

    await asyncio.gather(*(execute(node) for node in wl.nodes))
    store.run(run_id, "success")
    store.commit()
    return done[wl.sink].result() if wl.sink is not None else None


async def measure(wl: Workload, db_path: str | os.PathLike[str], *, policy: str) -> Outcome:
    """One measurement on a fresh state file: ``wl.runs`` runs, single/sequential/concurrent."""
    if policy not in POLICIES:
        raise ValueError(f"unknown floor policy {policy!r} (one of {', '.join(POLICIES)})")
    per_task = policy == "pertask"
    if wl.probe is not None:
        wl.probe.reset()
    store = FloorStore(db_path, batch_rows=None if per_task else 100)
    try:
        limit = asyncio.Semaphore(wl.limit)
        run_ids = [f"run-{i}" for i in range(wl.runs)]
        t0 = time.perf_counter()
        if wl.mode == "concurrent":
            results = list(
                await asyncio.gather(
                    *(run_once(wl, store, limit, r, per_task=per_task) for r in run_ids)
                )
            )
        else:
            results = [await run_once(wl, store, limit, r, per_task=per_task) for r in run_ids]
        wall = time.perf_counter() - t0
    finally:
        store.close()
    extra: dict[str, Any] = {"commits": store.commits, "rows_written": store.rows_written}
    if wl.probe is not None:
        extra["peak_live"] = wl.probe.peak
    return Outcome(
        wall=wall, run_states=["success"] * len(results), sink_results=results, extra=extra
    )
