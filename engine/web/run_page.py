"""The run page: header, failed tasks, the graph coloured by state, the timeline, one panel per
task (tries, duration against its usual, error, result, checkpoint, live log), the triggering event.

While the run is unfinished, podium.js polls ``/api/runs/{run_id}`` and updates the page in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from ..dag import DAG
from ..models import Run
from ..run_state import split_instance_id
from ..states import RunState, TaskState
from .common import ApiError, limits_of, parse_int, state_of
from .fanout import MappedSummary, is_instance, mapped_summaries, parse_collapsed
from .format import to_json
from .gantt import gantt_svg
from .graph import dag_graph
from .render import action_button, api_url, href, html_response, page_response, render
from .status import Limits, is_slow, run_url, task_order, usual_durations, waiting_reason
from .triggers import dag_zone, source_prefix

if TYPE_CHECKING:
    from ..engine import Engine


INSTANCE_PAGE = 50


async def run_page(request: web.Request) -> web.Response:
    st = state_of(request)
    engine, base = st.engine, st.base
    run = await engine.get_run(request.match_info["run_id"])
    dag = engine.dags.get(run.dag_id)
    now = engine.clock.now()
    limits = await limits_of(engine)
    order = [t for t in task_order(run, dag) if not is_instance(t)]
    mapped = mapped_summaries(run, dag)
    usual = await _usual_durations(engine, run)
    operations = getattr(engine, "operations", None)
    url = run_url(base, run.run_id)
    collapsed = parse_collapsed(None, dag) if dag is not None else frozenset()
    panels = []
    for t in order:
        panel = _task_panel(
            run, t, dag, engine, usual.get(t), waiting_reason(run, t, dag, limits, now), now, base
        )
        if t in mapped:
            panel["mapped"] = mapped[t]
            panel["instances"] = _instances_block(
                run, mapped[t], dag, engine, limits, now, base, state=None, offset=0
            )
        panels.append(panel)
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
        mapped=mapped,
        graph=dag_graph(dag, run=run, collapsed=collapsed, graph_url=url + "/graph"),
        gantt=gantt_svg(
            order,
            run.tasks,
            now=now,
            origin=run.created_at,
            mapped={t: m.instances for t, m in mapped.items()},
        ),
        panels=panels,
        source_prefix=source_prefix(run.key),
        operations=None if operations is None else await operations(run_id=run.run_id, limit=50),
        data=None if read_lineage is None else await read_lineage(run.run_id),
    )


async def run_gantt(request: web.Request) -> web.Response:
    """The run's timeline alone (the run page's script swaps it in as the run progresses);
    ``?expand=load:50,other:0`` lists a page of those mapped tasks' instances under their row."""
    st = state_of(request)
    run = await st.engine.get_run(request.match_info["run_id"])
    dag = st.engine.dags.get(run.dag_id)
    order = [t for t in task_order(run, dag) if not is_instance(t)]
    mapped = mapped_summaries(run, dag)
    expand: dict[str, int] = {}
    for item in request.query.get("expand", "").split(","):
        tid, _, offset = item.partition(":")
        if tid in mapped:
            expand[tid] = int(offset) if offset.isdigit() else 0
    svg = gantt_svg(
        order,
        run.tasks,
        now=st.engine.clock.now(),
        origin=run.created_at,
        mapped={t: m.instances for t, m in mapped.items()},
        expand=expand,
    )
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")


async def run_instances(request: web.Request) -> web.Response:
    """``/runs/{run_id}/tasks/{task_id}/instances?state=&offset=``: one page of a mapped task's
    instances as task panels, with counts per state and the pager (swapped in by the script)."""
    st = state_of(request)
    engine = st.engine
    run = await engine.get_run(request.match_info["run_id"])
    dag = engine.dags.get(run.dag_id)
    task_id = request.match_info["task_id"]
    mapped = mapped_summaries(run, dag)
    if task_id not in mapped:
        raise ApiError(404, f"run {run.run_id} has no mapped task {task_id!r}")
    state = request.query.get("state") or None
    offset = parse_int(request.query, "offset", 0, 0, 10**9)
    block = _instances_block(
        run,
        mapped[task_id],
        dag,
        engine,
        await limits_of(engine),
        engine.clock.now(),
        st.base,
        state=state,
        offset=offset,
    )
    return html_response(block)


def _instances_block(
    run: Run,
    summary: MappedSummary,
    dag: DAG | None,
    engine: Engine,
    limits: Limits,
    now: float,
    base: str,
    *,
    state: str | None,
    offset: int,
) -> str:
    """A page of the instances (``INSTANCE_PAGE``), filtered by state, as task panels."""
    ids = [i for i in summary.instances if state is None or run.tasks[i].state.value == state]
    page = ids[offset : offset + INSTANCE_PAGE]
    url = run_url(base, run.run_id) + "/tasks/" + quote(summary.task_id, safe="") + "/instances"
    panels = [
        _task_panel(run, i, dag, engine, None, waiting_reason(run, i, dag, limits, now), now, base)
        for i in page
    ]
    return render(
        "instances.html",
        summary=summary,
        url=url,
        state=state,
        offset=offset,
        shown=len(page),
        total=len(ids),
        panels=panels,
        filters=[
            {"state": None, "n": summary.count, "url": href(url)},
            *(
                {"state": s, "n": n, "url": href(url, {"state": s})}
                for s, n in summary.counts.items()
            ),
        ],
        prev=href(url, {"state": state, "offset": max(offset - INSTANCE_PAGE, 0)})
        if offset > 0
        else None,
        next=href(url, {"state": state, "offset": offset + INSTANCE_PAGE})
        if offset + INSTANCE_PAGE < len(ids)
        else None,
    )


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
    node = dag.tasks.get(split_instance_id(tid)[0]) if dag is not None else None
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
        "mapped": None,
        "instances": None,
    }


__all__ = ["run_gantt", "run_instances", "run_page"]
