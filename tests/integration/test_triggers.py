"""Event triggers through the engine: the router's outcomes, dedupe, timers with a manual clock,
and AfterDag. Kafka and S3 sources have their own tests against real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Context, Engine, ManualClock, Run, dag, task
from sensors import Every
from sensors.base import Event, EventBatch
from sensors.dag_completion import AfterDag
from sensors.kafka import KafkaTopic
from sensors.sources import subscription_of

seen_events: list[Any] = []


@task
async def record(ctx: Context, amount: float) -> float:
    seen_events.append(ctx.event)
    return amount


def only_big(payload: Any) -> bool:
    return float(payload["value"]["amount"]) >= 10


def explode(payload: Any) -> dict[str, Any]:
    if payload["value"].get("boom"):
        raise KeyError("boom")
    return {"amount": payload["value"]["amount"]}


# the Kafka source is not started (sensors=False); events are published on the engine's sink
ORDERS = KafkaTopic("orders", filter=only_big, params=explode)
ORDERS_SUBSCRIPTION = subscription_of(ORDERS, dag_id="on_order", index=0)


@dag(triggers=[ORDERS])
def on_order(amount: float = 0.0) -> None:
    record(amount)


async def wait_for_runs(podium: Engine, dag_id: str, count: int) -> list[Run]:
    with anyio.fail_after(10):
        while True:
            runs = await podium.runs(dag_id=dag_id, limit=1000)
            if len(runs) >= count and all(r.finished for r in runs):
                return runs
            await anyio.sleep(0.02)


def kafka_event(offset: int, value: Any, error: str | None = None) -> Event:
    return Event(
        source="kafka",
        event_id=f"kafka:orders:0:{offset}",
        payload={"topic": "orders", "partition": 0, "offset": offset, "value": value},
        params=value if isinstance(value, dict) else {"value": value},
        error=error,
    )


async def test_each_event_gets_an_outcome_and_redelivery_creates_nothing(tmp_path: Path) -> None:
    seen_events.clear()
    async with Engine(tmp_path / "p.db", dags=[on_order], sensors=False) as podium:
        events = [
            kafka_event(0, {"amount": 12.5}),
            kafka_event(1, {"amount": 3}),  # filtered
            kafka_event(2, {"amount": 50, "boom": True}),  # params mapper raises
            kafka_event(3, None, error="invalid JSON at kafka:orders:0:3: unexpected character"),
            kafka_event(4, {"amount": 99}),
        ]
        batch = EventBatch(ORDERS_SUBSCRIPTION, events)
        await podium.sink.publish(batch)
        assert await batch.stored() == ["ran", "filtered", "dead", "dead", "ran"]
        redelivered = EventBatch(ORDERS_SUBSCRIPTION, [events[0], events[4]])
        await podium.sink.publish(redelivered)
        assert await redelivered.stored() == ["deduplicated", "deduplicated"]
        runs = await wait_for_runs(podium, "on_order", 2)
        recorded = {(e["event_id"], e["outcome"]) for e in await podium.events(limit=50)}
        dead = await podium.events(outcome="dead")
    assert sorted(r.key for r in runs) == ["kafka:orders:0:0", "kafka:orders:0:4"]
    assert sorted(r.params["amount"] for r in runs) == [12.5, 99]
    assert all(r.state == "success" for r in runs)
    assert ("kafka:orders:0:1", "filtered") in recorded
    assert {e["error"] for e in dead} == {
        "params mapper raised KeyError: 'boom'",
        "invalid JSON at kafka:orders:0:3: unexpected character",
    }
    assert {e["event_id"] for e in seen_events} == {"kafka:orders:0:0", "kafka:orders:0:4"}
    assert all(e["topic"] == "orders" and e["source"] == "kafka" for e in seen_events)


@task
async def stamp(ctx: Context) -> str:
    assert ctx.logical_date is not None
    return ctx.logical_date.isoformat()


EVERY_MINUTE = Every(seconds=60, catchup="all", max_catchup=10)


@dag(triggers=[EVERY_MINUTE])
def minutely() -> None:
    stamp()


async def test_timer_fires_each_slot_once_and_catches_up_after_downtime(tmp_path: Path) -> None:
    clock = ManualClock(start=1_800_000_030.0)  # 30 s past a minute boundary
    db = tmp_path / "t.db"
    async with Engine(db, dags=[minutely], clock=clock) as podium:
        with anyio.fail_after(30):  # the timer records its starting cursor
            while await podium.sink.load_cursor("timer:minutely:0") is None:
                await anyio.sleep(0.01)
        assert await podium.runs() == []  # nothing from the past fires
        clock.advance(30)
        runs = await wait_for_runs(podium, "minutely", 1)
        assert [r.tasks for r in runs] and runs[0].logical_date is not None
        assert runs[0].logical_date.timestamp() == 1_800_000_060.0
        assert runs[0].key == "timer:minutely:2027-01-15T08:01:00+00:00"
    clock.advance(3 * 60 + 10)  # engine down for three slots
    async with Engine(db, dags=[minutely], clock=clock) as podium:
        runs = await wait_for_runs(podium, "minutely", 4)
    stamps = sorted((await podium_results(db))["minutely"])
    assert [r.trigger for r in runs] == ["timer"] * 4
    assert stamps == [
        "2027-01-15T08:01:00+00:00",
        "2027-01-15T08:02:00+00:00",
        "2027-01-15T08:03:00+00:00",
        "2027-01-15T08:04:00+00:00",
    ]


async def podium_results(db: Path) -> dict[str, list[Any]]:
    from engine.store import Store

    out: dict[str, list[Any]] = {}
    async with Store(db, owner=False) as store:
        for r in await store.list_runs(limit=1000):
            full = await store.get_run(r.run_id)
            out.setdefault(r.dag_id, []).extend(t.result for t in full.tasks.values())
    return out


@task
async def produce_report(ctx: Context) -> str:
    return "report"


@task
async def after_report(ctx: Context) -> Any:
    return ctx.event["run_id"]


@dag
def reporting() -> None:
    produce_report()


@dag(triggers=[AfterDag("reporting")])
def publishing() -> None:
    after_report()


async def test_after_dag_starts_a_run_when_another_dag_succeeds(tmp_path: Path) -> None:
    async with Engine(tmp_path / "a.db", dags=[reporting, publishing]) as podium:
        upstream = await (await podium.trigger("reporting")).wait(timeout=10)
        runs = await wait_for_runs(podium, "publishing", 1)
    assert runs[0].state == "success"
    assert runs[0].key == f"dag:reporting:{upstream.run_id}"
    full = runs[0]
    assert full.trigger == "dag"


async def test_backpressure_gate_closes_above_high_water_and_opens_below_low(
    tmp_path: Path,
) -> None:
    gate = anyio.Event()

    @task
    async def wait_gate() -> None:
        await gate.wait()

    @dag
    def gated() -> None:
        wait_gate()

    async with Engine(
        tmp_path / "b.db", dags=[gated], high_water=4, low_water=1, sensors=False
    ) as podium:
        assert podium.sink.accepting
        runs = [await podium.trigger("gated") for _ in range(4)]
        assert not podium.sink.accepting
        gate.set()
        with anyio.fail_after(10):
            await podium.sink.wait_accepting()
        for r in runs:
            assert (await r.wait(timeout=10)).state == "success"
        assert podium.sink.accepting


def test_trigger_declarations_validate() -> None:
    from engine import TriggerError

    with pytest.raises(TriggerError, match="unknown state"):
        AfterDag("x", state="done")
