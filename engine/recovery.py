"""Recovery operations: resume a paused run, rerun tasks, backfill a date range, pause and unpause
a DAG, cancel a task. Each is durable, safe to repeat, and recorded in the ``operations`` table.

``RecoveryOps`` is a mixin of ``Engine``: the operations need the engine's in-memory view of the
runs it serves, so they live next to it rather than behind the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio

from . import serialization
from .dag import DAG
from .errors import DAGError, PodiumError
from .models import Run
from .states import RunState, TaskState
from .store import queries as q

if TYPE_CHECKING:
    from .engine import Engine
    from .run_state import ActiveRun

log = logging.getLogger("podium.recovery")

BACKFILL_PRIORITY = -1000  # backfill tasks yield to live runs' tasks in the ready queue


@dataclass
class BackfillResult:
    dag_id: str
    slots: list[float]
    created: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [run_id for run_id, state in self.states.items() if state != "success"]


class RecoveryOps:
    """Operator actions on runs and DAGs (mixed into ``Engine``)."""

    async def pause_dag(self, dag_id: str, *, actor: str = "api") -> None:
        """Stop starting runs and tasks of ``dag_id``; its events are still stored as queued runs."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        eng._dag(dag_id)
        eng._paused.add(dag_id)
        eng._ready.set_capacity(("dag", dag_id), 0)
        eng._store.writer.execute(q.SET_PAUSED, (1, dag_id))
        eng._record_operation(actor, "pause", dag_id=dag_id)
        await eng._store.writer.flush()

    async def unpause_dag(
        self, dag_id: str, *, skip_queued: bool = False, actor: str = "api"
    ) -> list[str]:
        """Start the DAG's queued runs again, in order, or cancel them with ``skip_queued``.

        Returns the ids of the runs that were skipped."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        dag = eng._dag(dag_id)
        eng._paused.discard(dag_id)
        eng._ready.set_capacity(("dag", dag_id), _task_capacity(dag))
        eng._store.writer.execute(q.SET_PAUSED, (0, dag_id))
        skipped: list[str] = []
        if skip_queued:
            waiting: Iterable[ActiveRun] = eng._waiting_runs.pop(dag_id, ())
            for run in waiting:
                eng._cancel_queued_run(run, "skipped when the DAG was unpaused")
                skipped.append(run.run_id)
        eng._record_operation(
            actor,
            "unpause",
            dag_id=dag_id,
            details={"skip_queued": skip_queued, "skipped": skipped},
        )
        eng._admit_waiting(dag_id)
        eng._wake_dispatcher()
        await eng._store.writer.flush()
        return skipped

    async def cancel_task(
        self, run_id: str, task_id: str, *, reason: str = "cancelled by user",
        actor: str = "api",
    ) -> Run:  # fmt: skip
        """Cancel one task of a run; downstream tasks follow their trigger rules."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        run = eng._served_run(run_id)
        rec = run.tasks.get(task_id)
        if rec is None:
            raise PodiumError(f"run {run_id} has no task {task_id!r}")
        eng._record_operation(
            actor, "cancel_task", run=run, details={"task_id": task_id, "reason": reason}
        )
        if rec.state.finished:
            return await eng.get_run(run_id)
        if rec.scope is not None:
            rec.cancel_reason = reason
            settled = rec.settled = rec.settled or anyio.Event()
            rec.scope.cancel()
            await settled.wait()  # the try records itself as it unwinds
        else:
            eng._ready.remove(lambda payload: payload[1] is rec)
            if run.progress.states[task_id] in (TaskState.QUEUED, TaskState.PAUSED):
                run.progress.states[task_id] = TaskState.PENDING
            eng._finish_task(run, rec, TaskState.CANCELLED, error=reason)
        await eng._store.writer.flush()
        return await eng.get_run(run_id)

    async def resume(self, run_id: str, *, actor: str = "api") -> Run:
        """Continue a run paused by a failure (``on_failure="pause"``): the failed tasks run again
        with a fresh retry budget, then their downstream tasks."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        run = eng._active.get(run_id)
        if run is None or run.state is not RunState.PAUSED:
            snapshot = await eng.get_run(run_id)
            raise PodiumError(f"run {run_id} is {snapshot.state.value}, not paused")
        eng._record_operation(actor, "resume", run=run)
        eng._resume_in_memory(run)
        await eng._store.writer.flush()
        return run.snapshot(eng)

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
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        active = eng._active.get(run_id)
        if active is not None:
            if (
                active.state is RunState.PAUSED
                and (failed_only or tasks is None)
                and not downstream
            ):
                eng._record_operation(actor, "rerun", run=active, details={"failed_only": True})
                eng._resume_in_memory(active)
                await eng._store.writer.flush()
                return active.snapshot(eng)
            raise PodiumError(
                f"run {run_id} is {active.state.value}; rerun a finished run, resume a paused one, "
                "or cancel it first"
            )
        snapshot = await eng.get_run(run_id)
        dag = eng._dag(snapshot.dag_id)
        chosen = choose_tasks(dag, snapshot, tasks, failed_only=failed_only, downstream=downstream)
        if not chosen:
            return snapshot
        writer = eng._store.writer
        for tid in chosen:
            writer.execute(q.RESET_TASK, (run_id, tid))
        writer.update_run(run_id, RunState.QUEUED.value, snapshot.started_at, None, None)
        eng._record_operation(
            actor, "rerun", dag_id=dag.dag_id, run_id=run_id,
            details={"tasks": sorted(chosen), "failed_only": failed_only, "downstream": downstream},
        )  # fmt: skip
        await writer.flush()
        row = await eng._store.find_run(dag.dag_id, snapshot.key)
        await eng._adopt(row, recovering=False)
        await writer.flush()
        return await eng.get_run(run_id)

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
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._check_open()
        dag = eng._dag(dag_id)
        if max_active is not None and (not isinstance(max_active, int) or max_active < 1):
            raise PodiumError(f"max_active must be an int >= 1 or None, got {max_active!r}")
        schedule = timer_of(dag)
        slots = backfill_slots(schedule, start, end)
        result = BackfillResult(dag_id, slots)
        eng._record_operation(
            actor, "backfill", dag_id=dag_id,
            details={"start": str(start), "end": str(end), "slots": len(slots),
                     "missing_only": missing_only, "max_active": max_active},
        )  # fmt: skip
        limit = anyio.CapacityLimiter(max_active) if max_active else None
        done = 0

        async def one(slot: float) -> None:
            nonlocal done
            from sensors.timer_source import timer_event_id

            key = timer_event_id(dag_id, slot)
            if limit is not None:
                await limit.acquire()
            try:
                row = await eng._store.find_run(dag_id, key)
                if row is None:
                    run = eng.new_run(
                        dag_id, dag.validate_params({}), key=key, logical_date=slot,
                        event={"backfill": True}, trigger="backfill",
                    )  # fmt: skip
                    await eng._store.writer.flush()
                    eng.activate(run)
                    result.created.append(run.run_id)
                    final = await eng.wait_run(run.run_id)
                elif not missing_only and row[4] in ("failed", "cancelled"):
                    await eng.rerun(row[1], failed_only=True, actor=actor)
                    result.rerun.append(row[1])
                    final = await eng.wait_run(row[1])
                else:
                    result.skipped.append(row[1])
                    final = await eng.get_run(row[1])
                    if not final.finished:
                        final = await eng.wait_run(row[1])
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

    async def operations(
        self, *, run_id: str | None = None, dag_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Recorded operator actions, newest first (who, when, what)."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        rows = await eng._store.operations(run_id=run_id, dag_id=dag_id, limit=limit)
        return [
            {
                "id": r[0],
                "ts": r[1],
                "actor": r[2],
                "operation": r[3],
                "dag_id": r[4],
                "run_id": r[5],
                "details": serialization.loads(r[6]),
            }
            for r in rows
        ]

    # -- helpers ------------------------------------------------------------------------------------

    def _served_run(self, run_id: str) -> ActiveRun:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        run = eng._active.get(run_id)
        if run is None:
            raise PodiumError(f"run {run_id} is not running on this engine")
        return run

    def _resume_in_memory(self, run: ActiveRun) -> None:
        """Failed-and-paused tasks become pending with a fresh retry budget; paused ones pending."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        for tid, rec in run.tasks.items():
            if run.progress.states[tid] is TaskState.PAUSED:  # the failure that paused the run
                run.progress.states[tid] = TaskState.PENDING
                rec.state = TaskState.PENDING
                rec.try_offset = rec.try_number
                rec.error = rec.traceback = None
                rec.finished_at = None
                eng._write_task(run, rec)
            elif rec.state is TaskState.PAUSED:
                rec.state = TaskState.PENDING
                eng._write_task(run, rec)
        run.state = RunState.RUNNING
        run.note = None
        eng._write_run(run)
        eng._start_run(run)

    def _pause_on_failure(self, run: ActiveRun, tid: str) -> None:
        """Instead of failing the downstream tasks, pause them and the run until an operator acts."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        run.progress.states[tid] = TaskState.PAUSED  # not final: downstream tasks keep waiting
        stack = list(run.progress.spec.downstream[tid])
        while stack:
            child = stack.pop()
            rec = run.tasks[child]
            if (
                run.progress.states[child] is TaskState.PENDING
                and rec.state is not TaskState.PAUSED
            ):
                rec.state = TaskState.PAUSED
                eng._write_task(run, rec)
                stack.extend(run.progress.spec.downstream[child])
        run.state = RunState.PAUSED
        run.note = f"paused: task {tid} failed; resume with `podium resume {run.run_id}`"
        eng._write_run(run)
        log.warning("run %s of %s paused: task %s failed", run.run_id, run.dag.dag_id, tid)

    def _cancel_queued_run(self, run: ActiveRun, reason: str) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        now = eng.clock.now()
        run.cancelling = True
        run.note = reason
        for rec in run.tasks.values():
            if not rec.state.finished:
                rec.state = TaskState.CANCELLED
                rec.finished_at = now
                rec.error = reason
                eng._write_task(run, rec)
        eng._finish_cancelled(run)

    def _record_operation(
        self,
        actor: str,
        operation: str,
        *,
        run: ActiveRun | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        if run is not None:
            dag_id, run_id = run.dag.dag_id, run.run_id
        eng._store.writer.execute(
            q.INSERT_OPERATION,
            (eng.clock.now(), actor, operation, dag_id, run_id, serialization.dumps(details or {})),
        )


def _task_capacity(dag: DAG) -> int:
    return dag.max_active_tasks if dag.max_active_tasks is not None else UNLIMITED


UNLIMITED = 1 << 30


def timer_of(dag: DAG) -> Any:
    from sensors.timers import Cron, Every

    for trig in dag.triggers:
        if isinstance(trig, (Cron, Every)):
            return trig
    raise DAGError(f"DAG {dag.dag_id!r} has no Cron or Every trigger to backfill")


def backfill_slots(
    schedule: Any, start: str | date | datetime, end: str | date | datetime
) -> list[float]:
    """Slots of ``schedule`` from the start of ``start`` to the end of ``end`` (dates are whole days
    in the schedule's time zone; datetimes without a zone are in it too)."""
    zone = ZoneInfo(getattr(schedule, "tz", "UTC"))
    first = _instant(start, zone, end_of_day=False)
    last = _instant(end, zone, end_of_day=True)
    if last < first:
        raise PodiumError(f"backfill end {end} is before start {start}")
    slots: list[float] = schedule.slots_between(first, last)
    return slots


def _instant(value: str | date | datetime, zone: ZoneInfo, *, end_of_day: bool) -> float:
    try:
        return _instant_unchecked(value, zone, end_of_day=end_of_day)
    except (OverflowError, ValueError, OSError):
        raise PodiumError(f"date out of range: {value!r}") from None


def _instant_unchecked(value: str | date | datetime, zone: ZoneInfo, *, end_of_day: bool) -> float:
    if isinstance(value, str):
        try:
            value = (
                datetime.fromisoformat(value)
                if "T" in value or " " in value
                else date.fromisoformat(value)
            )
        except ValueError:
            raise PodiumError(f"not a date or datetime: {value!r} (use YYYY-MM-DD)") from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=zone)
        return moment.timestamp()
    day_start = datetime.combine(value, time(0), tzinfo=zone)
    if not end_of_day:
        return day_start.timestamp()
    next_day = datetime.combine(value + timedelta(days=1), time(0), tzinfo=zone)
    return next_day.timestamp() - 1e-6


def choose_tasks(
    dag: DAG,
    run: Run,
    tasks: Iterable[str] | None,
    *,
    failed_only: bool,
    downstream: bool,
) -> set[str]:
    """The task instances a rerun clears."""
    if tasks:
        chosen = set(tasks)
        unknown = chosen - set(dag.tasks)
        if unknown:
            raise PodiumError(f"DAG {dag.dag_id!r} has no task(s) {', '.join(sorted(unknown))}")
    else:
        chosen = set(dag.tasks)
    if failed_only:
        bad = {TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED, TaskState.PAUSED}
        chosen = {t for t in chosen if t not in run.tasks or run.tasks[t].state in bad}
    if downstream:
        stack = list(chosen)
        while stack:
            for child in dag.tasks[stack.pop()].downstream:
                if child not in chosen:
                    chosen.add(child)
                    stack.append(child)
    return chosen
