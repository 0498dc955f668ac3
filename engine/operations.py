"""Operator actions: cancel a run or a task, resume a paused run, rerun tasks, backfill a date
range, pause and unpause a DAG. Each is durable, safe to repeat, and recorded in ``operations``.

``Operations`` works on the ``RunBook`` (which runs are served) and the ``RunDriver`` (how a run
moves); ``Engine`` exposes its methods as its public API, and ``RequestPoller`` runs them for other
processes (the CLI) through an explicit table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import anyio

from . import serialization
from .backfill import BackfillResult, backfill_slots, choose_tasks, timer_of
from .clock import Clock
from .dag import DAG
from .dispatcher import Dispatcher
from .errors import PodiumError
from .models import Run, RunSource
from .recorder import Recorder
from .run_driver import RunDriver
from .run_state import ActiveRun
from .runbook import RunBook
from .states import RunState
from .store import Store
from .store import queries as q

log = logging.getLogger("podium.recovery")

UNLIMITED = 1 << 30


def task_capacity(dag: DAG) -> int:
    """The DAG's limit on running tasks as a ready-queue capacity."""
    return dag.max_active_tasks if dag.max_active_tasks is not None else UNLIMITED


class Operations:
    def __init__(
        self,
        *,
        book: RunBook,
        driver: RunDriver,
        dispatcher: Dispatcher,
        recorder: Recorder,
        store: Store,
        clock: Clock,
        runs: RunSource,
        check_open: Callable[[], None],
    ) -> None:
        self._book = book
        self._driver = driver
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._store = store
        self._clock = clock
        self._runs = runs
        self._check_open = check_open

    def _record(self, actor: str, operation: str, **where: Any) -> None:
        self._recorder.operation(actor, operation, self._clock.now(), **where)

    # -- runs ---------------------------------------------------------------------------------------

    async def cancel(
        self, run_id: str, reason: str = "cancelled by user", *, actor: str = "api"
    ) -> Run:
        """Cancel a run: waiting tasks become ``cancelled``; running ones are cancelled through their
        cancel scope (their cleanup code runs) and recorded with ``reason``."""
        self._check_open()
        run = self._book.get(run_id)
        if run is None:
            snapshot = await self._runs.get_run(run_id)
            if snapshot.finished:
                return snapshot
            raise PodiumError(f"run {run_id!r} is not served by this engine")
        if not run.cancelling and not run.finishing:
            self._record(actor, "cancel", run=run, details={"reason": reason})
            self._book.withdraw(run)
            self._driver.cancel(run, reason)
        await run.done.wait()
        return await self._runs.get_run(run_id)

    async def cancel_task(
        self, run_id: str, task_id: str, *, reason: str = "cancelled by user", actor: str = "api"
    ) -> Run:
        """Cancel one task of a run; downstream tasks follow their trigger rules."""
        self._check_open()
        run = self._served(run_id)
        rec = run.tasks.get(task_id)
        if rec is None:
            raise PodiumError(f"run {run_id} has no task {task_id!r}")
        self._record(actor, "cancel_task", run=run, details={"task_id": task_id, "reason": reason})
        if not rec.state.finished:
            await self._driver.cancel_task(run, rec, reason)
        await self._recorder.flush()
        return await self._runs.get_run(run_id)

    async def resume(self, run_id: str, *, actor: str = "api") -> Run:
        """Continue a run paused by a failure (``on_failure="pause"``): the failed tasks run again
        with a fresh retry budget, then their downstream tasks."""
        self._check_open()
        run = self._book.get(run_id)
        if run is None or run.state is not RunState.PAUSED:
            snapshot = await self._runs.get_run(run_id)
            raise PodiumError(f"run {run_id} is {snapshot.state.value}, not paused")
        self._record(actor, "resume", run=run)
        self._driver.resume(run)
        await self._recorder.flush()
        return run.snapshot(self._runs)

    async def rerun(
        self,
        run_id: str,
        tasks: Sequence[str] | None = None,
        *,
        failed_only: bool = False,
        downstream: bool = False,
        actor: str = "api",
    ) -> Run:
        """Run some task instances of a run again, in the same run, reusing the upstream results
        that succeeded. Chooses ``tasks`` (or all), narrowed to failed ones with ``failed_only``,
        widened to everything downstream of them with ``downstream``. Tries keep their history;
        the retry budget starts afresh."""
        self._check_open()
        active = self._book.get(run_id)
        if active is not None:
            if (
                active.state is RunState.PAUSED
                and (failed_only or tasks is None)
                and not downstream
            ):
                self._record(actor, "rerun", run=active, details={"failed_only": True})
                self._driver.resume(active)
                await self._recorder.flush()
                return active.snapshot(self._runs)
            raise PodiumError(
                f"run {run_id} is {active.state.value}; rerun a finished run, resume a paused one, "
                "or cancel it first"
            )
        snapshot = await self._runs.get_run(run_id)
        dag = self._book.dag(snapshot.dag_id)
        chosen = choose_tasks(dag, snapshot, tasks, failed_only=failed_only, downstream=downstream)
        if not chosen:
            return snapshot
        for tid in chosen:
            self._recorder.execute(q.RESET_TASK, (run_id, tid))
        self._recorder.execute(
            q.UPDATE_RUN, (RunState.QUEUED.value, snapshot.started_at, None, None, run_id)
        )
        self._record(
            actor, "rerun", dag_id=dag.dag_id, run_id=run_id,
            details={"tasks": sorted(chosen), "failed_only": failed_only, "downstream": downstream},
        )  # fmt: skip
        await self._recorder.flush()
        row = await self._store.find_run(dag.dag_id, snapshot.key)
        assert row is not None
        await self._book.adopt(row, recovering=False)
        await self._recorder.flush()
        return await self._runs.get_run(run_id)

    async def backfill(
        self,
        dag_id: str,
        start: str | date | datetime,
        end: str | date | datetime,
        *,
        missing_only: bool = False,
        max_active: int | None = None,
        actor: str = "api",
        on_progress: Callable[[int, int], None] | None = None,
    ) -> BackfillResult:
        """One run per schedule slot of the DAG's timer between ``start`` and ``end`` (inclusive,
        dates in the DAG's time zone), keyed like the live timer's runs, so running it twice — or
        after an interruption — creates no duplicates. Existing failed runs are rerun unless
        ``missing_only``. At most ``max_active`` backfill runs are unfinished at a time; their tasks
        yield to live runs' tasks. Returns when every slot's run is finished."""
        from sensors.timer_source import timer_event_id

        self._check_open()
        dag = self._book.dag(dag_id)
        if max_active is not None and (not isinstance(max_active, int) or max_active < 1):
            raise PodiumError(f"max_active must be an int >= 1 or None, got {max_active!r}")
        slots = backfill_slots(timer_of(dag), start, end)
        result = BackfillResult(dag_id, slots)
        self._record(
            actor, "backfill", dag_id=dag_id,
            details={"start": str(start), "end": str(end), "slots": len(slots),
                     "missing_only": missing_only, "max_active": max_active},
        )  # fmt: skip
        limit = anyio.CapacityLimiter(max_active) if max_active else None
        done = 0

        async def one(slot: float) -> None:
            nonlocal done
            key = timer_event_id(dag_id, slot)
            if limit is not None:
                await limit.acquire()
            try:
                row = await self._store.find_run(dag_id, key)
                if row is None:
                    run = self._book.create(
                        dag_id, dag.validate_params({}), key=key, logical_date=slot,
                        event={"backfill": True}, trigger="backfill",
                    )  # fmt: skip
                    await self._recorder.flush()
                    self._book.activate(run)
                    result.created.append(run.run_id)
                    final = await self._runs.wait_run(run.run_id, None)
                elif not missing_only and row.state in ("failed", "cancelled"):
                    await self.rerun(row.run_id, failed_only=True, actor=actor)
                    result.rerun.append(row.run_id)
                    final = await self._runs.wait_run(row.run_id, None)
                else:
                    result.skipped.append(row.run_id)
                    final = await self._runs.get_run(row.run_id)
                    if not final.finished:
                        final = await self._runs.wait_run(row.run_id, None)
                result.states[final.run_id] = final.state.value
            finally:
                if limit is not None:
                    limit.release()
                done += 1
                if on_progress is not None:
                    on_progress(done, len(slots))

        async with anyio.create_task_group() as tg:
            for slot in slots:
                tg.start_soon(one, slot)
        return result

    # -- DAGs ---------------------------------------------------------------------------------------

    async def pause_dag(self, dag_id: str, *, actor: str = "api") -> None:
        """Stop starting runs and tasks of ``dag_id``; its events are still stored as queued runs."""
        self._check_open()
        self._book.dag(dag_id)
        self._book.paused.add(dag_id)
        self._dispatcher.set_capacity(("dag", dag_id), 0)
        self._recorder.execute(q.SET_PAUSED, (1, dag_id))
        self._record(actor, "pause", dag_id=dag_id)
        await self._recorder.flush()

    async def unpause_dag(
        self, dag_id: str, *, skip_queued: bool = False, actor: str = "api"
    ) -> list[str]:
        """Start the DAG's queued runs again, in order, or cancel them with ``skip_queued``.

        Returns the ids of the runs that were skipped."""
        self._check_open()
        dag = self._book.dag(dag_id)
        self._book.paused.discard(dag_id)
        self._dispatcher.set_capacity(("dag", dag_id), task_capacity(dag))
        self._recorder.execute(q.SET_PAUSED, (0, dag_id))
        skipped: list[str] = []
        if skip_queued:
            for run in self._book.take_waiting(dag_id):
                self._driver.cancel(run, "skipped when the DAG was unpaused")
                skipped.append(run.run_id)
        self._record(
            actor,
            "unpause",
            dag_id=dag_id,
            details={"skip_queued": skip_queued, "skipped": skipped},
        )
        self._book.admit_waiting(dag_id)
        await self._recorder.flush()
        return skipped

    async def history(
        self, *, run_id: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Recorded operator actions, newest first (who, when, what)."""
        rows = await self._store.operations(run_id=run_id, dag_id=dag_id, limit=limit)
        return [{**r._asdict(), "details": serialization.loads(r.details)} for r in rows]

    def _served(self, run_id: str) -> ActiveRun:
        run = self._book.get(run_id)
        if run is None:
            raise PodiumError(f"run {run_id} is not running on this engine")
        return run
