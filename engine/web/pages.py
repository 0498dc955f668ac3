"""Server-rendered pages: the DAG list, a DAG's runs, all runs, events (the run page is in
``run_page``).

Stable URLs: ``/``, ``/dags/{dag_id}``, ``/runs``, ``/runs/{run_id}`` (``#task-{task_id}`` for one
task), ``/events``. The run page polls the JSON API while the run is unfinished (podium.js).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..dag import DAG
from ..durations import format_duration
from ..models import Run
from ..states import RunState
from . import run_page
from .common import RunFilter, dag_overview, list_runs, parse_int, paused_dags, state_of
from .format import relative_text, to_json
from .layout import graph_svg, layout_graph
from .status import dag_url, run_url
from .templates import action_button, api_url, badge, esc, href, html_response, page, table, when
from .triggers import dag_zone

if TYPE_CHECKING:
    from ..engine import Engine

PAGE_SIZE = 50
_FAILED_NOTE = re.compile(r"failed task\(s\): (.+)$")


# -- home: the DAG list -----------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    st = state_of(request)
    engine, base = st.engine, st.base
    now = engine.clock.now()
    paused = await paused_dags(engine)
    rows = []
    for _, dag in sorted(engine.dags.items()):
        info = await dag_overview(engine, dag, now=now, base=base, paused=paused)
        rows.append(_dag_row(engine, dag, info, now=now, base=base))
    failures = await engine.runs(state="failed", limit=10)
    running = await engine.runs(state="running", limit=100)
    body = (
        "<h1>DAGs</h1>"
        f'<p class="summary">{len(engine.dags)} DAG{"s" if len(engine.dags) != 1 else ""} · '
        f'<a href="{href(base + "/runs", {"state": "running"})}">{len(running)}'
        f"{'+' if len(running) == 100 else ''} running</a></p>"
        + table(["DAG", "Triggers · next run", "Last runs", "Failed (24 h)", ""], rows, cls="dags")
        + "<h2>Recent failures</h2>"
        + (_failure_list(failures, base, now) if failures else '<p class="muted">None.</p>')
    )
    return html_response(page("DAGs", body, base=base))


def _dag_row(engine: Engine, dag: DAG, info: dict[str, Any], *, now: float, base: str) -> str:
    zone = dag_zone(dag.triggers)
    triggers = (
        "".join(f'<li title="{esc(t["text"])}">{esc(t["words"])}</li>' for t in info["triggers"])
        or '<li class="muted">manual only</li>'
    )
    nxt = ""
    if info["next_run_at"] is not None:
        nxt = f'<div class="next">next {when(info["next_run_at"], zone, now)} <span class="muted">({esc(relative_text(info["next_run_at"], now))})</span></div>'
    squares = (
        "".join(
            f'<a class="sq st-{esc(r["state"])}" href="{esc(r["url"])}" '
            f'title="{esc(r["run_id"])}: {esc(r["state"])}, {esc(format_duration(r["duration"]))}"></a>'
            for r in reversed(info["last_runs"])
        )
        or '<span class="muted">no runs yet</span>'
    )
    fails = info["failures_24h"]
    fail_cell = (
        f'<a class="fail-count" href="{href(dag_url(base, dag.dag_id), {"state": "failed"})}">{fails}{"+" if info["failures_24h_capped"] else ""}</a>'
        if fails
        else '<span class="muted">0</span>'
    )
    last = info["last_failure"]
    if last is not None:
        fail_cell += f'<div class="small"><a href="{esc(_failed_task_url(last["url"], last["note"]))}">last: {esc(last["note"] or last["run_id"])}</a></div>'
    paused = info["paused"]
    actions = _dag_actions(engine, dag, base, paused=paused)
    desc = f'<div class="small muted">{esc(dag.description)}</div>' if dag.description else ""
    return (
        f'<tr class="dag{" paused" if paused else ""}" data-dag="{esc(dag.dag_id)}">'
        f'<td><a class="dag-name" href="{esc(info["url"])}">{esc(dag.dag_id)}</a>'
        f"{badge('paused') if paused else ''}{desc}</td>"
        f'<td><ul class="triggers">{triggers}</ul>{nxt}</td>'
        f'<td><div class="squares">{squares}</div></td>'
        f'<td>{fail_cell}</td><td class="actions">{"".join(actions)}</td></tr>'
    )


def _dag_actions(engine: Engine, dag: DAG, base: str, *, paused: bool) -> list[str]:
    defaults = {n: p.default for n, p in dag.params.items()}
    actions = [
        action_button(
            "Trigger",
            api_url(base, "dags", dag.dag_id, "trigger"),
            prompt_params=to_json(defaults) if dag.params else None,
        )
    ]
    if hasattr(engine, "pause_dag"):
        op = "unpause" if paused else "pause"
        actions.append(action_button(op.capitalize(), api_url(base, "dags", dag.dag_id, op)))
    return actions


def _failed_task_url(url: str, note: str | None) -> str:
    """The run page, at its first failed task when the run's note names it."""
    match = _FAILED_NOTE.search(note or "")
    if match is None:
        return url
    return f"{url}#task-{match.group(1).split(',')[0].strip()}"


