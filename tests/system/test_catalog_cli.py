"""``podium assets`` and ``podium lineage``, run as real subprocesses over a state file an engine
wrote (the catalog's producers and consumers come from the DAG descriptions it stored)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.system.test_cli import podium

PIPELINE = """
from engine import Asset, Context, dag, task

ORDERS = Asset("postgres://dwh/public.orders", name="orders", fresh_within=3600)

@task(inlets=["s3://landing/crm/"], outlets=[ORDERS])
async def load(ctx: Context, rows: int = 3) -> int:
    await ctx.asset_event(ORDERS.uri, metadata={"rows": rows}, schema=["id", "amount"])
    return rows

@task(inlets=[ORDERS], outlets=["file:///reports/daily.html"])
async def report(n: int) -> str:
    return "ok"

@dag
def warehouse(rows: int = 3):
    report(load(rows))
"""


def test_assets_and_lineage_read_the_state_file(tmp_path: Path) -> None:
    dags = tmp_path / "pipelines"
    dags.mkdir()
    (dags / "warehouse.py").write_text(PIPELINE)
    db = tmp_path / "podium.db"
    ran = podium(db, "trigger", "warehouse", "--param", "rows=42", "--wait", "--path", str(dags))
    assert ran.returncode == 0, ran.stderr

    listed = podium(db, "assets", "--json")
    assert listed.returncode == 0, listed.stderr
    assets = {a["uri"]: a for a in map(json.loads, listed.stdout.splitlines())}
    assert sorted(assets) == [
        "file:///reports/daily.html",
        "postgres://dwh/public.orders",
        "s3://landing/crm/",
    ]
    orders = assets["postgres://dwh/public.orders"]
    assert orders["producers"] == ["warehouse.load"] and orders["consumers"] == ["warehouse.report"]
    assert orders["last_event"]["metadata"] == {"rows": 42}
    assert orders["freshness"]["fresh"] is True and orders["schema"] == ["id", "amount"]

    paged = podium(db, "assets", "--json", "--limit", "1", "--after", "file:///reports/daily.html")
    assert [json.loads(line)["uri"] for line in paged.stdout.splitlines()] == [
        "postgres://dwh/public.orders"
    ]

    table = podium(db, "assets")
    assert table.returncode == 0, table.stderr
    assert "postgres://dwh/public.orders" in table.stdout and "rows=42" in table.stdout
    assert "fresh" in table.stdout

    text = podium(db, "lineage", "postgres://dwh/public.orders")
    assert text.returncode == 0, text.stderr
    producers, consumers = text.stdout.split("consumers:")
    assert "task  warehouse.load" in producers and "task  warehouse.report" in consumers

    as_json = podium(db, "lineage", "postgres://dwh/public.orders", "--json")
    hop = json.loads(as_json.stdout)
    assert [n["label"] for n in hop["upstream"]] == ["warehouse.load"]
    assert [n["label"] for n in hop["downstream"]] == ["warehouse.report"]
    assert hop["asset"]["last_event"]["metadata"] == {"rows": 42}

    unknown = podium(db, "lineage", "s3://nowhere/")
    assert unknown.returncode == 1 and "not in the catalog" in unknown.stdout
