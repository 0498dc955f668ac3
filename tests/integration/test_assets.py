"""Assets through the engine: outlets and runtime asset events recorded with the task's success,
lineage reads, and DAGs triggered by data (``OnAssets``) consuming each event exactly once."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Asset, Context, Engine, Run, dag, task
from sensors import OnAssets
from sensors.base import Event, EventBatch
from sensors.kafka import KafkaTopic
from sensors.sources import subscription_of

ORDERS = Asset("s3://warehouse/orders/", name="orders", metadata={"owner": "sales"})
CUSTOMERS = Asset("s3://warehouse/customers/", name="customers")
REPORT = "file:///reports/daily.html"


@task(outlets=[ORDERS])
async def load_orders(ctx: Context, rows: int = 10) -> int:
    await ctx.asset_event(ORDERS.uri, metadata={"rows": rows}, schema=[{"name": "id"}])
    return rows


@task(outlets=[CUSTOMERS], inlets=["s3://landing/crm/"])
def load_customers() -> str:
    return "ok"


@dag
def orders_dag(rows: int = 10) -> None:
    load_orders(rows)


@dag
def customers_dag() -> None:
    load_customers()


consumed: list[Any] = []


@task(outlets=[REPORT])
async def build_report(ctx: Context) -> list[str]:
    consumed.append(ctx.event)
    return [e["event_id"] for e in ctx.event["events"]]


@dag(triggers=[OnAssets(ORDERS & CUSTOMERS)])
def report_both() -> None:
    build_report()


@dag(triggers=[OnAssets(ORDERS | CUSTOMERS)])
def report_either() -> None:
    build_report()


def big_batches(payload: Any) -> bool:
    return bool((payload["metadata"] or {}).get("rows", 0) >= 5)


@dag(triggers=[OnAssets(ORDERS, filter=big_batches)])
def big_orders() -> None:
    build_report()


async def wait_for(podium: Engine, dag_id: str, count: int, timeout: float = 15) -> list[Run]:
    """The DAG's runs once there are ``count`` of them, all finished, oldest first."""
    with anyio.fail_after(timeout):
        while True:
            runs = await podium.runs(dag_id=dag_id, limit=1000)
            if len(runs) >= count and all(r.finished for r in runs):
                return list(reversed(runs))
            await anyio.sleep(0.02)


async def wait_queued(podium: Engine, dag_id: str, uri: str, events: int) -> dict[str, Any]:
    """The DAG's condition once ``events`` events of ``uri`` wait for it."""
    with anyio.fail_after(15):
        while True:
            state = await podium.asset_condition(dag_id)
            if state["waiting"].get(uri, {}).get("events", 0) >= events:
                return state
            await anyio.sleep(0.02)


