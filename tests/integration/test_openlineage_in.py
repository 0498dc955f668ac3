"""OpenLineage in (engine/lineage_in.py, ``POST /api/v1/lineage``) against a real server: events
built with the official client's classes and sent by its HTTP transport (with the API token as its
api key) join the lineage graph; an external job's output triggers an ``OnAssets`` DAG exactly once;
bad bodies get a 4xx and store nothing."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

from engine import DAG, Asset, Context, Engine, RunNotFoundError, dag, task
from engine.lineage_events import MAX_EVENT_BYTES
from sensors import OnAssets
from tests.openlineage_spec import check_run_event

TOKEN = "lineage-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DBT = "https://github.com/OpenLineage/OpenLineage/tree/1.0.0/integration/dbt"
RAW = ("postgres://dwh:5432", "public.raw_orders")
ORDERS = ("postgres://dwh:5432", "analytics.orders")
ORDERS_URI = "postgres://dwh:5432/analytics.orders"
consumed: list[Any] = []


@task
async def use_orders(ctx: Context) -> int:
    consumed.append(ctx.event)
    return len(ctx.event["events"])


@dag(dag_id="on_orders", triggers=[OnAssets(Asset(ORDERS_URI))])
def on_orders() -> None:
    use_orders()


@task
def nothing() -> None:
    return None


@dag(dag_id="plain")
def plain() -> None:
    nothing()


@asynccontextmanager
async def served(tmp_path: Path, dags: list[DAG]) -> AsyncIterator[tuple[Engine, str]]:
    async with Engine(
        tmp_path / "podium.db",
        dags=dags,
        sensors=False,
        http="127.0.0.1:0",
        http_token=TOKEN,
        shutdown_grace=1,
    ) as podium:
        yield podium, f"http://127.0.0.1:{podium.http_port}"


def client_for(url: str) -> OpenLineageClient:
    """The official client's HTTP transport pointed at Podium, the token as its API key."""
    return OpenLineageClient(
        config={
            "transport": {
                "type": "http",
                "url": url,
                "endpoint": "api/v1/lineage",
                "auth": {"type": "api_key", "apiKey": TOKEN},
                "retry": {"total": 0, "connect": 0, "read": 0},
            }
        }
    )


def dbt_event(event_type: RunState, run_id: str, *, rows: int = 42) -> RunEvent:
    """A dbt model run as dbt's OpenLineage integration reports it (made with the client's classes)."""
    outputs = [
        OutputDataset(
            namespace=ORDERS[0],
            name=ORDERS[1],
            facets={
                "schema": schema_dataset.SchemaDatasetFacet(
                    fields=[
                        schema_dataset.SchemaDatasetFacetFields(name="id", type="INTEGER"),
                        schema_dataset.SchemaDatasetFacetFields(name="amount", type="NUMERIC"),
                    ]
                )
            },
            outputFacets={
                "outputStatistics": (
                    output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                        rowCount=rows
                    )
                )
            },
        )
    ]
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId="0190a4c8-58ac-7b5e-9d3a-2c8b0a1f6e11"),
        job=parent_run.Job(namespace="dbt", name="dbt-run-analytics"),
    )
    return RunEvent(
        eventType=event_type,
        eventTime="2026-03-01T04:05:06.123456+00:00",
        run=Run(runId=run_id, facets={"parent": parent}),
        job=Job(namespace="dbt", name="analytics.orders"),
        inputs=[InputDataset(namespace=RAW[0], name=RAW[1])],
        outputs=outputs,
        producer=DBT,
    )


async def emit(client: OpenLineageClient, event: RunEvent) -> None:
    check_run_event(Serde.to_dict(event))  # what we send is a valid run event
    await anyio.to_thread.run_sync(client.emit, event)


