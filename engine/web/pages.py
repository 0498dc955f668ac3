"""Server-rendered pages: the DAG list, a DAG's runs, all runs, events (the run page is in
``run_page``).

Stable URLs: ``/``, ``/dags/{dag_id}``, ``/runs``, ``/runs/{run_id}`` (``#task-{task_id}`` for one
task), ``/events``. The run page polls the JSON API while the run is unfinished (podium.js).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sensors.assets import OnAssets

from ..dag import DAG
from ..states import RunState
from . import run_page
from .common import RunFilter, dag_overview, list_runs, parse_int, paused_dags, state_of
from .fanout import default_collapsed
from .format import to_json
from .graph import dag_graph, dag_graph_svg, run_graph_svg
from .render import action_button, api_url, href, page_response
from .status import dag_url, run_url
from .triggers import dag_zone

if TYPE_CHECKING:
    from ..engine import Engine

PAGE_SIZE = 50
_FAILED_NOTE = re.compile(r"failed task\(s\): (.+)$")
_STATES = [s.value for s in RunState]


# -- home: the DAG list -----------------------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    st = state_of(request)
    engine, base = st.engine, st.base
    now = engine.clock.now()
    paused = await paused_dags(engine)
    rows = []
    for _, dag in sorted(engine.dags.items()):
        info = await dag_overview(engine, dag, now=now, base=base, paused=paused)
        last = info["last_failure"]
        rows.append(
            {
                "info": info,
                "zone": dag_zone(dag.triggers),
                "actions": _dag_actions(engine, dag, base, paused=info["paused"]),
                "last_failure_url": None
                if last is None
                else failed_task_url(last["url"], last["note"]),
            }
        )
    failures = await engine.runs(state="failed", limit=10)
    running = await engine.runs(state="running", limit=100)
    return page_response(
        request,
        "home.html",
        title="DAGs",
        now=now,
        dag_count=len(engine.dags),
        running=len(running),
        running_capped=len(running) == 100,
        rows=rows,
        failures=[
            {"run": r, "url": failed_task_url(run_url(base, r.run_id), r.note)} for r in failures
        ],
    )


def _dag_actions(engine: Engine, dag: DAG, base: str, *, paused: bool) -> list[dict[str, Any]]:
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


def failed_task_url(url: str, note: str | None) -> str:
    """The run page, at its first failed task when the run's note names it."""
    match = _FAILED_NOTE.search(note or "")
    if match is None:
        return url
    return f"{url}#task-{match.group(1).split(',')[0].strip()}"


# -- runs lists -------------------------------------------------------------------------------------


def _pager(
    path: str,
    flt: RunFilter,
    offset: int,
    shown: int,
    more: bool,
    limited: bool,
    *,
    dag_in_path: bool = False,
) -> dict[str, Any]:
    limit = PAGE_SIZE
    q: dict[str, object] = dict(flt.query())
    if dag_in_path:
        q.pop("dag", None)
    return {
        "prev": href(path, {**q, "offset": max(offset - limit, 0)}) if offset > 0 else None,
        "next": href(path, {**q, "offset": offset + limit}) if more else None,
        "offset": offset,
        "shown": shown,
        "limited": limited,
    }


async def runs_page(request: web.Request) -> web.Response:
    st = state_of(request)
    flt = RunFilter.from_query(request.query)
    offset = parse_int(request.query, "offset", 0, 0, 10**9)
    found, more, limited = await list_runs(st.engine, flt, limit=PAGE_SIZE, offset=offset)
    path = f"{st.base}/runs"
    return page_response(
        request,
        "runs.html",
        title="Runs" + (f" of source {flt.key_prefix}" if flt.key_prefix else ""),
        now=st.engine.clock.now(),
        flt=flt,
        path=path,
        dags=sorted(st.engine.dags),
        states=_STATES,
        runs=found,
        pages=_pager(path, flt, offset, len(found), more, limited),
    )


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
    condition = await engine.asset_condition(dag_id) if _on_assets(dag) else None
    return page_response(
        request,
        "dag.html",
        condition=condition,
        title=dag_id,
        now=now,
        info=info,
        zone=dag_zone(dag.triggers),
        actions=_dag_actions(engine, dag, base, paused=info["paused"]),
        graph=dag_graph(
            dag, collapsed=default_collapsed(dag), graph_url=dag_url(base, dag_id) + "/graph"
        ),
        flt=flt,
        states=_STATES,
        runs=found,
        pages=_pager(
            dag_url(base, dag_id), flt, offset, len(found), more, limited, dag_in_path=True
        ),
    )


def _on_assets(dag: DAG) -> bool:
    return any(isinstance(t, OnAssets) for t in dag.triggers)


# -- events -----------------------------------------------------------------------------------------


async def events_page(request: web.Request) -> web.Response:
    st = state_of(request)
    outcome = request.query.get("outcome") or None
    return page_response(
        request,
        "events.html",
        title="Events",
        now=st.engine.clock.now(),
        events=await st.engine.events(outcome=outcome, limit=200),
        outcomes=("ran", "deduplicated", "filtered", "dead"),
    )


def add_routes(app: web.Application, base: str) -> None:
    app.router.add_get(f"{base}/", home)
    if base:
        app.router.add_get(base, home)
    app.router.add_get(f"{base}/runs", runs_page)
    app.router.add_get(f"{base}/runs/{{run_id}}", run_page.run_page)
    app.router.add_get(f"{base}/runs/{{run_id}}/gantt", run_page.run_gantt)
    app.router.add_get(f"{base}/runs/{{run_id}}/graph", run_graph_svg)
    app.router.add_get(
        f"{base}/runs/{{run_id}}/tasks/{{task_id}}/instances", run_page.run_instances
    )
    app.router.add_get(f"{base}/dags/{{dag_id}}", dag_page)
    app.router.add_get(f"{base}/dags/{{dag_id}}/graph", dag_graph_svg)
    app.router.add_get(f"{base}/events", events_page)


__all__ = ["add_routes"]