def asset_outcomes(db: Path, dag_id: str) -> list[tuple[str, str, str | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT event_id, outcome, run_id FROM events WHERE dag_id = ? AND source = 'asset' "
            "ORDER BY event_id",
            (dag_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_outlets_and_runtime_events_are_recorded_with_the_success(tmp_path: Path) -> None:
    async with Engine(tmp_path / "a.db", dags=[orders_dag, customers_dag]) as podium:
        run = await (await podium.trigger("orders_dag", {"rows": 1234})).wait(timeout=10)
        other = await (await podium.trigger("customers_dag")).wait(timeout=10)
        events = await podium.asset_events(ORDERS.uri)
        lineage = await podium.run_lineage(run.run_id)
        other_lineage = await podium.run_lineage(other.run_id)
        assets = {a["uri"]: a for a in await podium.assets()}
    assert run.state == "success" and other.state == "success"
    # a runtime report for an outlet stands for that outlet's event: one event, with metadata
    assert len(events) == 1
    (ev,) = events
    assert ev["run_id"] == run.run_id and ev["dag_id"] == "orders_dag"
    assert ev["task_id"] == "load_orders" and ev["try_number"] == 1
    assert ev["metadata"] == {"rows": 1234} and ev["schema"] == [{"name": "id"}]
    finished_at = run.tasks["load_orders"].finished_at
    assert finished_at is not None and abs(ev["ts"] - finished_at) < 1.0
    assert lineage["outputs"] == events and lineage["inputs"] == []
    assert [o["uri"] for o in other_lineage["outputs"]] == [CUSTOMERS.uri]
    assert other_lineage["inputs"][0]["uri"] == "s3://landing/crm/"
    assert other_lineage["inputs"][0]["kind"] == "inlet"
    assert assets[ORDERS.uri]["name"] == "orders"
    assert assets[ORDERS.uri]["metadata"] == {"owner": "sales"}
    assert assets[ORDERS.uri]["producers"] == ["orders_dag.load_orders"]
    assert assets[ORDERS.uri]["last_event"]["metadata"] == {"rows": 1234}
    assert assets["s3://landing/crm/"]["consumers"] == ["customers_dag.load_customers"]


async def test_consumer_on_a_and_b_runs_once_both_have_events(tmp_path: Path) -> None:
    consumed.clear()
    db = tmp_path / "and.db"
    async with Engine(db, dags=[orders_dag, customers_dag, report_both]) as podium:
        await (await podium.trigger("orders_dag")).wait(timeout=10)
        await (await podium.trigger("orders_dag")).wait(timeout=10)
        why = await wait_queued(podium, "report_both", ORDERS.uri, 2)
        assert why["met"] is False and why["missing"] == [CUSTOMERS.uri]
        assert why["tree"]["parts"] == [
            {"asset": ORDERS.uri, "met": True},
            {"asset": CUSTOMERS.uri, "met": False},
        ]
        assert await podium.runs(dag_id="report_both") == []
        await (await podium.trigger("customers_dag")).wait(timeout=10)
        (run,) = await wait_for(podium, "report_both", 1)
        after = await podium.asset_condition("report_both")
        lineage = await podium.run_lineage(run.run_id)
        # a new orders event alone does not start another run
        await (await podium.trigger("orders_dag")).wait(timeout=10)
        await wait_queued(podium, "report_both", ORDERS.uri, 1)
        assert len(await podium.runs(dag_id="report_both")) == 1
    assert run.state == "success" and run.trigger == "assets"
    assert after["met"] is False and after["waiting"] == {}
    (event,) = consumed
    assert event["source"] == "assets" and event["event_id"] == run.key
    assert [e["uri"] for e in event["events"]] == [ORDERS.uri, ORDERS.uri, CUSTOMERS.uri]
    assert {i["event_id"] for i in lineage["inputs"]} == {e["event_id"] for e in event["events"]}
    assert [o["uri"] for o in lineage["outputs"]] == [REPORT]
    outcomes = asset_outcomes(db, "report_both")
    assert sorted(o[1] for o in outcomes) == ["ran", "ran", "ran", "waiting"]
    assert {o[2] for o in outcomes if o[1] == "ran"} == {run.run_id}


async def test_consumer_on_a_or_b_runs_for_each_and_consumes_each_event_once(
    tmp_path: Path,
) -> None:
    consumed.clear()
    db = tmp_path / "or.db"
    async with Engine(db, dags=[orders_dag, customers_dag, report_either]) as podium:
        await (await podium.trigger("orders_dag")).wait(timeout=10)
        await wait_for(podium, "report_either", 1)
        await (await podium.trigger("customers_dag")).wait(timeout=10)
        await wait_for(podium, "report_either", 2)
        # many producers at once: every event is consumed by exactly one run
        producers = [await podium.trigger("orders_dag") for _ in range(20)]
        for p in producers:
            await p.wait(timeout=20)
        with anyio.fail_after(15):
            while any(o[1] == "waiting" for o in asset_outcomes(db, "report_either")):
                await anyio.sleep(0.02)
        runs = await wait_for(podium, "report_either", 3)
    outcomes = asset_outcomes(db, "report_either")
    assert len(outcomes) == 22 and {o[1] for o in outcomes} == {"ran"}
    listed = [e["event_id"] for ev in consumed for e in ev["events"]]
    assert sorted(listed) == sorted(o[0] for o in outcomes)  # each event in exactly one run
    assert len(runs) == len(consumed) and all(r.state == "success" for r in runs)
    assert {o[2] for o in outcomes} == {r.run_id for r in runs}


async def test_filtered_asset_events_are_recorded_and_never_count(tmp_path: Path) -> None:
    db = tmp_path / "filter.db"
    async with Engine(db, dags=[orders_dag, big_orders]) as podium:
        await (await podium.trigger("orders_dag", {"rows": 1})).wait(timeout=10)
        with anyio.fail_after(10):
            while not asset_outcomes(db, "big_orders"):
                await anyio.sleep(0.02)
        assert await podium.runs(dag_id="big_orders") == []
        await (await podium.trigger("orders_dag", {"rows": 50})).wait(timeout=10)
        (run,) = await wait_for(podium, "big_orders", 1)
    outcomes = sorted(o[1] for o in asset_outcomes(db, "big_orders"))
    assert outcomes == ["filtered", "ran"]
    assert run.state == "success"


@task(retries=1)
async def export_region(ctx: Context, region: str) -> None:
    await ctx.asset_event(f"s3://exports/{region}/try{ctx.try_number}")
    if ctx.try_number == 1:
        raise RuntimeError("first try fails after reporting")


@task
def export_sync(ctx: Context, region: str) -> None:
    ctx.asset_event_sync(f"s3://exports/{region}/sync", metadata={"n": 1})


@dag
def exports(region: str = "eu") -> None:
    export_region(region) >> export_sync(region)


@dag(triggers=[OnAssets("s3://exports/us/try2")])
def after_us_export() -> None:
    build_report()


async def test_runtime_asset_event_with_a_param_dependent_uri(tmp_path: Path) -> None:
    async with Engine(tmp_path / "rt.db", dags=[exports, after_us_export]) as podium:
        run = await (await podium.trigger("exports", {"region": "us"})).wait(timeout=10)
        (consumer,) = await wait_for(podium, "after_us_export", 1)
        lineage = await podium.run_lineage(run.run_id)
        failed_try = await podium.asset_events("s3://exports/us/try1")
    assert run.state == "success"
    # the failed try's report is dropped: only the successful try's events are recorded
    assert failed_try == []
    assert [(o["uri"], o["try_number"]) for o in lineage["outputs"]] == [
        ("s3://exports/us/try2", 2),
        ("s3://exports/us/sync", 1),
    ]
    assert lineage["outputs"][1]["metadata"] == {"n": 1}
    assert consumer.state == "success"


def test_asset_declarations_validate() -> None:
    from engine import DAGError, TriggerError

    with pytest.raises(DAGError, match="asset URI"):
        Asset(" s3://x")
    with pytest.raises(DAGError, match="asset URI"):
        task(outlets=[""])
    with pytest.raises(TriggerError, match="one OnAssets"):

        @dag(triggers=[OnAssets("a://x"), OnAssets("a://y")])
        def twice() -> None:
            build_report()


SOURCE = KafkaTopic("crm-updates", bootstrap_servers="broker:9092")


@task
async def noop() -> None:
    return None


@dag(triggers=[SOURCE])
def on_crm() -> None:
    noop()


async def test_a_kafka_topic_that_starts_a_run_is_the_runs_input(tmp_path: Path) -> None:
    subscription = subscription_of(SOURCE, dag_id="on_crm", index=0)
    async with Engine(tmp_path / "src.db", dags=[on_crm], sensors=False) as podium:
        event = Event(source="kafka", event_id="kafka:crm-updates:0:7", payload={"value": 1})
        batch = EventBatch(subscription, [event])
        await podium.sink.publish(batch)
        assert await batch.stored() == ["ran"]
        (run,) = await wait_for(podium, "on_crm", 1)
        lineage = await podium.run_lineage(run.run_id)
        assets = [a["uri"] for a in await podium.assets()]
    assert lineage["inputs"] == [
        {
            "uri": "kafka://broker:9092/crm-updates",
            "kind": "source",
            "task_id": None,
            "event_id": "kafka:crm-updates:0:7",
            "ts": lineage["inputs"][0]["ts"],
        }
    ]
    assert "kafka://broker:9092/crm-updates" in assets
