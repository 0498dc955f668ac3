"""The catalog over a real engine and state file: freshness, schema changes, the lineage graph one
hop at a time, the JSON API (URIs percent-encoded in the path, pages by key) and the pages' HTML."""

from __future__ import annotations

import functools
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from engine import Asset, Context, Engine, ManualClock, dag, task
from sensors import OnAssets

CRM = Asset("s3://landing/crm/", name="CRM export")
ORDERS = Asset("postgres://dwh/public.orders", name="orders", fresh_within=3600)
CUSTOMERS = Asset("postgres://dwh/public.customers", name="customers", fresh_within=60)
REPORT = Asset("file:///reports/daily.html", name="daily report")

V1 = [{"name": "id", "type": "int"}, {"name": "amount", "type": "int"}, {"name": "zip"}]
V2 = [{"name": "id", "type": "int"}, {"name": "amount", "type": "float"}, {"name": "region"}]


@task(outlets=[ORDERS])
async def load_orders(ctx: Context, rows: int = 10, v: int = 1) -> int:
    await ctx.asset_event(ORDERS.uri, metadata={"rows": rows}, schema=V1 if v == 1 else V2)
    return rows


@task(inlets=[CRM], outlets=[CUSTOMERS])
def load_customers() -> str:
    return "ok"


@dag
def orders_dag(rows: int = 10, v: int = 1) -> None:
    load_orders(rows, v)


@dag
def customers_dag() -> None:
    load_customers()


@task(inlets=[ORDERS, CUSTOMERS], outlets=[REPORT])
async def build_report() -> str:
    return "built"


@dag(triggers=[OnAssets(ORDERS & CUSTOMERS)])
def report() -> None:
    build_report()


ALL = [orders_dag, customers_dag, report]


@asynccontextmanager
async def served(db: Path, clock: ManualClock) -> AsyncIterator[tuple[Engine, str]]:
    from engine.web import serve

    async with Engine(db, dags=ALL, clock=clock, sensors=False, shutdown_grace=1) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, eng, "127.0.0.1", 0, "t"))
            yield eng, f"http://127.0.0.1:{port}"
            tg.cancel_scope.cancel()


