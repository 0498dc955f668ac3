"""The JSON API under ``/api``: DAGs, runs, task logs, events, and the operator actions.

Every mutation (POST) needs ``Authorization: Bearer <token>``, and so does every read off loopback
(checked by the app's middleware, see ``auth``). Errors are ``{"error": "..."}`` with a 4xx/5xx status. Operations the engine does not
have yet (pause, rerun, ... from the recovery work) answer 501.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import generate_latest

from ..errors import DAGNotFoundError, PodiumError
from ..lineage_events import MAX_EVENT_BYTES
from ..models import Run
from ..prometheus import CONTENT_TYPE
from .common import (
    ApiError,
    RunFilter,
    dag_overview,
    limits_of,
    list_runs,
    parse_int,
    paused_dags,
    state_of,
)
from .format import iso
from .status import run_json, run_summary

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("podium.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 500


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=repr, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body); 400 for anything else."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise ApiError(400, f"{name!r} must be {what}")
    return value


def _dag_or_404(engine: Engine, dag_id: str) -> Any:
    dag = engine.dags.get(dag_id)
    if dag is None:
        known = ", ".join(sorted(engine.dags)) or "none"
        raise DAGNotFoundError(f"no DAG {dag_id!r} (known: {known})")
    return dag


async def _run_out(request: web.Request, run: Run, *, full: bool = True) -> dict[str, Any]:
    st = state_of(request)
    if not full:
        return run_summary(run, st.base)
    if not run.tasks:
        run = await st.engine.get_run(run.run_id)
    return run_json(
        run,
        st.engine.dags.get(run.dag_id),
        await limits_of(st.engine),
        now=st.engine.clock.now(),
        base=st.base,
    )


# -- reads ------------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    base = state_of(request).base
    routes = sorted(
        {
            f"{r.method} {r.resource.canonical}"
            for r in request.app.router.routes()
            if r.resource is not None
            and r.resource.canonical.startswith(f"{base}/api")
            and r.method != "HEAD"
        }
    )
    return json_response({"name": "podium", "endpoints": routes})


async def health(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    return json_response(
        {"ok": engine.store_healthy, "pending_runs": engine.pending_runs, "now": engine.clock.now()}
    )


async def list_dags(request: web.Request) -> web.Response:
    st = state_of(request)
    now = st.engine.clock.now()
    paused = await paused_dags(st.engine)
    dags = [
        await dag_overview(st.engine, dag, now=now, base=st.base, paused=paused)
        for _, dag in sorted(st.engine.dags.items())
    ]
    return json_response({"dags": dags, "now": now})


async def get_dag(request: web.Request) -> web.Response:
    st = state_of(request)
    dag = _dag_or_404(st.engine, request.match_info["dag_id"])
    now = st.engine.clock.now()
    overview = await dag_overview(
        st.engine, dag, now=now, base=st.base, paused=await paused_dags(st.engine)
    )
    return json_response(overview)


async def dag_assets(request: web.Request) -> web.Response:
    """Why an asset-triggered DAG has not run: which parts of its condition are met by the asset
    events waiting for it, which assets are missing (``Engine.asset_condition``)."""
    st = state_of(request)
    dag = _dag_or_404(st.engine, request.match_info["dag_id"])
    return json_response(await st.engine.asset_condition(dag.dag_id))


async def runs(request: web.Request) -> web.Response:
    st = state_of(request)
    flt = RunFilter.from_query(request.query)
    limit = parse_int(request.query, "limit", 50, 1, MAX_PAGE)
    offset = parse_int(request.query, "offset", 0, 0, 10**9)
    page, more, scan_limited = await list_runs(st.engine, flt, limit=limit, offset=offset)
    return json_response(
        {
            "runs": [run_summary(r, st.base) for r in page],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
            "prev_offset": max(offset - limit, 0) if offset > 0 else None,
            "scan_limited": scan_limited,
        }
    )


async def get_run(request: web.Request) -> web.Response:
    st = state_of(request)
    run = await st.engine.get_run(request.match_info["run_id"])
    results = request.query.get("results", "full")
    if results not in ("full", "preview"):
        raise ApiError(400, "results must be 'full' or 'preview'")
    instances = request.query.get("instances", "all")
    if instances not in ("all", "none"):
        raise ApiError(400, "instances must be 'all' or 'none'")
    include = frozenset(t for t in request.query.get("include", "").split(",") if t)
    data = run_json(
        run,
        st.engine.dags.get(run.dag_id),
        await limits_of(st.engine),
        now=st.engine.clock.now(),
        base=st.base,
        results=results,
        instances=instances == "all",
        include=include,
    )
    return json_response(data)


async def task_logs(request: web.Request) -> web.Response:
    """Log lines of one try (default: the task's current try) after line ``after``; ``try=all``
    for every try. Poll with ``after=next_after`` to follow a running task.

    The task's state is read before its lines: a task's lines are committed before its final
    state, so once ``task_finished`` is true the lines returned with it are complete."""
    st = state_of(request)
    run_id, task_id = request.match_info["run_id"], request.match_info["task_id"]
    run = await st.engine.get_run(run_id)
    ti = run.tasks.get(task_id)
    if ti is None:
        raise ApiError(404, f"run {run_id} has no task {task_id!r}")
    raw_try = request.query.get("try", "")
    try_number: int | None
    if raw_try == "all":
        try_number = None
    elif raw_try:
        try_number = parse_int(request.query, "try", 1, 1, 10**6)
    else:
        try_number = max(ti.try_number, 1)
    after = parse_int(request.query, "after", 0, 0, 10**9)
    rows = await st.engine.store.task_logs(run_id, task_id, try_number, after)
    lines = [
        {
            "try_number": r.try_number,
            "line": r.line_no,
            "ts": r.ts,
            "ts_iso": iso(r.ts),
            "level": r.level,
            "message": r.message,
        }
        for r in rows
    ]
    return json_response(
        {
            "run_id": run_id,
            "task_id": task_id,
            "try_number": try_number,
            "task_state": ti.state.value,
            "task_finished": ti.state.finished,
            "lines": lines,
            "next_after": lines[-1]["line"] if lines and try_number is not None else after,
        }
    )


async def events(request: web.Request) -> web.Response:
    st = state_of(request)
    limit = parse_int(request.query, "limit", 100, 1, MAX_PAGE)
    outcome = request.query.get("outcome") or None
    return json_response({"events": await st.engine.events(outcome=outcome, limit=limit)})


async def operations(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.operations
    limit = parse_int(request.query, "limit", 100, 1, MAX_PAGE)
    found = await op(
        run_id=request.query.get("run") or None,
        dag_id=request.query.get("dag") or None,
        limit=limit,
    )
    return json_response({"operations": found})


async def metrics(request: web.Request) -> web.Response:
    """``generate_latest`` of the engine's metrics registry (``Engine(metrics_registry=...)``)."""
    body = generate_latest(state_of(request).engine.metrics_registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# -- mutations --------------------------------------------------------------------------------------


async def trigger(request: web.Request) -> web.Response:
    st = state_of(request)
    dag_id = request.match_info["dag_id"]
    _dag_or_404(st.engine, dag_id)
    body = await json_body(request)
    params = _field(body, "params", dict, "a JSON object")
    key = _field(body, "key", str, "a string")
    existed = key is not None and await st.engine.store.find_run(dag_id, key) is not None
    tracing = st.engine.tracing
    if tracing is None:
        run = await st.engine.trigger(dag_id, params, key=key)
    else:  # the request's `traceparent` header (if any) becomes the run's parent
        with tracing.continuing(request.headers):
            run = await st.engine.trigger(dag_id, params, key=key)
    data = run_summary(run, st.base)
    data["created"] = not existed
    return json_response(data, status=200 if existed else 201)


async def cancel_run(request: web.Request) -> web.Response:
    st = state_of(request)
    body = await json_body(request)
    reason = _field(body, "reason", str, "a string") or "cancelled through the API"
    run = await st.engine.cancel(request.match_info["run_id"], reason=reason)
    return json_response(await _run_out(request, run))


async def cancel_task(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.cancel_task
    body = await json_body(request)
    reason = _field(body, "reason", str, "a string") or "cancelled through the API"
    run_id = request.match_info["run_id"]
    run = await st.engine.get_run(run_id)
    if request.match_info["task_id"] not in run.tasks:
        raise ApiError(404, f"run {run_id} has no task {request.match_info['task_id']!r}")
    result = await op(run_id, request.match_info["task_id"], reason=reason)
    return json_response(await _run_out(request, result))


async def rerun(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.rerun
    body = await json_body(request)
    tasks = _field(body, "tasks", list, "a list of task ids")
    if tasks is not None and not all(isinstance(t, str) for t in tasks):
        raise ApiError(400, "'tasks' must be a list of task ids")
    failed_only = bool(_field(body, "failed_only", bool, "true or false"))
    downstream = bool(_field(body, "downstream", bool, "true or false"))
    run = await op(
        request.match_info["run_id"], tasks, failed_only=failed_only, downstream=downstream
    )
    return json_response(await _run_out(request, run))


async def resume(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.resume
    run = await op(request.match_info["run_id"])
    return json_response(await _run_out(request, run))


async def pause(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.pause_dag
    dag_id = request.match_info["dag_id"]
    _dag_or_404(st.engine, dag_id)
    await op(dag_id)
    return json_response({"dag_id": dag_id, "paused": True})


async def unpause(request: web.Request) -> web.Response:
    st = state_of(request)
    op = st.engine.unpause_dag
    dag_id = request.match_info["dag_id"]
    _dag_or_404(st.engine, dag_id)
    body = await json_body(request)
    skip_queued = bool(_field(body, "skip_queued", bool, "true or false"))
    skipped = await op(dag_id, skip_queued=skip_queued)
    return json_response({"dag_id": dag_id, "paused": False, "skipped": list(skipped or [])})


async def backfill(request: web.Request) -> web.Response:
    """Backfill ``start``..``end`` (dates or times in the DAG's zone). Waits for the runs and
    returns the outcome, or with ``"wait": false`` answers 202 at once and runs it in the
    server's background (outcome in the operations log and the runs list)."""
    st = state_of(request)
    op = st.engine.backfill
    dag_id = request.match_info["dag_id"]
    _dag_or_404(st.engine, dag_id)
    body = await json_body(request)
    start = _field(body, "start", str, "a date or ISO time")
    end = _field(body, "end", str, "a date or ISO time")
    if start is None or end is None:
        raise ApiError(400, "'start' and 'end' are required")
    kwargs = {
        "missing_only": bool(_field(body, "missing_only", bool, "true or false")),
        "max_active": _field(body, "max_active", int, "an integer"),
    }
    wait = body.get("wait", True)
    if not wait and st.jobs is not None:

        async def job() -> None:
            try:
                await op(dag_id, start, end, **kwargs)
            except PodiumError as exc:
                log.error("backfill of %s %s..%s failed: %s", dag_id, start, end, exc)
            except Exception:  # a background job must never take the server down
                log.exception("backfill of %s %s..%s failed", dag_id, start, end)

        st.jobs.start_soon(job)
        return json_response({"dag_id": dag_id, "start": start, "end": end, "accepted": True}, 202)
    result = await op(dag_id, start, end, **kwargs)
    return json_response(
        {
            "dag_id": dag_id,
            "slots": len(getattr(result, "slots", [])),
            "created": list(getattr(result, "created", [])),
            "rerun": list(getattr(result, "rerun", [])),
            "skipped": list(getattr(result, "skipped", [])),
            "states": dict(getattr(result, "states", {})),
        }
    )


async def lineage(request: web.Request) -> web.Response:
    """An OpenLineage RunEvent from another tool (``POST /api/v1/lineage``, Marquez's path): 201
    with what was stored; 400 (not JSON), 413 (too large), 415 (not JSON content) or 422 (not a
    valid RunEvent), with nothing stored (``Engine.ingest_lineage``, docs/lineage.md)."""
    st = state_of(request)
    content_type = request.content_type
    if content_type not in ("application/json", "application/octet-stream") and not (
        content_type.endswith("+json")
    ):
        raise ApiError(
            415, f"an OpenLineage event must be sent as application/json, not {content_type}"
        )
    limit = MAX_EVENT_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, f"an OpenLineage event may be at most {limit} bytes, got {request.content_length}"
        )
    raw = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"an OpenLineage event may be at most {limit} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    stored = await st.engine.ingest_lineage(data)  # LineageEventError: 422
    return json_response(stored, 201)


def add_routes(app: web.Application, base: str) -> None:
    api = f"{base}/api"
    reads: list[tuple[str, Handler]] = [
        ("", index),
        ("/health", health),
        ("/dags", list_dags),
        ("/dags/{dag_id}", get_dag),
        ("/dags/{dag_id}/assets", dag_assets),
        ("/runs", runs),
        ("/runs/{run_id}", get_run),
        ("/runs/{run_id}/tasks/{task_id}/logs", task_logs),
        ("/events", events),
        ("/operations", operations),
    ]
    writes: list[tuple[str, Handler]] = [
        ("/dags/{dag_id}/trigger", trigger),
        ("/dags/{dag_id}/pause", pause),
        ("/dags/{dag_id}/unpause", unpause),
        ("/dags/{dag_id}/backfill", backfill),
        ("/runs/{run_id}/cancel", cancel_run),
        ("/runs/{run_id}/rerun", rerun),
        ("/runs/{run_id}/resume", resume),
        ("/runs/{run_id}/tasks/{task_id}/cancel", cancel_task),
        ("/v1/lineage", lineage),  # OpenLineage in (issue 12)
    ]
    for path, handler in reads:
        app.router.add_get(api + path, handler)
    for path, handler in writes:
        app.router.add_post(api + path, handler)
    app.router.add_get(f"{base}/metrics", metrics)


__all__ = ["add_routes", "json_body", "json_response"]
