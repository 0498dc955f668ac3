"""Event triggers through the engine: the router's outcomes, dedupe, timers with a manual clock,
and AfterDag. Kafka and S3 sources have their own tests against real servers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
import pytest

from engine import Context, Engine, ManualClock, Run, dag, task
from sensors import Every
from sensors.base import Event, EventBatch, EventFilter, EventSink, ParamsMapper, Trigger
from sensors.dag_completion import AfterDag
from sensors.kafka import KafkaTopic
from sensors.sources import subscription_of

pytestmark = pytest.mark.each_loop  # asyncio's default loop and uvloop (tests/conftest.py)

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


@task
async def maybe_fail(ctx: Context, ok: bool = True) -> str:
    if not ok:
        raise RuntimeError("upstream failed on purpose")
    return "ok"


@dag
def up(ok: bool = True) -> None:
    maybe_fail(ok)


@task
async def note_upstream(ctx: Context) -> Any:
    return ctx.event["run_id"]


@dag(triggers=[AfterDag("up", state="success")])
def on_ok() -> None:
    note_upstream()


@dag(triggers=[AfterDag("up", state="failed")])
def on_fail() -> None:
    note_upstream()


async def test_after_dag_every_completion_starts_exactly_one_run_when_runs_finish_together(
    tmp_path: Path,
) -> None:
    """Regression: completions announced concurrently must each reach the DAGs whose trigger
    matches their state (the routing table was swapped around an await, losing events)."""
    async with Engine(tmp_path / "race.db", dags=[up, on_ok, on_fail], max_tasks=64) as podium:
        upstream = [await podium.trigger("up", {"ok": i % 2 == 0}) for i in range(20)]
        finished = [await r.wait(timeout=30) for r in upstream]
        ok_runs = await wait_for_runs(podium, "on_ok", 10)
        fail_runs = await wait_for_runs(podium, "on_fail", 10)
        events = await podium.events(limit=1000)
    succeeded = {r.run_id for r in finished if r.state == "success"}
    failed = {r.run_id for r in finished if r.state == "failed"}
    assert len(succeeded) == 10 and len(failed) == 10
    assert {r.key.rpartition(":")[2] for r in ok_runs} == succeeded
    assert {r.key.rpartition(":")[2] for r in fail_runs} == failed
    ran = [e for e in events if e["source"] == "dag" and e["outcome"] == "ran"]
    assert len(ran) == 20


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


# -- a trigger of one's own: anything implementing sensors.Trigger is served like ours ---------------


class RingSource:
    """The running source of ``Doorbell``: publishes its rings once, then waits to be cancelled."""

    def __init__(self, subscription: str, rings: Sequence[tuple[str, int]]) -> None:
        self.subscription = subscription
        self.rings = rings
        self.stored = anyio.Event()

    async def run(self, sink: EventSink) -> NoReturn:
        events = [
            Event("doorbell", f"ring:{door}:{n}", {"door": door, "n": n}) for door, n in self.rings
        ]
        batch = EventBatch(self.subscription, events)
        await sink.publish(batch)
        await batch.stored()
        self.stored.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


RINGS = [("front", 1), ("back", 2), ("front", 3), ("front", 4)]
ring_sources: list[RingSource] = []


@dataclass(frozen=True)
class Doorbell:
    """Rings of every door arrive on one shared source; each trigger keeps its own door's."""

    door: str
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    schedule = None
    consumer_key = None

    def source_key(self, dag_id: str, index: int) -> str:
        return "doorbells"

    def describe(self) -> str:
        return f"each ring of the {self.door} door"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("door") == self.door

    def source(
        self, *, dag_id: str, index: int, clock: Any, sharing: Sequence[Trigger] = ()
    ) -> RingSource:
        assert [t.describe() for t in sharing] == ["each ring of the back door"]
        ring_sources.append(RingSource(self.source_key(dag_id, index), RINGS))
        return ring_sources[-1]


@task
async def answer(ctx: Context, ring: int) -> int:
    return ring


@dag(triggers=[Doorbell("front", filter=lambda p: p["n"] != 3, params=lambda p: {"ring": p["n"]})])
def front_door(ring: int = 0) -> None:
    answer(ring)


@dag(triggers=[Doorbell("back", params=lambda p: {"ring": p["n"]})])
def back_door(ring: int = 0) -> None:
    answer(ring)


async def test_a_trigger_class_of_ones_own_starts_runs_like_ours(tmp_path: Path) -> None:
    ring_sources.clear()
    async with Engine(tmp_path / "d.db", dags=[front_door, back_door]) as podium:
        (source,) = ring_sources  # one source for the two triggers that share its key
        with anyio.fail_after(10):
            await source.stored.wait()
        front = await wait_for_runs(podium, "front_door", 2)
        back = await wait_for_runs(podium, "back_door", 1)
        recorded = {(e["event_id"], e["dag_id"], e["outcome"]) for e in await podium.events()}
    assert sorted((r.key, r.params["ring"]) for r in front) == [
        ("ring:front:1", 1),
        ("ring:front:4", 4),
    ]
    assert [(r.key, r.trigger, r.state) for r in back] == [("ring:back:2", "doorbell", "success")]
    assert ("ring:front:3", "front_door", "filtered") in recorded  # its filter
    assert ("ring:front:1", "back_door", "filtered") in recorded  # not its door
