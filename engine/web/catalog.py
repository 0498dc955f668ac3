"""The catalog: the Assets page, an asset's page, and their JSON API.

Pages: ``/assets`` (``?q=`` filters by URI or name, ``?after=`` pages by URI) and
``/assets/{uri}`` (the URI percent-encoded as one path segment; ``?before=`` pages its events by
seq). API: ``/api/assets``, ``/api/assets/{uri}``, ``/api/assets/{uri}/events`` and
``/api/lineage`` (one node of the lineage graph and its neighbours; the asset page's script
expands the graph hop by hop through it, so no page ever loads the whole graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .api import MAX_PAGE, Handler, json_response
from .common import ApiError, parse_int, state_of
from .render import api_url, href, page_response
from .status import asset_url, dag_url, run_url

PAGE_SIZE = 50
EVENTS_PAGE = 50


def _uri(request: web.Request) -> str:
    uri = request.match_info["uri"]
    if not uri.strip():
        raise ApiError(400, "an asset URI is required")
    return uri


def _before(query: Mapping[str, str]) -> int | None:
    raw = query.get("before")
    return None if not raw else parse_int(query, "before", 0, 1, 2**62)


def decorate(node: dict[str, Any], base: str) -> dict[str, Any]:
    """A lineage node with its page (``url``) and the query that expands it (``expand``)."""
    kind = node["kind"]
    if kind == "asset":
        url, query = asset_url(base, node["uri"]), {"uri": node["uri"]}
    elif kind == "task":
        url = f"{dag_url(base, node['dag_id'])}#task-{node['task_id']}"
        query = {"dag": node["dag_id"], "task": node["task_id"]}
    else:
        url, query = dag_url(base, node["dag_id"]), {"dag": node["dag_id"]}
    return {**node, "url": url, "expand": href(f"{base}/api/lineage", query)}


def _hop_out(hop: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        **hop,
        "node": decorate(hop["node"], base),
        "upstream": [decorate(n, base) for n in hop["upstream"]],
        "downstream": [decorate(n, base) for n in hop["downstream"]],
    }


def _asset_out(asset: dict[str, Any], base: str) -> dict[str, Any]:
    last = asset["last_event"]
    return {
        **asset,
        "url": asset_url(base, asset["uri"]),
        "events_url": api_url(base, "assets", asset["uri"], "events"),
        "last_event": None if last is None else {**last, "run_url": _run_link(base, last)},
    }


def _run_link(base: str, event: Mapping[str, Any]) -> str | None:
    return run_url(base, event["run_id"]) if event.get("run_id") else None


# -- API --------------------------------------------------------------------------------------------


async def api_assets(request: web.Request) -> web.Response:
    """``{"assets": [...], "next_after": uri | null}``: one page by URI after ``after``."""
    st = state_of(request)
    limit = parse_int(request.query, "limit", 100, 1, MAX_PAGE)
    after = request.query.get("after", "")
    found = await st.engine.assets(
        after=after, limit=limit + 1, matching=request.query.get("q") or None
    )
    page = found[:limit]
    return json_response(
        {
            "assets": [_asset_out(a, st.base) for a in page],
            "limit": limit,
            "next_after": page[-1]["uri"] if len(found) > limit else None,
        }
    )


async def api_asset(request: web.Request) -> web.Response:
    st = state_of(request)
    uri = _uri(request)
    found = await st.engine.asset(uri)
    if found is None:
        raise ApiError(404, f"no asset {uri!r}")
    return json_response(_asset_out(found, st.base))


async def api_asset_events(request: web.Request) -> web.Response:
    """``{"events": [...], "next_before": seq | null}``: newest first, below ``before``."""
    st = state_of(request)
    uri = _uri(request)
    limit = parse_int(request.query, "limit", 100, 1, MAX_PAGE)
    found = await st.engine.asset_events(uri, limit=limit + 1, before=_before(request.query))
    page = found[:limit]
    return json_response(
        {
            "uri": uri,
            "events": [{**e, "run_url": _run_link(st.base, e)} for e in page],
            "limit": limit,
            "next_before": page[-1]["seq"] if len(found) > limit else None,
        }
    )


async def api_lineage(request: web.Request) -> web.Response:
    """``?uri=`` (an asset), ``?dag=&task=`` (a task) or ``?dag=`` (an asset-triggered DAG)."""
    st = state_of(request)
    q = request.query
    uri, dag_id, task_id = q.get("uri") or None, q.get("dag") or None, q.get("task") or None
    if uri is None and dag_id is None:
        raise ApiError(400, "give ?uri= (an asset), ?dag=&task= (a task) or ?dag= (a DAG)")
    if task_id is not None and dag_id is None:
        raise ApiError(400, "?task= needs ?dag=")
    hop = await st.engine.lineage(uri=uri, dag_id=dag_id, task_id=task_id)
    return json_response(_hop_out(hop, st.base))


# -- pages ------------------------------------------------------------------------------------------


async def assets_page(request: web.Request) -> web.Response:
    st = state_of(request)
    after = request.query.get("after", "")
    text = request.query.get("q", "").strip()
    found = await st.engine.assets(after=after, limit=PAGE_SIZE + 1, matching=text or None)
    page = found[:PAGE_SIZE]
    path = f"{st.base}/assets"
    more = len(found) > PAGE_SIZE
    return page_response(
        request,
        "assets.html",
        title="Assets",
        now=st.engine.clock.now(),
        assets=[_asset_out(a, st.base) for a in page],
        q=text,
        path=path,
        first=href(path, {"q": text}) if after else None,
        next=href(path, {"q": text, "after": page[-1]["uri"]}) if more else None,
    )


async def asset_page(request: web.Request) -> web.Response:
    st = state_of(request)
    uri = _uri(request)
    found = await st.engine.asset(uri)
    if found is None:
        raise web.HTTPNotFound(text=f"no asset {uri!r}")
    before = _before(request.query)
    events = await st.engine.asset_events(uri, limit=EVENTS_PAGE + 1, before=before)
    page = events[:EVENTS_PAGE]
    hop = _hop_out(await st.engine.lineage(uri=uri), st.base)
    url = asset_url(st.base, uri)
    return page_response(
        request,
        "asset.html",
        title=found["name"],
        now=st.engine.clock.now(),
        asset=_asset_out(found, st.base),
        hop=hop,
        events=[{**e, "run_url": _run_link(st.base, e)} for e in page],
        newest=url if before is not None else None,
        older=href(url, {"before": page[-1]["seq"]}) if len(events) > EVENTS_PAGE else None,
    )


def add_routes(app: web.Application, base: str) -> None:
    reads: list[tuple[str, Handler]] = [
        (f"{base}/api/assets", api_assets),
        (f"{base}/api/assets/{{uri}}", api_asset),
        (f"{base}/api/assets/{{uri}}/events", api_asset_events),
        (f"{base}/api/lineage", api_lineage),
        (f"{base}/assets", assets_page),
        (f"{base}/assets/{{uri}}", asset_page),
    ]
    for path, handler in reads:
        app.router.add_get(path, handler)


__all__ = ["add_routes", "decorate"]
