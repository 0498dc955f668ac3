"""An aiohttp web app with a Podium engine inside it.

The engine lives in the app's ``cleanup_ctx``: it starts with the app and stops with it (running tasks
get the engine's shutdown grace), on the same event loop as the request handlers.

    POST /trigger/{dag_id}    body (optional): {"params": {...}, "key": "..."}  -> 202 {"run_id": ...}
    GET  /runs/{run_id}       ?wait=SECONDS long-polls until the run is finished (at most 30 s)

Engine errors become JSON errors at this boundary: unknown DAG or run -> 404, bad params -> 400,
engine stopping -> 503.

Run it: ``python -m examples.aiohttp_app.app --db /tmp/podium.db --port 8080``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from engine import DAG, Engine, PodiumError
from examples.word_stats import MAX_WAIT, http_status, run_json, word_stats

PODIUM = web.AppKey("podium", Engine)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def podium_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Translate engine errors into JSON responses."""
    try:
        return await handler(request)
    except PodiumError as exc:
        return _error(http_status(exc), str(exc))


async def trigger(request: web.Request) -> web.Response:
    body: Any = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:  # not JSON, or not UTF-8
            return _error(400, "the body must be JSON")
    usage = 'the body must be {"params": {...}, "key": "..."}, both optional'
    if not isinstance(body, dict):
        return _error(400, usage)
    params, key = body.get("params") or {}, body.get("key")
    if not isinstance(params, dict):
        return _error(400, usage)
    if key is not None and not isinstance(key, str):
        return _error(400, "key must be a string")
    run = await request.app[PODIUM].trigger(request.match_info["dag_id"], params=params, key=key)
    return web.json_response(run_json(run), status=202)


async def get_run(request: web.Request) -> web.Response:
    engine = request.app[PODIUM]
    run_id = request.match_info["run_id"]
    try:
        wait = min(float(request.query.get("wait", 0)), MAX_WAIT)
    except ValueError:
        return _error(400, "wait must be a number of seconds")
    if wait > 0:
        try:
            run = await engine.wait_run(run_id, timeout=wait)
        except TimeoutError:
            run = await engine.get_run(run_id)
    else:
        run = await engine.get_run(run_id)
    return web.json_response(run_json(run))


def make_app(
    db_path: str | os.PathLike[str], dags: Iterable[DAG] = (word_stats,)
) -> web.Application:
    """The web app, serving ``dags`` with an engine on the state file ``db_path``."""
    dags = list(dags)

    async def podium_engine(app: web.Application) -> AsyncIterator[None]:
        async with Engine(db_path, dags=dags) as engine:
            app[PODIUM] = engine
            yield

    app = web.Application(middlewares=[podium_errors])
    app.cleanup_ctx.append(podium_engine)
    app.router.add_post("/trigger/{dag_id}", trigger)
    app.router.add_get("/runs/{run_id}", get_run)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The Podium aiohttp example app")
    parser.add_argument("--db", default="podium.db", help="state file (default: podium.db)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(args.db), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
