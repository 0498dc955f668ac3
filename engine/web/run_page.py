"""The run page: header, failed tasks, the graph coloured by state, the timeline, one panel per
task (tries, duration against its usual, error, result, checkpoint, live log), the triggering event.

While the run is unfinished, podium.js polls ``/api/runs/{run_id}`` and updates the page in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..dag import DAG
from ..models import Run, TaskInstance
from ..states import RunState, TaskState
from .common import limits_of, state_of
from .format import to_json
from .gantt import gantt_svg
from .layout import graph_svg, layout_graph
from .render import action_button, api_url, page_response
from .status import is_slow, task_order, usual_durations, waiting_reason
from .triggers import dag_zone, source_prefix

if TYPE_CHECKING:
    from ..engine import Engine


async def run_page(request: web.Request) -> web.Response:
    st = state_of(request)
    engine, base = st.engine, st.base
    run = await engine.get_run(request.match_info["run_id"])
    dag = engine.dags.get(run.dag_id)
    now = engine.clock.now()
    limits = await limits_of(engine)
    order = task_order(run, dag)
    usual = await _usual_durations(engine, run)
    upstream = {
        t: (dag.tasks[t].upstream if dag is not None and t in dag.tasks else ()) for t in order
    }
    states = {t: run.tasks[t].state.value for t in order}
    notes = {t: _node_note(run.tasks[t]) for t in order}
    operations = getattr(engine, "operations", None)
    read_lineage = getattr(engine, "run_lineage", None)
    return page_response(
        request,
        "run.html",
        title=f"{run.dag_id} · {run.run_id}",
        now=now,
        run=run,
        zone=dag_zone(dag.triggers) if dag is not None else None,
        actions=_run_actions(run, engine, base),
        failed=[t for t in order if run.tasks[t].state is TaskState.FAILED],
        graph=graph_svg(layout_graph(upstream), states, notes=notes),
        gantt=gantt_svg(order, run.tasks, now=now, origin=run.created_at),
        panels=[
            _task_panel(
                run,
                t,
                dag,
                engine,
                usual.get(t),
                waiting_reason(run, t, dag, limits, now),
                now,
                base,
            )
            for t in order
        ],
        source_prefix=source_prefix(run.key),
        operations=None if operations is None else await operations(run_id=run.run_id, limit=50),
        data=None if read_lineage is None else await read_lineage(run.run_id),
    )


async def run_gantt(request: web.Request) -> web.Response:
    """The run's timeline alone (the run page's script swaps it in as the run progresses)."""
    st = state_of(request)
    run = await st.engine.get_run(request.match_info["run_id"])
    order = task_order(run, st.engine.dags.get(run.dag_id))
    svg = gantt_svg(order, run.tasks, now=st.engine.clock.now(), origin=run.created_at)
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")


async def _usual_durations(engine: Engine, run: Run) -> dict[str, float]:
    """Each task's usual duration: the engine's slowdown baselines when it keeps them, else the
    median over the DAG's last 20 successful runs."""
    baselines = getattr(getattr(engine, "alerting", None), "baselines", None)
    if baselines is not None:
        found = {t: baselines.baseline(run.dag_id, t) for t in run.tasks}
        return {t: float(b) for t, b in found.items() if b is not None}
    recent = await engine.runs(dag_id=run.dag_id, state="success", limit=20)
    return usual_durations(
        [await engine.get_run(r.run_id) for r in recent if r.run_id != run.run_id]
    )


def _node_note(ti: TaskInstance) -> str:
    if ti.try_number > 1:
        return f"{ti.state.value} · try {ti.try_number}"
    return ti.state.value


def _run_actions(run: Run, engine: Engine, base: str) -> list[dict[str, Any]]:
    actions = []
    if not run.finished:
        actions.append(
            action_button(
                "Cancel run",
                api_url(base, "runs", run.run_id, "cancel"),
                confirm="Cancel this run?",
                cls="danger",
            )
        )
    if run.state is RunState.PAUSED and hasattr(engine, "resume"):
        actions.append(action_button("Resume", api_url(base, "runs", run.run_id, "resume")))
    if run.finished and run.state is not RunState.SUCCESS and hasattr(engine, "rerun"):
        actions.append(
            action_button(
                "Rerun failed tasks",
                api_url(base, "runs", run.run_id, "rerun"),
                body='{"failed_only": true}',
            )
        )
    return actions


def _task_panel(
    run: Run,
    tid: str,
    dag: DAG | None,
    engine: Engine,
    usual: float | None,
    reason: str | None,
    now: float,
    base: str,
) -> dict[str, Any]:
    """What the ``task_panel`` macro shows of one task."""
    ti = run.tasks[tid]
    node = dag.tasks.get(tid) if dag is not None else None
    max_tries = node.options.retry.retries + 1 if node is not None else None
    end = (
        ti.finished_at
        if ti.finished_at is not None
        else (now if ti.state is TaskState.RUNNING else None)
    )
    duration = None if ti.started_at is None or end is None else end - ti.started_at
    actions = []
    if not ti.state.finished and not run.finished and hasattr(engine, "cancel_task"):
        actions.append(
            action_button(
                "Cancel task",
                api_url(base, "runs", run.run_id, "tasks", tid, "cancel"),
                confirm=f"Cancel {tid}?",
                cls="danger",
            )
        )
    if run.finished and hasattr(engine, "rerun"):
        actions.append(
            action_button(
                "Rerun task",
                api_url(base, "runs", run.run_id, "rerun"),
                body=to_json({"tasks": [tid]}),
            )
        )
        actions.append(
            action_button(
                "Rerun with downstream",
                api_url(base, "runs", run.run_id, "rerun"),
                body=to_json({"tasks": [tid], "downstream": True}),
            )
        )
    return {
        "tid": tid,
        "ti": ti,
        "usual": usual,
        "reason": reason,
        "duration": duration,
        "slow": is_slow(duration, usual),
        "max_tries": max_tries,
        "tries_text": (
            f"try {ti.try_number}" + (f" of {max_tries}" if max_tries else "")
            if ti.try_number
            else "not started"
        ),
        "pool": node.options.pool if node is not None else None,
        "open": ti.state is TaskState.FAILED,
        "log_url": api_url(base, "runs", run.run_id, "tasks", tid, "logs"),
        "actions": actions,
    }


__all__ = ["run_gantt", "run_page"]
