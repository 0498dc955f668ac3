"""The aiohttp application: routes, the token check (mutations; reads too when private, see
``auth``), errors translated at the edge."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from ..errors import (
    DAGError,
    DAGNotFoundError,
    EngineStoppedError,
    LineageEventError,
    ParamError,
    PodiumError,
    RunNotFoundError,
    StoreError,
)
from . import api, catalog, login, pages
from .auth import Access, bearer_matches
from .common import STATE, ApiError, WebState, signed_in, state_of
from .render import page_response

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("podium.web")

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def make_app(
    engine: Engine,
    *,
    token: str | None,
    base_path: str = "",
    private_reads: bool = False,
    private_probes: bool = False,
) -> web.Application:
    """The API and UI of a running ``engine`` as an aiohttp app.

    ``token``: the bearer token every mutation (POST) must carry; with None, mutations are refused
    (a read-only server). ``base_path``: a prefix such as ``/podium`` when served behind a proxy
    under a sub-path; every route and link carries it. ``private_reads``: reads need the token
    too (or a browser session from ``/login``); ``serve`` turns it on off loopback. An app you
    mount yourself decides: pass ``private_reads=reads_are_private(host)``. ``private_probes``:
    with private reads, ``/metrics`` and ``/api/health`` need the token as well.
    """
    if private_reads and token is None:
        raise PodiumError("private reads need a token")
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    app = web.Application(middlewares=[_headers, _errors, _auth])
    app[STATE] = WebState(
        engine=engine,
        token=token,
        base=base,
        static=_load_static(),
        access=Access(private_reads=private_reads, private_probes=private_probes),
    )
    api.add_routes(app, base)
    pages.add_routes(app, base)
    catalog.add_routes(app, base)
    login.add_routes(app, base)
    app.router.add_get(f"{base}/static/{{name}}", _static)
    return app


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__ or "engine.web") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


async def _static(request: web.Request) -> web.Response:
    found = state_of(request).static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


def _is_api(request: web.Request) -> bool:
    base = state_of(request).base
    return request.path.startswith(f"{base}/api") or request.path == f"{base}/metrics"


def _open_paths(base: str, access: Access) -> frozenset[str]:
    """Paths anyone may read even when reads are private."""
    paths = {f"{base}/login"}
    if not access.private_probes:
        paths |= {f"{base}/metrics", f"{base}/api/health"}
    return frozenset(paths)


@web.middleware
async def _auth(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    st = state_of(request)
    if request.method in _MUTATING:
        if request.path in (f"{st.base}/login", f"{st.base}/logout"):
            return await handler(request)  # the form carries the token; logout needs none
        if st.token is None:
            raise ApiError(403, "this server is read-only: it was started without a token")
        if not bearer_matches(request.headers.get("Authorization", ""), st.token):
            raise ApiError(401, "mutations require Authorization: Bearer <token>")
        return await handler(request)
    if not st.access.private_reads:
        return await handler(request)
    path = request.path
    if (
        path in _open_paths(st.base, st.access)
        or path.startswith(f"{st.base}/static/")
        or bearer_matches(request.headers.get("Authorization", ""), st.token)
        or signed_in(request)
    ):
        return await handler(request)
    if _is_api(request):
        raise ApiError(
            401, "reads require Authorization: Bearer <token> (this server listens off loopback)"
        )
    target = f"{st.base}/login?{urlencode({'next': request.path_qs})}"
    return web.Response(status=303, headers={"Location": target})


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, (DAGNotFoundError, RunNotFoundError)):
        return 404
    if isinstance(exc, (ParamError, DAGError, LineageEventError)):
        return 422
    if isinstance(exc, (EngineStoppedError, StoreError)):
        return 503
    return 409  # the run or DAG is not in a state that allows the action


@web.middleware
async def _errors(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        status, message = exc.status, exc.message
    except RunNotFoundError:
        status, message = 404, f"no run {request.match_info.get('run_id', '')!r}"
    except PodiumError as exc:
        status, message = _status_of(exc), str(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status, message = exc.status, exc.text or exc.reason
        if status == 404 and message.startswith("404"):
            message = f"no such page: {request.path}"
    if _is_api(request):
        response = api.json_response({"error": message}, status)
    else:
        response = page_response(
            request,
            "error.html",
            title=f"Error {status}",
            status=status,
            code=status,
            message=message,
        )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="podium"'
    return response


@web.middleware
async def _headers(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if _is_api(request):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


__all__ = ["make_app"]
