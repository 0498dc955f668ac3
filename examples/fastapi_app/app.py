"""A FastAPI app with a Podium engine inside it.

The engine lives in the app's lifespan: ``async with Engine(...)`` wraps the lifespan's ``yield``, so it
starts before the first request is served and stops (running tasks get the engine's shutdown grace)
after the last, on the server's event loop (uvicorn's, uvloop when it is installed).

    POST /trigger/{dag_id}    body (optional): {"params": {...}, "key": "..."}  -> 202 the run
    GET  /runs/{run_id}       ?wait=SECONDS long-polls until the run is finished (at most 30 s)
    GET  /metrics             the app's own Prometheus metrics, Podium's among them

Engine errors become JSON errors at this boundary: unknown DAG or run -> 404, bad params -> 400,
engine stopping -> 503 (a body FastAPI cannot validate is its usual 422).

Run it: ``python -m examples.fastapi_app.app --db /tmp/podium.db --port 8080``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import BaseModel

from engine import DAG, Engine, PodiumError
from examples.word_stats import MAX_WAIT, http_status, run_json, word_stats


class TriggerBody(BaseModel):
    params: dict[str, Any] = {}
    key: str | None = None


def get_engine(request: Request) -> Engine:
    """The engine the lifespan started (FastAPI passes lifespan state on to each request)."""
    engine: Engine = request.state.engine
    return engine


PodiumEngine = Annotated[Engine, Depends(get_engine)]


def make_app(db_path: str | os.PathLike[str], dags: Iterable[DAG] = (word_stats,)) -> FastAPI:
    """The web app, serving ``dags`` with an engine on the state file ``db_path``."""
    dags = list(dags)
    registry = CollectorRegistry()  # the app's own; prometheus_client's global one works the same
    triggered = Counter(
        "wordapp_runs_triggered",
        "Runs triggered through this app's API.",
        ["dag"],
        registry=registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Podium's metrics go on the app's registry while the engine runs
        async with Engine(db_path, dags=dags, metrics_registry=registry) as engine:
            yield {"engine": engine}

    app = FastAPI(title="Podium word statistics", lifespan=lifespan)

    @app.exception_handler(PodiumError)
    async def podium_error(request: Request, exc: PodiumError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=http_status(exc))

    @app.post("/trigger/{dag_id}", status_code=202)
    async def trigger(
        dag_id: str, engine: PodiumEngine, body: TriggerBody | None = None
    ) -> dict[str, Any]:
        body = body or TriggerBody()
        run = await engine.trigger(dag_id, params=body.params, key=body.key)
        triggered.labels(dag=dag_id).inc()
        return run_json(run)

    @app.get("/runs/{run_id}")
    async def get_run(
        run_id: str,
        engine: PodiumEngine,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
    ) -> dict[str, Any]:
        if wait > 0:
            try:
                return run_json(await engine.wait_run(run_id, timeout=wait))
            except TimeoutError:
                pass
        return run_json(await engine.get_run(run_id))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The Podium FastAPI example app")
    parser.add_argument("--db", default="podium.db", help="state file (default: podium.db)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    # lifespan="on": an engine that cannot start stops the server instead of being ignored
    uvicorn.run(make_app(args.db), host=args.host, port=args.port, lifespan="on")


if __name__ == "__main__":
    main()