async def test_another_tools_job_joins_the_lineage_graph(tmp_path: Path) -> None:
    run_id = str(uuid.uuid4())
    async with served(tmp_path, [plain]) as (podium, url):
        client = client_for(url)
        await emit(client, dbt_event(RunState.START, run_id))
        started = await podium.run_lineage(run_id)
        assert started["external"]["state"] == "START"
        assert started["outputs"] == []  # a START's outputs are a plan, not data written
        await emit(client, dbt_event(RunState.COMPLETE, run_id))
        lineage = await podium.run_lineage(run_id)
        assets = {a["uri"]: a for a in await podium.assets()}
        # the same COMPLETE again (a client retrying): nothing new
        async with aiohttp.ClientSession() as http:
            body = Serde.to_json(dbt_event(RunState.COMPLETE, run_id))
            async with http.post(
                f"{url}/api/v1/lineage",
                data=body,
                headers={**AUTH, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 201, await resp.text()
                again = await resp.json()
        assert again["asset_events"] == [] and again["outputs"] == [ORDERS_URI]
        assert len(await podium.asset_events(ORDERS_URI)) == 1
    assert lineage["dag_id"] is None
    assert lineage["external"] == {
        "namespace": "dbt",
        "job": "analytics.orders",
        "state": "COMPLETE",
        "event_time": pytest.approx(1772337906.123456),
        "producer": DBT,
        "parent_run_id": "0190a4c8-58ac-7b5e-9d3a-2c8b0a1f6e11",
    }
    assert [(i["uri"], i["kind"]) for i in lineage["inputs"]] == [
        ("postgres://dwh:5432/public.raw_orders", "openlineage")
    ]
    (out,) = lineage["outputs"]
    assert out["uri"] == ORDERS_URI
    assert out["event_id"] == f"openlineage:{run_id}:{ORDERS_URI}"
    assert out["run_id"] == run_id
    assert out["metadata"]["rows"] == 42
    assert out["metadata"]["openlineage"]["job"] == {"namespace": "dbt", "name": "analytics.orders"}
    assert out["schema"] == [
        {"name": "id", "type": "INTEGER"},
        {"name": "amount", "type": "NUMERIC"},
    ]
    assert set(assets) == {ORDERS_URI, "postgres://dwh:5432/public.raw_orders"}
    assert assets[ORDERS_URI]["last_event"]["run_id"] == run_id


async def test_an_external_jobs_output_triggers_an_onassets_dag_once(tmp_path: Path) -> None:
    consumed.clear()
    run_id = str(uuid.uuid4())
    async with served(tmp_path, [on_orders]) as (podium, url):
        client = client_for(url)
        await emit(client, dbt_event(RunState.START, run_id))
        assert (await podium.asset_condition("on_orders"))["met"] is False
        await emit(client, dbt_event(RunState.COMPLETE, run_id))
        with anyio.fail_after(20):
            while not (runs := await podium.runs("on_orders")):
                await anyio.sleep(0.02)
        (run,) = runs
        assert (await run.wait(timeout=20)).state == "success"
        # sent again: the asset event exists, nothing is queued, no second run
        await emit(client, dbt_event(RunState.COMPLETE, run_id))
        condition = await podium.asset_condition("on_orders")
        assert condition["waiting"] == {} and condition["met"] is False
        assert len(await podium.runs("on_orders")) == 1
        inputs = (await podium.run_lineage(run.run_id))["inputs"]
    (event,) = consumed
    assert event["source"] == "assets"
    assert [e["event_id"] for e in event["events"]] == [f"openlineage:{run_id}:{ORDERS_URI}"]
    assert [(i["uri"], i["kind"]) for i in inputs] == [(ORDERS_URI, "asset")]


def _good() -> dict[str, Any]:
    return Serde.to_dict(dbt_event(RunState.COMPLETE, str(uuid.uuid4())))


def _without(path: str) -> dict[str, Any]:
    event = _good()
    *parents, last = path.split(".")
    target = event
    for p in parents:
        target = target[p]
    del target[last]
    return event


def _with(path: str, value: Any) -> dict[str, Any]:
    event = _good()
    *parents, last = path.split(".")
    target = event
    for p in parents:
        target = target[p] if not p.isdigit() else target[int(p)]
    target[last] = value
    return event


BAD: list[tuple[str, bytes | dict[str, Any] | list[Any], int, str]] = [
    ("not json", b"{not json", 400, "not valid JSON"),
    ("an array", [1, 2], 422, "must be a JSON object"),
    ("no run", _without("run"), 422, "'run' is required"),
    ("no job name", _without("job.name"), 422, "'job.name' is required"),
    ("no eventTime", _without("eventTime"), 422, "'eventTime' is required"),
    ("bad eventTime", _with("eventTime", "yesterday"), 422, "ISO 8601"),
    ("bad eventType", _with("eventType", "DONE"), 422, "'eventType' must be one of"),
    ("bad runId", _with("run.runId", "run-1"), 422, "'run.runId' must be a UUID"),
    ("bad output", _with("outputs", [{"namespace": "x"}]), 422, "'outputs[0].name' is required"),
    ("dataset event", {"eventTime": "2026-01-01T00:00:00Z", "producer": DBT,
                       "schemaURL": "https://x/y", "dataset": {"namespace": "a", "name": "b"}},
     422, "only OpenLineage RunEvents"),
]  # fmt: skip


async def test_bad_posts_get_a_4xx_and_store_nothing(tmp_path: Path) -> None:
    async with served(tmp_path, [plain]) as (podium, url):
        async with aiohttp.ClientSession(base_url=url) as http:
            for name, body, status, message in BAD:
                kwargs: dict[str, Any] = (
                    {"data": body, "headers": {**AUTH, "Content-Type": "application/json"}}
                    if isinstance(body, bytes)
                    else {"json": body, "headers": AUTH}
                )
                async with http.post("/api/v1/lineage", **kwargs) as resp:
                    text = await resp.text()
                    assert resp.status == status, (name, text)
                    assert message in (await resp.json())["error"], (name, text)
            # too large: refused by its Content-Length, and when streamed without one
            huge = b'{"pad": "' + b"x" * MAX_EVENT_BYTES + b'"}'
            headers = {**AUTH, "Content-Type": "application/json"}
            big = io.BytesIO(huge)
            async with http.post("/api/v1/lineage", data=big, headers=headers) as resp:
                assert resp.status == 413, await resp.text()
                assert "at most" in (await resp.json())["error"]

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(0, len(huge), 64 * 1024):
                    yield huge[i : i + 64 * 1024]

            async with http.post("/api/v1/lineage", data=chunks(), headers=headers) as resp:
                assert resp.status == 413, await resp.text()
            # not JSON content, no token, a wrong token: refused before anything is read
            async with http.post(
                "/api/v1/lineage", data=b"{}", headers={**AUTH, "Content-Type": "text/plain"}
            ) as resp:
                assert resp.status == 415
            async with http.post("/api/v1/lineage", json=_good()) as resp:
                assert resp.status == 401
            wrong = {"Authorization": "Bearer nope"}
            async with http.post("/api/v1/lineage", json=_good(), headers=wrong) as resp:
                assert resp.status == 401
        assert await podium.assets() == []
        with pytest.raises(RunNotFoundError):
            await podium.run_lineage(str(uuid.uuid4()))
    with contextlib.closing(sqlite3.connect(tmp_path / "podium.db")) as db:
        for table in ("lineage_runs", "asset_events", "run_inputs", "assets"):
            assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table
