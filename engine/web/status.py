"""Runs and tasks as the API returns them, and why a task is not running. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any
from urllib.parse import quote

from ..dag import DAG
from ..durations import format_duration
from ..models import Run, TaskInstance
from ..run_state import split_instance_id
from ..states import RunState, TaskState
from .fanout import MappedSummary, mapped_summaries
from .format import iso, last_line, preview, relative_text, utc_text


@dataclass(frozen=True, slots=True)
class Limits:
    """The engine's configured limits, for explaining waits."""

    max_tasks: int
    pools: Mapping[str, int] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()


def run_url(base: str, run_id: str) -> str:
    return f"{base}/runs/{quote(run_id, safe='')}"


def dag_url(base: str, dag_id: str) -> str:
    return f"{base}/dags/{quote(dag_id, safe='')}"


def asset_url(base: str, uri: str) -> str:
    """The asset page: the URI is one path segment (``s3%3A%2F%2Flanding%2Fcrm%2F``)."""
    return f"{base}/assets/{quote(uri, safe='')}"


def task_order(run: Run, dag: DAG | None) -> list[str]:
    """The run's tasks in the DAG's topological order, a mapped task's instances right after it
    by index (stored order for DAGs no longer served)."""
    if dag is None:
        return list(run.tasks)
    others = [t for t in run.tasks if t not in dag.tasks]
    instances: dict[str, list[tuple[int, str]]] = {}
    for t in others:
        base, index = split_instance_id(t)
        if index >= 0 and base in dag.tasks:
            instances.setdefault(base, []).append((index, t))
    order: list[str] = []
    for t in dag.order:
        if t in run.tasks:
            order.append(t)
            order.extend(i for _, i in sorted(instances.get(t, ())))
    placed = set(order)
    return order + [t for t in others if t not in placed]


def waiting_reason(
    run: Run, task_id: str, dag: DAG | None, limits: Limits, now: float
) -> str | None:
    """Why the task is not running (None when it runs or is finished)."""
    ti = run.tasks.get(task_id)
    if ti is not None and ti.state is TaskState.UPSTREAM_FAILED and dag is not None:
        node = dag.tasks.get(task_id)
        bad = [
            u
            for u in (node.upstream if node is not None else ())
            if u in run.tasks
            and run.tasks[u].state
            in (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED)
        ]
        return f"did not run: upstream {', '.join(bad)} did not succeed" if bad else None
    if ti is None or ti.state.finished or ti.state is TaskState.RUNNING:
        return None
    if dag is not None and dag.dag_id in limits.paused:
        return f"DAG {dag.dag_id} is paused"
    if run.state is RunState.PAUSED or ti.state is TaskState.PAUSED:
        return "run is paused after a failure; resume it to continue"
    if run.state is RunState.QUEUED:
        if dag is not None and dag.max_active_runs is not None:
            return (
                f"run is queued: DAG {dag.dag_id} allows {dag.max_active_runs} active "
                f"run{'s' if dag.max_active_runs != 1 else ''} at a time"
            )
        return "run is queued, waiting to start"
    if run.state.finished:
        return f"run ended ({run.state.value}) before this task ran"
    if ti.state is TaskState.UP_FOR_RETRY:
        when = ""
        if ti.next_try_at is not None:
            when = f" at {utc_text(ti.next_try_at)} ({relative_text(ti.next_try_at, now)})"
        error = last_line(ti.error)
        return f"try {ti.try_number} failed{': ' + error if error else ''}; retry {ti.try_number + 1}{when}"
    if ti.state is TaskState.QUEUED:
        since = ""
        if ti.queued_at is not None:
            since = f" for {format_duration(now - ti.queued_at)}"
        return f"waiting for a free slot{since}: {', '.join(_limits_of(task_id, dag, limits))}"
    if dag is not None and task_id in dag.tasks:
        node = dag.tasks[task_id]
        open_ups = [u for u in node.upstream if u in run.tasks and not run.tasks[u].state.finished]
        if open_ups:
            return "waiting on upstream: " + ", ".join(open_ups)
        return f"upstream done; deciding by trigger rule {node.options.trigger_rule.value}"
    return "pending"


def _limits_of(task_id: str, dag: DAG | None, limits: Limits) -> list[str]:
    found: list[str] = []
    node = dag.tasks.get(task_id) if dag is not None else None
    if node is not None and node.options.pool is not None:
        slots = limits.pools.get(node.options.pool)
        found.append(f"pool {node.options.pool!r} ({slots} slot{'s' if slots != 1 else ''})")
    if node is not None and node.options.concurrency is not None:
        found.append(f"task concurrency {node.options.concurrency}")
    if dag is not None and dag.max_active_tasks is not None:
        found.append(f"DAG max_active_tasks {dag.max_active_tasks}")
    found.append(f"engine max_tasks {limits.max_tasks}")
    return found


