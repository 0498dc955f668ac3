"""The catalog pages in a real headless Chromium: the Assets page, an asset's page whose lineage
graph expands hop by hop through ``/api/lineage`` (edges drawn between the new nodes), and the
links from the run page and the DAG page. No console, CSP or script errors."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import anyio

from engine import Asset, Context, Engine, dag, task
from engine.web import serve
from sensors import OnAssets
from tests.integration.test_web_ui import chromium

CRM = Asset("s3://landing/crm/", name="CRM export")
ORDERS = Asset("postgres://dwh/public.orders", name="orders", fresh_within=3600)
CUSTOMERS = Asset("postgres://dwh/public.customers", name="customers")
REPORT = Asset("file:///reports/daily.html", name="daily <report>")


@task(outlets=[ORDERS])
async def load_orders(ctx: Context) -> None:
    await ctx.asset_event(ORDERS.uri, metadata={"rows": 1234}, schema=["id", "amount"])


@task(inlets=[CRM], outlets=[CUSTOMERS])
async def load_customers() -> None: ...


@dag
def warehouse() -> None:
    load_orders()
    load_customers()


@task(inlets=[ORDERS, CUSTOMERS], outlets=[REPORT])
async def build_report() -> None: ...


@dag(triggers=[OnAssets(ORDERS & CUSTOMERS)])
def report() -> None:
    build_report()


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    async with Engine(
        tmp_path / "podium.db", dags=[warehouse, report], sensors=False, shutdown_grace=1
    ) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, eng, "127.0.0.1", 0, "ui-token"))
            yield eng, f"http://127.0.0.1:{port}"
            tg.cancel_scope.cancel()


async def test_asset_lineage_expands_hop_by_hop_and_pages_link_each_other(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (engine, url), chromium(tmp_path) as browser:
        run = await (await engine.trigger("warehouse")).wait(20)
        assert run.state == "success"
        page = await browser.new_page()

        await page.goto(f"{url}/assets")
        rows = await page.js("[...document.querySelectorAll('tr.asset')].map(r => r.dataset.uri)")
        assert rows == sorted(a.uri for a in (CRM, ORDERS, CUSTOMERS, REPORT))
        cells = await page.js(
            "document.querySelector('tr.asset[data-uri=\"postgres://dwh/public.orders\"]')"
            ".innerText"
        )
        assert "warehouse.load_orders" in cells and "report.build_report" in cells
        assert "1,234" in cells and "fresh" in cells and "2 columns" in cells
        # the report's name is text, not markup
        assert await page.js("document.body.innerText.includes('daily <report>')")

        await page.goto(f"{url}/assets/{quote(CUSTOMERS.uri, safe='')}")
        start = await page.js(
            "[...document.querySelectorAll('#lineage .lin-node')].map(n => n.dataset.id)"
        )
        assert start == [
            "task:warehouse:load_customers",
            f"asset:{CUSTOMERS.uri}",
            "task:report:build_report",
            "dag:report",
        ]
        assert await page.js("document.querySelectorAll('#lineage path.lin-edge').length") == 3
        # upstream: the producer's inlet (the CRM export) ...
        await page.js(
            'document.querySelector(\'.lin-node[data-id="task:warehouse:load_customers"]'
            " button.lin-more').click()"
        )
        await page.until(f"!!document.querySelector('.lin-node[data-id=\"asset:{CRM.uri}\"]')")
        crm = f'.lin-node[data-id="asset:{CRM.uri}"]'
        assert await page.js(f"document.querySelector('{crm} a').textContent") == "CRM export"
        assert (
            await page.js(
                f"document.querySelector('.lin-node[data-id=\"asset:{CRM.uri}\"]').dataset.depth"
            )
            == "-2"
        )
        # ... downstream: the report task's outlet, then who reads that (nobody: an end)
        await page.js(
            'document.querySelector(\'.lin-node[data-id="task:report:build_report"]'
            " button.lin-more').click()"
        )
        report_id = f"asset:{REPORT.uri}"
        await page.until(f"!!document.querySelector('.lin-node[data-id=\"{report_id}\"]')")
        label = await page.js(
            f"document.querySelector('.lin-node[data-id=\"{report_id}\"] a').textContent"
        )
        assert label == "daily <report>"  # the node's name, as text
        await page.js(
            f"document.querySelector('.lin-node[data-id=\"{report_id}\"] button.lin-more').click()"
        )
        await page.until(
            f"document.querySelector('.lin-node[data-id=\"{report_id}\"]')"
            ".classList.contains('lin-end')"
        )
        assert await page.js("document.querySelectorAll('#lineage path.lin-edge').length") == 5
        # a node's link opens its page
        href = await page.js(
            f"document.querySelector('.lin-node[data-id=\"asset:{CRM.uri}\"] a').href"
        )
        assert href == f"{url}/assets/{quote(CRM.uri, safe='')}"

        await page.goto(f"{url}/runs/{run.run_id}")
        outputs = await page.js(
            "[...document.querySelectorAll('ul.run-outputs a.asset-link')].map(a => a.textContent)"
        )
        assert sorted(outputs) == sorted([ORDERS.uri, CUSTOMERS.uri])
        assert await page.js("document.querySelector('ul.run-inputs a').textContent") == CRM.uri

        # the warehouse run wrote both: the report DAG ran on them and consumed them, so its
        # condition waits again, each part unmet until a new event arrives
        with anyio.fail_after(20):
            while not (consumer := await engine.runs(dag_id="report")):
                await anyio.sleep(0.02)
        assert (await consumer[0].wait(20)).state == "success"
        await page.goto(f"{url}/dags/report")
        unmet = await page.js(
            "[...document.querySelectorAll('#asset-condition li.unmet-part a')]"
            ".map(a => a.textContent)"
        )
        assert sorted(unmet) == sorted([ORDERS.uri, CUSTOMERS.uri])
        why = await page.js("document.querySelector('#asset-condition').innerText")
        assert "why has it not run?" in why and "no new event since the last run" in why
        assert browser.errors == []
