"""The run page: header, failed tasks, the graph coloured by state, the timeline, one panel per
task (tries, duration against its usual, error, result, checkpoint, live log), the triggering event.

While the run is unfinished, podium.js polls ``/api/runs/{run_id}`` and updates the page in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..dag import DAG
from ..durations import format_duration
from ..models import Run, TaskInstance
from ..states import RunState, TaskState
from .common import limits_of, state_of
from .format import last_line, preview, to_json
from .gantt import gantt_svg
from .layout import graph_svg, layout_graph
from .status import dag_url, is_slow, run_url, task_order, usual_durations, waiting_reason
from .templates import action_button, api_url, badge, esc, href, html_response, page, table, when
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
    zone = dag_zone(dag.triggers) if dag is not None else None
    usual = await _usual_durations(engine, run)
    upstream = {
        t: (dag.tasks[t].upstream if dag is not None and t in dag.tasks else ()) for t in order
    }
    states = {t: run.tasks[t].state.value for t in order}
    notes = {t: _node_note(run.tasks[t]) for t in order}
    graph = graph_svg(layout_graph(upstream), states, notes=notes)
    failed = [t for t in order if run.tasks[t].state is TaskState.FAILED]
    banner = ""
    if failed:
        items = "".join(
            f'<li><a href="#task-{esc(t)}">{esc(t)}</a>: <span class="err">{esc(last_line(run.tasks[t].error))}</span></li>'
            for t in failed
        )
        banner = f'<section class="failed-banner"><h2>Failed tasks</h2><ul>{items}</ul></section>'
    panels = "".join(
        _task_panel(
            run, t, dag, engine, usual.get(t), waiting_reason(run, t, dag, limits, now), now, base
        )
        for t in order
    )
    body = (
        _run_header(run, dag, engine, zone, now, base)
        + banner
        + '<div class="run-grid">'
        + f'<section class="graph-box"><h2>Graph</h2><div id="graph">{graph}</div></section>'
        + '<section class="gantt-box"><h2>Timeline <span class="legend"><i class="lg queued"></i>queued <i class="lg running"></i>running <i class="lg retry_wait"></i>retry wait</span></h2>'
        + f'<div id="gantt">{gantt_svg(order, run.tasks, now=now, origin=run.created_at)}</div></section>'
        + "</div>"
        + f'<section class="tasks"><h2>Tasks</h2>{panels}</section>'
        + _event_box(run, base)
        + await _operations_box(engine, run, zone, now)
    )
    attrs = (
        f'class="run-page" data-run-id="{esc(run.run_id)}" data-run-state="{esc(run.state.value)}" '
        f'data-finished="{"true" if run.finished else "false"}" '
        f'data-api="{esc(api_url(base, "runs", run.run_id))}" '
        f'data-gantt="{esc(run_url(base, run.run_id))}/gantt"'
    )
    return html_response(page(f"{run.dag_id} · {run.run_id}", body, base=base, main_attrs=attrs))


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


def _run_header(run: Run, dag: DAG | None, engine: Engine, zone: Any, now: float, base: str) -> str:
    logical = run.logical_date.timestamp() if run.logical_date else None
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
    facts = [
        ("DAG", f'<a href="{esc(dag_url(base, run.dag_id))}">{esc(run.dag_id)}</a>'),
        ("State", badge(run.state.value, field="run-state")),
        ("Trigger", esc(run.trigger)),
        ("Logical date", when(logical, zone)),
        ("Created", when(run.created_at, zone, now)),
        ("Started", when(run.started_at, zone, now)),
        ("Finished", f'<span data-field="run-finished">{when(run.finished_at, zone, now)}</span>'),
        (
            "Duration",
            f'<span data-field="run-duration">{esc(format_duration(run.duration))}</span>',
        ),
    ]
    if run.params:
        facts.append(("Params", f"<code>{esc(to_json(run.params))}</code>"))
    if run.note:
        facts.append(("Note", f'<span class="err">{esc(run.note)}</span>'))
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        f'<h1>Run <span class="mono">{esc(run.run_id)}</span></h1>'
        f'<dl class="facts">{dl}</dl><div class="actions">{"".join(actions)}</div>'
    )


async def _operations_box(engine: Engine, run: Run, zone: Any, now: float) -> str:
    """Operator actions on this run (who, when, what), newest first."""
    operations = getattr(engine, "operations", None)
    if operations is None:
        return ""
    recorded = await operations(run_id=run.run_id, limit=50)
    if not recorded:
        return '<section class="operations"><h2>Operations</h2><p class="muted">none</p></section>'
    rows = [
        f"<tr><td>{when(op['ts'], zone, now)}</td><td>{esc(op['actor'])}</td>"
        f"<td>{esc(op['operation'])}</td><td><code>{esc(to_json(op['details']))}</code></td></tr>"
        for op in recorded
    ]
    return (
        '<section class="operations"><h2>Operations</h2>'
        + table(["when", "who", "what", "details"], rows, cls="ops")
        + "</section>"
    )


def _event_box(run: Run, base: str) -> str:
    prefix = source_prefix(run.key)
    others = ""
    if prefix is not None:
        link = href(base + "/runs", {"dag": run.dag_id, "key_prefix": prefix})
        others = f'<p><a href="{link}">Other runs of this source ({esc(prefix)}…)</a></p>'
    event = (
        f"<pre>{esc(preview(run.event, 4000))}</pre>"
        if run.event is not None
        else '<p class="muted">No event: started by a caller.</p>'
    )
    return (
        '<section class="event"><h2>Triggering event</h2>'
        f"<p>Trigger <b>{esc(run.trigger)}</b>, key <code>{esc(run.key)}</code></p>{event}{others}</section>"
    )


def _task_panel(
    run: Run,
    tid: str,
    dag: DAG | None,
    engine: Engine,
    usual: float | None,
    reason: str | None,
    now: float,
    base: str,
) -> str:
    ti = run.tasks[tid]
    node = dag.tasks.get(tid) if dag is not None else None
    max_tries = node.options.retry.retries + 1 if node is not None else None
    end = (
        ti.finished_at
        if ti.finished_at is not None
        else (now if ti.state is TaskState.RUNNING else None)
    )
    duration = None if ti.started_at is None or end is None else end - ti.started_at
    slow = is_slow(duration, usual)
    classes = f"task st-{ti.state.value}" + (" slow" if slow else "")
    tries_text = (
        f"try {ti.try_number}" + (f" of {max_tries}" if max_tries else "")
        if ti.try_number
        else "not started"
    )
    usual_text = (
        f'<span class="usual">usual {esc(format_duration(usual))}</span>'
        if usual is not None
        else ""
    )
    slow_badge = '<span class="badge slow">slow</span>' if slow else ""
    summary = (
        f'<summary><span class="tname">{esc(tid)}</span>{badge(ti.state.value, field="state")}'
        f'<span class="tries" data-field="tries">{esc(tries_text)}</span>'
        f'<span class="dur" data-field="duration">{esc(format_duration(duration))}</span>{usual_text}{slow_badge}'
        f'<span class="err" data-field="error_line">{esc(last_line(ti.error))}</span>'
        f'<span class="reason" data-field="waiting_reason">{esc(reason or "")}</span></summary>'
    )
    try_rows = [
        f'<tr class="st-{esc(t.state.value)}"><td>{t.try_number}</td><td>{badge(t.state.value)}</td>'
        f"<td>{when(t.started_at)}</td><td>{esc(format_duration(t.duration))}</td>"
        f'<td class="err">{esc(last_line(t.error))}</td></tr>'
        for t in ti.tries
    ]
    tries = (
        table(["Try", "State", "Started", "Duration", "Error"], try_rows, cls="tries")
        if try_rows
        else ""
    )
    tb = (
        f'<details class="tb"><summary>Traceback</summary><pre>{esc(ti.traceback)}</pre></details>'
        if ti.traceback
        else ""
    )
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
    pool = (
        f'<p class="small">pool {esc(node.options.pool)}</p>'
        if node is not None and node.options.pool
        else ""
    )
    body = (
        f'<div class="task-body">{pool}{tries}{tb}'
        f'<div class="cols"><div><h4>Result</h4><pre data-field="result_preview">{esc(preview(ti.result) or "(none)")}</pre></div>'
        f'<div><h4>Checkpoint</h4><pre data-field="checkpoint_preview">{esc(preview(ti.checkpoint) or "(none)")}</pre></div></div>'
        f'<h4>Log <span class="small muted" data-field="log-try"></span></h4>'
        f'<pre class="log" data-log-url="{esc(api_url(base, "runs", run.run_id, "tasks", tid, "logs"))}">'
        '<span class="muted">open to load…</span></pre>'
        f'<div class="actions">{"".join(actions)}</div></div>'
    )
    is_open = " open" if ti.state is TaskState.FAILED else ""
    return (
        f'<details class="{classes}" id="task-{esc(tid)}" data-task="{esc(tid)}" '
        f'data-usual="{usual if usual is not None else ""}" data-max-tries="{max_tries or ""}"{is_open}>'
        f"{summary}{body}</details>"
    )


__all__ = ["run_gantt", "run_page"]