def _failure_list(runs: list[Run], base: str, now: float) -> str:
    items = []
    for r in runs:
        url = run_url(base, r.run_id)
        items.append(
            f'<li><a href="{esc(_failed_task_url(url, r.note))}">{esc(r.dag_id)} · {esc(r.run_id)}</a> '
            f"{when(r.finished_at or r.created_at, None, now)} "
            f'<span class="err">{esc(r.note or "")}</span></li>'
        )
    return f'<ul class="failures">{"".join(items)}</ul>'


# -- runs lists -------------------------------------------------------------------------------------


def _runs_table(
    runs: list[Run], base: str, now: float, *, show_dag: bool, zone: ZoneInfo | None = None
) -> str:
    headers = [
        "Run",
        *(["DAG"] if show_dag else []),
        "State",
        "Trigger",
        "Logical date",
        "Created",
        "Duration",
        "Note",
    ]
    rows = []
    for r in runs:
        dag_cell = (
            f'<td><a href="{esc(dag_url(base, r.dag_id))}">{esc(r.dag_id)}</a></td>'
            if show_dag
            else ""
        )
        logical = r.logical_date.timestamp() if r.logical_date else None
        rows.append(
            f'<tr class="run st-{esc(r.state.value)}"><td><a href="{esc(run_url(base, r.run_id))}">{esc(r.run_id)}</a></td>'
            f"{dag_cell}<td>{badge(r.state.value)}</td>"
            f'<td title="{esc(r.key)}">{esc(r.trigger)}</td><td>{when(logical, zone)}</td>'
            f"<td>{when(r.created_at, zone, now)}</td><td>{esc(format_duration(r.duration))}</td>"
            f'<td class="small">{esc(r.note or "")}</td></tr>'
        )
    if not rows:
        return '<p class="muted">No runs match.</p>'
    return table(headers, rows, cls="runs")


def _filter_form(flt: RunFilter, action: str, dags: list[str] | None) -> str:
    q = flt.query()
    states = "".join(
        f'<option value="{s.value}"{" selected" if flt.state == s.value else ""}>{s.value}</option>'
        for s in RunState
    )
    dag_select = ""
    if dags is not None:
        options = "".join(
            f'<option value="{esc(d)}"{" selected" if flt.dag_id == d else ""}>{esc(d)}</option>'
            for d in dags
        )
        dag_select = (
            f'<label>DAG <select name="dag"><option value="">any</option>{options}</select></label>'
        )
    hidden = ""
    if flt.key_prefix:
        hidden = f'<input type="hidden" name="key_prefix" value="{esc(flt.key_prefix)}">'
    return (
        f'<form class="filters" method="get" action="{esc(action)}">{dag_select}'
        f'<label>State <select name="state"><option value="">any</option>{states}</select></label>'
        f'<label>Since <input name="since" placeholder="2026-11-25" value="{esc(q.get("since", ""))}"></label>'
        f'<label>Until <input name="until" placeholder="2026-11-26T12:00" value="{esc(q.get("until", ""))}"></label>'
        f'<label>Trigger <input name="trigger" placeholder="api, timer, kafka…" value="{esc(flt.trigger or "")}"></label>'
        f'{hidden}<button type="submit">Filter</button></form>'
    )


def _pager(
    path: str, flt: RunFilter, offset: int, shown: int, more: bool, *, dag_in_path: bool = False
) -> str:
    limit = PAGE_SIZE
    q: dict[str, object] = dict(flt.query())
    if dag_in_path:
        q.pop("dag", None)
    links = []
    if offset > 0:
        links.append(
            f'<a rel="prev" href="{href(path, {**q, "offset": max(offset - limit, 0)})}">← newer</a>'
        )
    if shown:
        links.append(f'<span class="muted">runs {offset + 1} to {offset + shown}</span>')
    if more:
        links.append(
            f'<a rel="next" href="{href(path, {**q, "offset": offset + limit})}">older →</a>'
        )
    return f'<nav class="pager">{" ".join(links)}</nav>'


async def runs_page(request: web.Request) -> web.Response:
    st = state_of(request)
    flt = RunFilter.from_query(request.query)
    offset = parse_int(request.query, "offset", 0, 0, 10**9)
    found, more, limited = await list_runs(st.engine, flt, limit=PAGE_SIZE, offset=offset)
    now = st.engine.clock.now()
    path = f"{st.base}/runs"
    title = "Runs" + (f" of source {flt.key_prefix}" if flt.key_prefix else "")
    body = (
        f"<h1>{esc(title)}</h1>"
        + _filter_form(flt, path, sorted(st.engine.dags))
        + _runs_table(found, st.base, now, show_dag=True)
        + _pager(path, flt, offset, len(found), more)
        + (
            '<p class="muted">Only the newest runs were searched; narrow the filter.</p>'
            if limited
            else ""
        )
    )
    return html_response(page(title, body, base=st.base))


