"""The examples, end to end: the customer-analytics pipeline on a real engine and real SQLite files,
and the aiohttp app over real HTTP on loopback.

Expected figures are computed here straight from the generated sources, not with the pipeline's code.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from aiohttp.test_utils import TestClient, TestServer

from engine import Engine, Run, RunState, TaskState
from engine.loader import load_dags
from examples import customer_analytics_yaml, fan_out
from examples.aiohttp_app.app import make_app
from examples.customer_analytics import POOLS, customer_analytics, sample_data, top_customers
from examples.customer_analytics.__main__ import run_once

DAY = "2026-11-25"
CITIES_CSV = Path(__file__).resolve().parents[2] / "examples" / "customer_analytics" / "cities.csv"
VALID_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")


def expected_from_sources(data_dir: Path, day: str) -> dict[str, Any]:
    """Clean customers, their completed orders up to ``day``, and revenue per region."""
    with CITIES_CSV.open(newline="", encoding="utf-8") as f:
        region_of = {row["city"].lower(): row["region"] for row in csv.DictReader(f)}
    region: dict[int, str] = {}
    rows = 0
    with (data_dir / sample_data.CRM_FILE).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows += 1
            email = row["email"].strip().lower()
            if row["name"].strip() and VALID_EMAIL.fullmatch(email):
                city = " ".join(row["city"].split()).lower()
                region.setdefault(int(row["customer_id"]), region_of.get(city, "Unknown"))
    with contextlib.closing(sqlite3.connect(data_dir / sample_data.PRODUCTS_FILE)) as db:
        orders = db.execute(
            "SELECT customer_id, amount_cents FROM orders "
            "WHERE status = 'completed' AND order_date <= ?",
            (day,),
        ).fetchall()
    kept = [(customer, cents) for customer, cents in orders if customer in region]
    by_region: Counter[str] = Counter()
    for customer, cents in kept:
        by_region[region[customer]] += cents
    return {
        "crm_rows": rows,
        "customers": len(region),
        "orders": len(kept),
        "all_orders": len(orders),
        "revenue_cents": sum(cents for _, cents in kept),
        "top_region": by_region.most_common(1)[0][0],
    }


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def run_pipeline(engine: Engine, tmp_path: Path, dag_id: str = "customer_analytics") -> Run:
    params = {"day": DAY, "data_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out")}
    run = await engine.trigger(dag_id, params=params)
    return await run.wait(timeout=60)


async def test_customer_analytics_end_to_end(tmp_path: Path) -> None:
    async with Engine(tmp_path / "podium.db", dags=[customer_analytics], pools=POOLS) as engine:
        run = await run_pipeline(engine, tmp_path)
        assert run.state is RunState.SUCCESS, run.note
        assert {t.state for t in run.tasks.values()} == {TaskState.SUCCESS}
        rerun = await run_pipeline(engine, tmp_path)  # same day again: replaces, never appends
        assert rerun.state is RunState.SUCCESS, rerun.note

    # the two extracts have no edge between them: both were started before either finished
    extracts = [run.tasks["extract_crm"], run.tasks["extract_products"]]
    assert max(t.started_at or 0 for t in extracts) <= min(t.finished_at or 0 for t in extracts)

    expected = expected_from_sources(tmp_path / "data", DAY)
    # the sample data really is messy: duplicates, invalid rows and orders of dropped customers
    assert expected["crm_rows"] > expected["customers"] > 2500
    assert expected["all_orders"] > expected["orders"] > 15_000
    assert run.tasks["extract_crm"].checkpoint == {"rows_read": expected["crm_rows"], "done": True}

    warehouse = tmp_path / "out" / "warehouse.db"
    [(customers, distinct_emails, bad_emails)] = query(
        warehouse,
        "SELECT COUNT(*), COUNT(DISTINCT email), "
        "SUM(email != LOWER(TRIM(email)) OR name != TRIM(name)) FROM dim_customer",
    )
    assert customers == distinct_emails == expected["customers"]
    assert bad_emails == 0
    [(orders, order_cents)] = query(
        warehouse, "SELECT COUNT(*), SUM(amount_cents) FROM fact_orders"
    )
    assert (orders, order_cents) == (expected["orders"], expected["revenue_cents"])
    [(ltv_rows, ltv_cents, ltv_orders)] = query(
        warehouse, "SELECT COUNT(*), SUM(lifetime_value_cents), SUM(order_count) FROM customer_ltv"
    )
    assert (ltv_rows, ltv_cents, ltv_orders) == (customers, order_cents, orders)
    regions = query(
        warehouse,
        "SELECT region, customers, revenue_cents FROM region_summary ORDER BY revenue_cents DESC",
    )
    assert regions[0][0] == expected["top_region"]
    assert sum(r[1] for r in regions) == customers
    assert sum(r[2] for r in regions) == order_cents
    assert query(warehouse, "SELECT run_id, day FROM load_info") == [(rerun.run_id, DAY)]

    load = rerun.tasks["load"].result
    assert load["customers"] == customers and load["top_region"] == expected["top_region"]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f"Top region: <strong>{expected['top_region']}</strong>" in html
    assert html.count("<svg") == 3


async def test_the_yaml_customer_analytics_pipeline_gives_the_same_warehouse(
    tmp_path: Path,
) -> None:
    yaml_dag = customer_analytics_yaml.load_dag()
    assert yaml_dag.order == customer_analytics.order  # the same steps, in the same order
    assert {tid: set(n.upstream) for tid, n in yaml_dag.tasks.items()} == {
        tid: set(n.upstream) for tid, n in customer_analytics.tasks.items()
    }
    async with Engine(tmp_path / "podium.db", dags=[yaml_dag], pools=POOLS) as engine:
        run = await run_pipeline(engine, tmp_path, "customer_analytics_yaml")
    assert run.state is RunState.SUCCESS, run.note
    assert {t.state for t in run.tasks.values()} == {TaskState.SUCCESS}

    expected = expected_from_sources(tmp_path / "data", DAY)
    load = run.tasks["load"].result
    assert (load["customers"], load["orders"], load["revenue_cents"], load["top_region"]) == (
        expected["customers"], expected["orders"], expected["revenue_cents"],
        expected["top_region"],
    )  # fmt: skip
    warehouse = tmp_path / "out" / "warehouse.db"
    assert query(warehouse, "SELECT run_id, day FROM load_info") == [(run.run_id, DAY)]
    assert query(warehouse, "SELECT COUNT(*), SUM(amount_cents) FROM fact_orders") == [
        (expected["orders"], expected["revenue_cents"])
    ]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f"Top region: <strong>{expected['top_region']}</strong>" in html


def test_the_yaml_pipeline_loads_as_a_folder_from_anywhere(monkeypatch: Any) -> None:
    monkeypatch.chdir("/")  # `podium run examples/customer_analytics_yaml/`, from any folder
    loaded = load_dags(customer_analytics_yaml.PIPELINE_YAML.parent)
    assert loaded.errors == []
    assert [d.dag_id for d in loaded.dags] == ["customer_analytics_yaml"]


async def test_fan_out_maps_one_instance_per_file_of_the_day(tmp_path: Path) -> None:
    day_folder = tmp_path / "data" / DAY
    fan_out.pipeline.write_sample_day(day_folder, DAY)
    (day_folder / "notes.txt").write_text("not a CSV")
    expected = []
    for path in sorted(day_folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            amounts = [int(row["amount_cents"]) for row in csv.DictReader(f)]
        expected.append(
            {"file": path.name, "day": DAY, "rows": len(amounts), "cents": sum(amounts)}
        )
    assert len(expected) == len(fan_out.pipeline.REGIONS)

    async with Engine(tmp_path / "podium.db", dags=[fan_out.daily_files]) as engine:
        params = {"day": DAY, "data_dir": str(tmp_path / "data")}
        run = await (await engine.trigger("daily_files", params=params)).wait(timeout=60)
        empty_params = {"day": "2026-11-26", "data_dir": str(tmp_path / "empty")}
        (tmp_path / "empty" / "2026-11-26").mkdir(parents=True)
        empty = await (await engine.trigger("daily_files", params=empty_params)).wait(timeout=60)

    assert run.state is RunState.SUCCESS, run.note
    instances = sorted(t for t in run.tasks if t.startswith("load_file["))
    assert instances == [f"load_file[{i}]" for i in range(len(expected))]
    assert [run.tasks[f"load_file[{i}]"].result for i in range(len(expected))] == expected
    assert run.tasks["load_file"].result == expected  # the list of results, in order
    assert run.tasks["summarize"].result == {
        "day": DAY,
        "files": len(expected),
        "rows": sum(f["rows"] for f in expected),
        "cents": sum(f["cents"] for f in expected),
        "biggest_file": max(expected, key=lambda f: f["cents"])["file"],
    }
    # a day without files maps to no instances, and the summary still runs
    assert empty.state is RunState.SUCCESS, empty.note
    assert empty.tasks["summarize"].result["files"] == 0
    assert not [t for t in empty.tasks if t.startswith("load_file[")]


async def test_the_demo_records_its_assets_and_they_trigger_top_customers(tmp_path: Path) -> None:
    outcome = await run_once(day=DAY, output_dir=tmp_path / "out")
    assert outcome.run.state is RunState.SUCCESS, outcome.run.note
    warehouse = tmp_path / "out" / "warehouse.db"
    written = {e["uri"]: e for e in outcome.written}
    assert set(written) == {
        "sqlite://warehouse/dim_customer",
        "sqlite://warehouse/fact_orders",
        "sqlite://warehouse/dim_product",
        "sqlite://warehouse/customer_ltv",
        "file://customer_analytics/report.html",
    }
    [(orders,)] = query(warehouse, "SELECT COUNT(*) FROM fact_orders")
    fact_orders = written["sqlite://warehouse/fact_orders"]
    assert fact_orders["metadata"]["rows"] == orders and fact_orders["task_id"] == "load"
    assert [c["name"] for c in fact_orders["schema"]][:2] == ["order_id", "customer_id"]
    # orders & customers were new: the asset-triggered DAG ran once, on this run's events
    then = outcome.triggered
    assert then is not None and then.state is RunState.SUCCESS and then.trigger == "assets"
    assert {e["run_id"] for e in then.event["events"]} == {outcome.run.run_id}
    ranked = json.loads((tmp_path / "out" / "top_customers.json").read_text(encoding="utf-8"))
    assert len(ranked) == 10
    assert ranked[0]["lifetime_value_cents"] >= ranked[-1]["lifetime_value_cents"]
    async with Engine(tmp_path / "out" / "podium.db", dags=[customer_analytics, top_customers],
                      pools=POOLS) as engine:  # fmt: skip
        lineage = await engine.run_lineage(outcome.run.run_id)
        catalog = {a["uri"]: a for a in await engine.assets()}
    assert {(i["uri"], i["task_id"]) for i in lineage["inputs"]} == {
        ("crm://customer_analytics/customers.csv", "extract_crm"),
        ("sqlite://shop/products", "extract_products"),
        ("sqlite://warehouse/dim_customer", "report"),  # the report reads what load wrote
        ("sqlite://warehouse/fact_orders", "report"),
        ("sqlite://warehouse/customer_ltv", "report"),
    }
    assert catalog["sqlite://warehouse/fact_orders"]["freshness"]["fresh"] is True
    assert catalog["sqlite://warehouse/fact_orders"]["triggers"] == ["top_customers"]


def test_sample_data_is_deterministic(tmp_path: Path) -> None:
    cities = {"Berlin": "DACH", "Paris": "France", "Lisbon": "Iberia"}
    assert sample_data.ensure_sources(tmp_path / "a", cities)
    assert sample_data.ensure_sources(tmp_path / "b", cities)
    assert not sample_data.ensure_sources(tmp_path / "a", cities)  # already there: kept
    for name in (sample_data.CRM_FILE, sample_data.PRODUCTS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


async def test_aiohttp_app_triggers_and_reports_a_run(tmp_path: Path) -> None:
    async with TestClient(TestServer(make_app(tmp_path / "podium.db"))) as client:
        text = "It was the best of times, it was the worst of times"
        async with client.post("/trigger/word_stats", json={"params": {"text": text}}) as resp:
            assert resp.status == 202
            run_id = (await resp.json())["run_id"]
        with anyio.fail_after(30):
            while True:  # long-poll: each GET waits up to 5 s for the run to finish
                async with client.get(f"/runs/{run_id}", params={"wait": "5"}) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                if body["finished"]:
                    break
        assert body["state"] == "success", body
        assert body["tasks"]["summarize"]["result"] == {
            "words": 12,
            "distinct": 7,
            "top": {"it": 2, "was": 2, "the": 2, "of": 2, "times": 2},
            "longest": "times",
        }

        async with client.post("/trigger/no_such_dag") as resp:
            assert resp.status == 404
        async with client.post("/trigger/word_stats", json={"params": {"txt": "typo"}}) as resp:
            assert resp.status == 400
            assert "txt" in (await resp.json())["error"]
        async with client.get("/runs/no-such-run") as resp:
            assert resp.status == 404
