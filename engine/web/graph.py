"""The graph of a DAG, or of a run coloured by its states: mapped tasks as one node with their count
and state mix, groups as boxes that collapse into one node.

Which groups are collapsed is the page's business (podium.js keeps it for the page view and
fetches the graph again with ``?collapsed=a,b`` on a click); the server keeps no such state.
"""

from __future__ import annotations

from aiohttp import web
from markupsafe import Markup

from ..dag import DAG
from ..models import Run, TaskInstance
from .common import state_of
from .fanout import (
    TIMES,
    groups_of,
    mapped_summaries,
    mix_text,
    parse_collapsed,
    state_counts,
    view_of,
    worst_state,
)
from .layout import graph_svg, layout_graph
from .status import dag_url, run_url, task_order


def node_note(ti: TaskInstance) -> str:
    if ti.try_number > 1:
        return f"{ti.state.value} · try {ti.try_number}"
    return ti.state.value


def dag_graph(
    dag: DAG | None,
    *,
    run: Run | None = None,
    collapsed: frozenset[str] = frozenset(),
    graph_url: str | None = None,
) -> Markup:
    """The SVG graph: of the DAG (no run), or of the run's tasks coloured by state."""
    tasks: dict[str, tuple[str, ...]]
    if dag is None:  # a run of a DAG no longer served: its tasks, without edges or groups
        assert run is not None
        tasks = {t: () for t in task_order(run, None) if "[" not in t}
        groups: dict[str, str | None] = {}
        mapped_ids: set[str] = set()
    else:
        tasks = {t: n.upstream for t, n in dag.tasks.items()}
        groups = {t: n.group for t, n in dag.tasks.items()}
        mapped_ids = {t for t, n in dag.tasks.items() if n.mapped}
    view = view_of(tasks, groups, collapsed)
    layout = layout_graph(view.upstream, groups=view.group_of)
    members = groups_of(dag) if dag is not None else {}
    labels: dict[str, str] = {}
    notes: dict[str, str] = {}
    states: dict[str, str] = {}
    mixes: dict[str, dict[str, int]] = {}
    summaries = mapped_summaries(run, dag) if run is not None else {}
    for tid in tasks:
        if view.node_of[tid] != tid:
            continue
        if run is not None and tid in run.tasks:
            states[tid] = run.tasks[tid].state.value
            notes[tid] = node_note(run.tasks[tid])
        if tid in summaries:
            summary = summaries[tid]
            labels[tid] = f"{tid} {TIMES}{summary.count}" if summary.count else f"{tid} {TIMES}"
            mixes[tid] = summary.counts
            if summary.count:
                notes[tid] = mix_text(summary.counts)
                states[tid] = summary.worst or states.get(tid, "none")
        elif tid in mapped_ids:
            labels[tid] = f"{tid} {TIMES}"
            notes.setdefault(tid, "mapped at run time")
    for node, gid in view.collapsed.items():
        inside = members.get(gid, [])
        labels[node] = f"▸ {gid} ({len(inside)})"
        if run is None:
            notes[node] = f"{len(inside)} task{'s' if len(inside) != 1 else ''}"
            continue
        counts = state_counts(run.tasks[t].state.value for t in inside if t in run.tasks)
        mixes[node] = counts
        notes[node] = mix_text(counts)
        states[node] = worst_state(counts) or "none"
    return graph_svg(
        layout,
        states,
        notes=notes,
        link_prefix="#task-" if run is not None else None,
        labels=labels,
        mixes=mixes,
        group_nodes={node: gid for node, gid in view.collapsed.items()},
        collapsed=sorted(collapsed),
        graph_url=graph_url,
    )


async def dag_graph_svg(request: web.Request) -> web.Response:
    """``/dags/{dag_id}/graph?collapsed=a,b``: the DAG page's graph with those groups collapsed."""
    st = state_of(request)
    dag_id = request.match_info["dag_id"]
    dag = st.engine.dags.get(dag_id)
    if dag is None:
        raise web.HTTPNotFound(text=f"no DAG {dag_id!r}")
    collapsed = parse_collapsed(request.query.get("collapsed"), dag)
    svg = dag_graph(dag, collapsed=collapsed, graph_url=dag_url(st.base, dag_id) + "/graph")
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")


async def run_graph_svg(request: web.Request) -> web.Response:
    """``/runs/{run_id}/graph?collapsed=a,b``: the run page's graph with those groups collapsed."""
    st = state_of(request)
    run = await st.engine.get_run(request.match_info["run_id"])
    dag = st.engine.dags.get(run.dag_id)
    collapsed = parse_collapsed(request.query.get("collapsed"), dag) if dag else frozenset()
    url = run_url(st.base, run.run_id) + "/graph"
    svg = dag_graph(dag, run=run, collapsed=collapsed, graph_url=url)
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")


__all__ = ["dag_graph", "dag_graph_svg", "node_note", "run_graph_svg"]