async def dag_page(request: web.Request) -> web.Response:
    st = state_of(request)
    engine, base = st.engine, st.base
    dag_id = request.match_info["dag_id"]
    dag = engine.dags.get(dag_id)
    if dag is None:
        raise web.HTTPNotFound(text=f"no DAG {dag_id!r}")
    now = engine.clock.now()
    info = await dag_overview(engine, dag, now=now, base=base, paused=await paused_dags(engine))
    flt = RunFilter.from_query({**request.query, "dag": dag_id})
    offset = parse_int(request.query, "offset", 0, 0, 10**9)
    found, more, limited = await list_runs(engine, flt, limit=PAGE_SIZE, offset=offset)
    zone = dag_zone(dag.triggers)
    graph = graph_svg(layout_graph({t: n.upstream for t, n in dag.tasks.items()}), link_prefix=None)
    params = "".join(
        f"<tr><td>{esc(n)}</td><td>{esc(p['type'] or '')}</td><td>{'required' if p['required'] else esc(to_json(p['default']))}</td></tr>"
        for n, p in info["params"].items()
    )
    triggers = "".join(
        f'<li title="{esc(t["text"])}">{esc(t["words"])}'
        + (f" — next {when(t['next_at'], zone, now)}" if t["next_at"] else "")
        + "</li>"
        for t in info["triggers"]
    )
    body = (
        f"<h1>{esc(dag_id)} {badge('paused') if info['paused'] else ''}</h1>"
        + f'<div class="actions">{"".join(_dag_actions(engine, dag, base, paused=info["paused"]))}</div>'
        + (f'<p class="muted">{esc(dag.description)}</p>' if dag.description else "")
        + f'<div class="cols"><section><h2>Triggers</h2><ul class="triggers">{triggers or "<li class=muted>manual only</li>"}</ul>'
        + f'<p class="small">Time zone: {esc(info["timezone"])}</p>'
        + (
            f"<h2>Params</h2>{table(['Name', 'Type', 'Default'], [params], cls='params')}"
            if params
            else ""
        )
        + "</section>"
        + f'<section class="graph-box"><h2>Graph</h2>{graph}</section></div>'
        + f"<h2>Runs</h2>{_filter_form(flt, dag_url(base, dag_id), None)}"
        + _runs_table(found, base, now, show_dag=False, zone=zone)
        + _pager(dag_url(base, dag_id), flt, offset, len(found), more, dag_in_path=True)
        + (
            '<p class="muted">Only the newest runs were searched; narrow the filter.</p>'
            if limited
            else ""
        )
    )
    return html_response(page(dag_id, body, base=base))


# -- events -----------------------------------------------------------------------------------------


async def events_page(request: web.Request) -> web.Response:
    st = state_of(request)
    outcome = request.query.get("outcome") or None
    found = await st.engine.events(outcome=outcome, limit=200)
    now = st.engine.clock.now()
    rows = [
        f'<tr class="ev-{esc(e["outcome"])}"><td class="mono">{esc(e["event_id"])}</td>'
        f'<td><a href="{esc(dag_url(st.base, e["dag_id"]))}">{esc(e["dag_id"])}</a></td>'
        f"<td>{esc(e['source'])}</td><td>{when(e['received_at'], None, now)}</td>"
        f"<td>{badge(e['outcome'])}</td>"
        f"<td>{'<a href=' + chr(34) + esc(run_url(st.base, e['run_id'])) + chr(34) + '>' + esc(e['run_id']) + '</a>' if e['run_id'] else ''}</td>"
        f'<td class="err">{esc(e["error"] or "")}</td></tr>'
        for e in found
    ]
    outcomes = "".join(
        f'<a href="{href(st.base + "/events", {"outcome": o})}">{o}</a> '
        for o in ("ran", "deduplicated", "filtered", "dead")
    )
    body = (
        f'<h1>Events</h1><p class="small">Outcome: <a href="{esc(st.base)}/events">all</a> {outcomes}</p>'
        + (
            table(
                ["Event", "DAG", "Source", "Received", "Outcome", "Run", "Error"],
                rows,
                cls="events",
            )
            if rows
            else '<p class="muted">No events recorded.</p>'
        )
    )
    return html_response(page("Events", body, base=st.base))


def add_routes(app: web.Application, base: str) -> None:
    app.router.add_get(f"{base}/", home)
    if base:
        app.router.add_get(base, home)
    app.router.add_get(f"{base}/runs", runs_page)
    app.router.add_get(f"{base}/runs/{{run_id}}", run_page.run_page)
    app.router.add_get(f"{base}/runs/{{run_id}}/gantt", run_page.run_gantt)
    app.router.add_get(f"{base}/dags/{{dag_id}}", dag_page)
    app.router.add_get(f"{base}/events", events_page)


__all__ = ["add_routes"]
