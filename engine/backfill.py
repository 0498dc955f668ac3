"""Backfill arithmetic, pure: the schedule slots in a date range, and which tasks a rerun clears."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sensors.base import Schedule

from .dag import DAG
from .errors import DAGError, PodiumError
from .models import Run
from .run_state import split_instance_id
from .states import TaskState


@dataclass
class BackfillResult:
    """What a backfill did: one entry per schedule slot, by what happened to its run."""

    dag_id: str
    slots: list[float]
    created: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [run_id for run_id, state in self.states.items() if state != "success"]


def timer_of(dag: DAG) -> Schedule:
    """The schedule a backfill walks: the DAG's first timer trigger's."""
    if dag.schedule is None:
        raise DAGError(f"DAG {dag.dag_id!r} has no Cron or Every trigger to backfill")
    return dag.schedule


def backfill_slots(
    schedule: Schedule, start: str | date | datetime, end: str | date | datetime
) -> list[float]:
    """Slots of ``schedule`` from the start of ``start`` to the end of ``end`` (dates are whole days
    in the schedule's time zone; datetimes without a zone are in it too)."""
    zone = ZoneInfo(schedule.tz)
    first = _instant(start, zone, end_of_day=False)
    last = _instant(end, zone, end_of_day=True)
    if last < first:
        raise PodiumError(f"backfill end {end} is before start {start}")
    return schedule.slots_between(first, last)


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
        unknown = {t for t in chosen if split_instance_id(t)[0] not in dag.tasks}
        if unknown:
            raise PodiumError(f"DAG {dag.dag_id!r} has no task(s) {', '.join(sorted(unknown))}")
        # an instance of a mapped task runs again through its task, which is expanded again
        chosen |= {split_instance_id(t)[0] for t in chosen}
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
    # a mapped task's instances: with failed_only, only the failed ones run again (the others keep
    # their results); else all of them
    bad = {TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED, TaskState.PAUSED}
    for tid, instance in run.tasks.items():
        parent, index = split_instance_id(tid)
        if index >= 0 and parent in chosen and (not failed_only or instance.state in bad):
            chosen.add(tid)
    return chosen