async def get(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as resp:
        assert resp.status == status, await resp.text()
        if resp.content_type == "application/json":
            return await resp.json()
        return await resp.text()


async def test_assets_carry_freshness_schema_changes_producers_and_consumers(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1_000_000.0)
    async with served(tmp_path / "podium.db", clock) as (podium, _):
        assert (await (await podium.trigger("orders_dag", {"rows": 5})).wait(timeout=10)).state == (
            "success"
        )
        clock.advance(100)
        done = await (await podium.trigger("orders_dag", {"rows": 7, "v": 2})).wait(timeout=10)
        assert done.state == "success"
        clock.advance(30)
        listed = {a["uri"]: a for a in await podium.assets()}
        one = await podium.asset(ORDERS.uri)
        missing = await podium.asset("s3://nowhere/")
    orders = listed[ORDERS.uri]
    assert one is not None and one["uri"] == ORDERS.uri and missing is None
    assert orders["name"] == "orders" and orders["producers"] == ["orders_dag.load_orders"]
    assert orders["consumers"] == ["report.build_report"] and orders["triggers"] == ["report"]
    assert orders["last_event"]["run_id"] == done.run_id
    assert orders["last_event"]["metadata"] == {"rows": 7}
    assert orders["schema"] == V2
    assert orders["schema_changes"] == {
        "added": ["region"],
        "removed": ["zip"],
        "changed": [{"name": "amount", "from": {"type": "int"}, "to": {"type": "float"}}],
    }
    fresh = orders["freshness"]
    assert fresh["fresh"] is True and fresh["fresh_within"] == 3600
    assert fresh["deadline"] == orders["last_event"]["ts"] + 3600
    # never written, declared 130 s ago with fresh_within=60: stale since its declaration
    customers = listed[CUSTOMERS.uri]
    assert customers["last_event"] is None
    assert customers["freshness"]["fresh"] is False
    assert customers["freshness"]["overdue"] == 130 - 60
    assert listed[CRM.uri]["freshness"] is None and listed[CRM.uri]["consumers"] == [
        "customers_dag.load_customers"
    ]


async def test_lineage_hops_from_an_asset_to_tasks_dags_and_further_assets(
    tmp_path: Path,
) -> None:
    async with served(tmp_path / "podium.db", ManualClock(1_000_000.0)) as (podium, _):
        orders = await podium.lineage(uri=ORDERS.uri)
        task_hop = await podium.lineage(dag_id="report", task_id="build_report")
        dag_hop = await podium.lineage(dag_id="report")
        unknown = await podium.lineage(uri="s3://nowhere/")
    assert orders["node"] == {
        "kind": "asset",
        "id": f"asset:{ORDERS.uri}",
        "uri": ORDERS.uri,
        "label": "orders",
        "known": True,
    }
    assert [n["id"] for n in orders["upstream"]] == ["task:orders_dag:load_orders"]
    assert [n["id"] for n in orders["downstream"]] == ["task:report:build_report", "dag:report"]
    assert [n["uri"] for n in task_hop["upstream"]] == [ORDERS.uri, CUSTOMERS.uri]
    assert [n["uri"] for n in task_hop["downstream"]] == [REPORT.uri]
    assert [n["uri"] for n in dag_hop["upstream"]] == [ORDERS.uri, CUSTOMERS.uri]
    assert [n["uri"] for n in dag_hop["downstream"]] == [REPORT.uri]
    assert unknown["node"]["known"] is False and unknown["upstream"] == unknown["downstream"] == []


async def test_api_pages_assets_by_uri_and_events_by_seq_with_encoded_uris(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1_000_000.0)
    async with served(tmp_path / "podium.db", clock) as (podium, url):
        runs = []
        for rows in (1, 2, 3):
            runs.append(await (await podium.trigger("orders_dag", {"rows": rows})).wait(timeout=10))
            clock.advance(1)
        enc = quote(ORDERS.uri, safe="")
        async with aiohttp.ClientSession() as http:
            first = await get(http, f"{url}/api/assets?limit=2")
            second = await get(http, f"{url}/api/assets?limit=2&after={quote(first['next_after'])}")
            filtered = await get(http, f"{url}/api/assets?q=customers")
            one = await get(http, f"{url}/api/assets/{enc}")
            page1 = await get(http, f"{url}/api/assets/{enc}/events?limit=2")
            page2 = await get(
                http, f"{url}/api/assets/{enc}/events?limit=2&before={page1['next_before']}"
            )
            lineage = await get(http, f"{url}/api/lineage?uri={enc}")
            nothing = await get(http, f"{url}/api/assets/{quote('s3://nowhere/', safe='')}", 404)
            bad = await get(http, f"{url}/api/lineage", 400)
            bad_before = await get(http, f"{url}/api/assets/{enc}/events?before=x", 400)
            endpoints = (await get(http, f"{url}/api"))["endpoints"]
    uris = sorted(a.uri for a in (CRM, ORDERS, CUSTOMERS, REPORT))
    assert [a["uri"] for a in first["assets"]] == uris[:2]
    assert [a["uri"] for a in second["assets"]] == uris[2:] and second["next_after"] is None
    assert [a["uri"] for a in filtered["assets"]] == [CUSTOMERS.uri]
    assert one["url"] == f"/assets/{enc}" and one["last_event"]["run_url"] == (
        f"/runs/{runs[-1].run_id}"
    )
    assert [e["metadata"]["rows"] for e in page1["events"]] == [3, 2]
    assert [e["metadata"]["rows"] for e in page2["events"]] == [1]
    assert page2["next_before"] is None
    assert lineage["node"]["url"] == f"/assets/{enc}"
    assert lineage["upstream"][0]["expand"] == "/api/lineage?dag=orders_dag&task=load_orders"
    assert lineage["downstream"][-1]["url"] == "/dags/report"
    assert "s3://nowhere/" in nothing["error"] and "uri" in bad["error"]
    assert "before" in bad_before["error"]
    assert "GET /api/assets/{uri}/events" in endpoints and "GET /api/lineage" in endpoints


async def test_pages_link_assets_runs_and_the_dag_condition(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000.0)
    async with served(tmp_path / "podium.db", clock) as (podium, url):
        run = await (await podium.trigger("orders_dag", {"rows": 1234})).wait(timeout=10)
        clock.advance(120)
        enc = quote(ORDERS.uri, safe="")
        async with aiohttp.ClientSession() as http:
            assets = html.unescape(await get(http, f"{url}/assets"))
            asset = html.unescape(await get(http, f"{url}/assets/{enc}"))
            run_page = html.unescape(await get(http, f"{url}/runs/{run.run_id}"))
            dag_page = html.unescape(await get(http, f"{url}/dags/report"))
            missing = await get(http, f"{url}/assets/{quote('s3://nowhere/', safe='')}", 404)
    assert f'href="/assets/{enc}"' in assets and "1,234" in assets
    assert "stale" in assets  # customers: fresh_within=60, never written, the clock moved on
    assert ORDERS.uri in asset and f'href="/runs/{run.run_id}"' in asset
    assert 'data-id="task:orders_dag:load_orders"' in asset
    assert 'data-expand="/api/lineage?dag=orders_dag&task=load_orders"' in asset
    assert f'href="/assets/{enc}"' in run_page and "1,234 rows" in run_page
    assert "why has it not run?" in dag_page and "1 new event" in dag_page
    assert f'href="/assets/{quote(CUSTOMERS.uri, safe="")}"' in dag_page
    assert "no asset" in missing
