"""The FastAPI example served by a real uvicorn on loopback, on asyncio's loop and on uvloop: a run
triggered over HTTP finishes, the app's ``/metrics`` carries Podium's metrics next to its own, and
after the server stops the state file holds the finished run."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from engine import Engine, RunState
from examples.fastapi_app.app import make_app
from examples.word_stats import word_stats

pytestmark = pytest.mark.each_loop  # asyncio's default loop and uvloop (tests/conftest.py)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on this test's loop, on a free loopback port; yields its URL.

    The socket listens before uvicorn starts, so a request sent at once waits in the backlog until
    the lifespan has started the engine and uvicorn accepts: no polling for readiness. Leaving the
    block asks uvicorn to exit and waits for it, lifespan shutdown (the engine's stop) included.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        host, port = sock.getsockname()
        config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://{host}:{port}"
            finally:
                server.should_exit = True


def samples(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``name`` in a Prometheus text exposition, by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name
    }


async def wait_finished(http: aiohttp.ClientSession, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:  # long-poll: each GET waits up to 5 s for the run to finish
            async with http.get(f"/runs/{run_id}", params={"wait": "5"}) as resp:
                assert resp.status == 200
                body: dict[str, Any] = await resp.json()
            if body["finished"]:
                return body


async def test_fastapi_app_on_uvicorn_runs_a_dag_and_serves_podium_metrics(tmp_path: Path) -> None:
    db = tmp_path / "podium.db"
    text = "It was the best of times, it was the worst of times"
    async with serving(make_app(db)) as url, aiohttp.ClientSession(url) as http:
        async with http.post("/trigger/word_stats", json={"params": {"text": text}}) as resp:
            assert resp.status == 202
            run_id = (await resp.json())["run_id"]
        body = await wait_finished(http, run_id)
        assert body["state"] == "success", body
        expected_summary = {
            "words": 12,
            "distinct": 7,
            "top": {"it": 2, "was": 2, "the": 2, "of": 2, "times": 2},
            "longest": "times",
        }
        assert body["tasks"]["summarize"]["result"] == expected_summary

        async with http.post("/trigger/no_such_dag") as resp:
            assert resp.status == 404
        async with http.post("/trigger/word_stats", json={"params": {"txt": "typo"}}) as resp:
            assert resp.status == 400
            assert "txt" in (await resp.json())["error"]
        async with http.get("/runs/no-such-run") as resp:
            assert resp.status == 404
        async with http.get(f"/runs/{run_id}", params={"wait": "31"}) as resp:
            assert resp.status == 422  # over MAX_WAIT: FastAPI's own validation

        async with http.get("/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            exposition = await resp.text()

    # Podium's metrics and the app's own, from one registry on one endpoint
    assert samples(exposition, "podium_runs_total") == {
        (("dag", "word_stats"), ("state", "success")): 1.0
    }
    assert samples(exposition, "podium_task_slots") == {(): 64.0}
    assert samples(exposition, "wordapp_runs_triggered_total") == {(("dag", "word_stats"),): 1.0}
    histogram = samples(exposition, "podium_task_duration_seconds_count")
    assert histogram == {(("dag", "word_stats"),): 4.0}  # four tasks, one try each

    # the server stopped the engine cleanly: the state file holds the finished run and its results
    async with Engine(db, dags=[word_stats], sensors=False) as engine:
        run = await engine.get_run(run_id)
    assert run.state is RunState.SUCCESS
    assert run.tasks["summarize"].result == expected_summary