def run_summary(run: Run, base: str) -> dict[str, Any]:
    """A run without its tasks (lists of runs)."""
    return {
        "run_id": run.run_id,
        "dag_id": run.dag_id,
        "key": run.key,
        "state": run.state.value,
        "params": run.params,
        "logical_date": run.logical_date.isoformat() if run.logical_date else None,
        "trigger": run.trigger,
        "event": run.event,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "created_at_iso": iso(run.created_at),
        "duration": run.duration,
        "note": run.note,
        "url": run_url(base, run.run_id),
    }


def task_json(
    ti: TaskInstance,
    *,
    upstream: tuple[str, ...],
    reason: str | None,
    now: float,
    results: str = "full",
) -> dict[str, Any]:
    end = (
        ti.finished_at
        if ti.finished_at is not None
        else (now if ti.state is TaskState.RUNNING else None)
    )
    out: dict[str, Any] = {
        "task_id": ti.task_id,
        "state": ti.state.value,
        "try_number": ti.try_number,
        "upstream": list(upstream),
        "queued_at": ti.queued_at,
        "started_at": ti.started_at,
        "finished_at": ti.finished_at,
        "next_try_at": ti.next_try_at,
        "duration": None if ti.started_at is None or end is None else end - ti.started_at,
        "error": ti.error,
        "error_line": last_line(ti.error),
        "traceback": ti.traceback,
        "waiting_reason": reason,
        "tries": [
            {
                "try_number": t.try_number,
                "state": t.state.value,
                "started_at": t.started_at,
                "finished_at": t.finished_at,
                "duration": t.duration,
                "error": t.error,
            }
            for t in ti.tries
        ],
    }
    if results == "preview":
        out["result_preview"] = preview(ti.result)
        out["checkpoint_preview"] = preview(ti.checkpoint)
    else:
        out["result"] = ti.result
        out["checkpoint"] = ti.checkpoint
    return out


def mapped_json(summary: MappedSummary) -> dict[str, Any]:
    """A mapped task's ``mapped``: how many instances, how many in each state (worst first),
    the worst of them, and their ids in index order."""
    return {
        "count": summary.count,
        "states": summary.counts,
        "worst": summary.worst,
        "instances": list(summary.instances),
    }


def run_json(
    run: Run,
    dag: DAG | None,
    limits: Limits,
    *,
    now: float,
    base: str,
    results: str = "full",
    instances: bool = True,
    include: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A run with its task instances (in DAG order) and their tries.

    A mapped task has ``mapped`` (``mapped_json``); each of its instances (``load[3]``) is a
    task of its own with ``instance_of`` and ``map_index``. ``instances=False`` leaves the
    instances out except those in ``include`` (the run page polls that way: a page of them)."""
    out = run_summary(run, base)
    out["finished"] = run.finished
    mapped = mapped_summaries(run, dag)
    tasks: dict[str, Any] = {}
    for tid in task_order(run, dag):
        base_id, index = split_instance_id(tid)
        if index >= 0 and not instances and tid not in include:
            continue
        node = dag.tasks.get(base_id) if dag is not None else None
        data = task_json(
            run.tasks[tid],
            upstream=node.upstream if node is not None and index < 0 else (),
            reason=waiting_reason(run, tid, dag, limits, now),
            now=now,
            results=results,
        )
        data["group"] = node.group if node is not None else None
        if index >= 0:
            data["instance_of"] = base_id
            data["map_index"] = index
        elif tid in mapped:
            data["mapped"] = mapped_json(mapped[tid])
        tasks[tid] = data
    out["tasks"] = tasks
    return out


def usual_durations(runs: list[Run]) -> dict[str, float]:
    """Median duration of each task's successful tries over the given (recent) runs."""
    samples: dict[str, list[float]] = {}
    for run in runs:
        for tid, ti in run.tasks.items():
            if ti.state is TaskState.SUCCESS and ti.duration is not None:
                samples.setdefault(tid, []).append(ti.duration)
    return {tid: median(values) for tid, values in samples.items() if values}


def is_slow(
    duration: float | None, usual: float | None, *, factor: float = 3.0, floor: float = 1.0
) -> bool:
    """A try is slow when it took ``factor`` times its usual duration (usual at least ``floor`` s)."""
    if duration is None or usual is None:
        return False
    return duration > factor * max(usual, floor)


__all__ = [
    "Limits",
    "dag_url",
    "is_slow",
    "mapped_json",
    "run_json",
    "run_summary",
    "run_url",
    "task_json",
    "task_order",
    "usual_durations",
    "waiting_reason",
]
