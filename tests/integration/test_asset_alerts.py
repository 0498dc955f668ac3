"""Asset alerts from a real engine: a schema change names its columns, and an asset past its
``fresh_within`` is alerted once per miss, both through the engine's own alerting loop on a
manual clock, delivered to a real local webhook receiver (and the Slack text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from engine import Asset, Context, Engine, ManualClock, dag, task
from engine.alerts import Alert
from engine.notifiers import CallbackNotifier, JSONWebhook, slack_payload
from tests.integration.test_alerts import BASE_URL, receiver, wait_until

ORDERS = Asset("postgres://dwh/public.orders", name="orders", fresh_within=60)
V1 = [{"name": "id", "type": "int"}, {"name": "amount", "type": "int"}, "zip"]
V2 = [{"name": "id", "type": "int"}, {"name": "amount", "type": "float"}, "region"]


@task(outlets=[ORDERS])
async def load_orders(ctx: Context, v: int = 1) -> None:
    await ctx.asset_event(ORDERS.uri, metadata={"rows": 3}, schema=V1 if v == 1 else V2)


@dag
def orders_dag(v: int = 1) -> None:
    load_orders(v)


async def checked(podium: Engine, clock: ManualClock, seconds: float) -> None:
    """Move the clock and wait for the alerting watch's asset check at the new time."""
    clock.advance(seconds)
    await wait_until(lambda: podium.alerting.assets_checked_at == clock.now())


async def test_schema_change_and_freshness_miss_are_alerted_once_each(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000.0)
    heard: list[Alert] = []
    async with receiver() as server:
        hook = JSONWebhook(server.url("alerts"))
        podium = Engine(
            tmp_path / "podium.db",
            dags=[orders_dag],
            clock=clock,
            notifiers=[hook, CallbackNotifier(heard.append)],
            base_url=BASE_URL,
        )
        async with podium:
            first = await (await podium.trigger("orders_dag", {"v": 1})).wait(timeout=10)
            await checked(podium, clock, 1)
            same = await (await podium.trigger("orders_dag", {"v": 1})).wait(timeout=10)
            await checked(podium, clock, 1)
            assert heard == []  # the first schema and an unchanged one say nothing

            changed = await (await podium.trigger("orders_dag", {"v": 2})).wait(timeout=10)
            await checked(podium, clock, 1)
            [schema] = await server.wait_for("alerts", 1)

            await checked(podium, clock, 58)  # 59 s after the last event: still fresh
            assert len(heard) == 1
            await checked(podium, clock, 2)  # 61 s: one miss ...
            await checked(podium, clock, 30)  # ... alerted once
            posts = await server.wait_for("alerts", 2)

            await (await podium.trigger("orders_dag", {"v": 2})).wait(timeout=10)
            await checked(podium, clock, 1)
            await checked(podium, clock, 61)  # a new event, a new deadline, a new miss
            await server.wait_for("alerts", 3)
            with anyio.fail_after(10):
                await podium.alerting.flush()
    assert first.state == same.state == changed.state == "success"
    assert [a.kind for a in heard] == ["schema_change", "freshness_miss", "freshness_miss"]
    assert schema["kind"] == "schema_change" and schema["asset"] == ORDERS.uri
    assert (schema["run_id"], schema["task_id"]) == (changed.run_id, "load_orders")
    assert schema["details"]["added"] == ["region"] and schema["details"]["removed"] == ["zip"]
    assert "changed: amount (int -> float)" in schema["message"]
    assert schema["url"] == f"{BASE_URL}/assets/postgres%3A%2F%2Fdwh%2Fpublic.orders"
    miss: dict[str, Any] = posts[1]
    assert miss["kind"] == "freshness_miss" and miss["asset"] == ORDERS.uri
    assert miss["run_id"] == changed.run_id and miss["details"]["fresh_within"] == 60
    assert "not fresh" in miss["message"] and "overdue 1.0s" in miss["message"]
    text = slack_payload(heard[0])["text"]
    assert "*Asset* `postgres://dwh/public.orders`" in text
    assert f"|Open asset {ORDERS.uri}>" in text


@task(outlets=[Asset("s3://never/written/", fresh_within=10)])
async def never_runs() -> None: ...


@dag
def idle() -> None:
    never_runs()


async def test_an_asset_never_written_misses_from_its_declaration(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000.0)
    heard: list[Alert] = []
    podium = Engine(
        tmp_path / "podium.db", dags=[idle], clock=clock, notifiers=[CallbackNotifier(heard.append)]
    )
    async with podium:
        await checked(podium, clock, 5)
        assert heard == []
        await checked(podium, clock, 6)
        await checked(podium, clock, 60)
        with anyio.fail_after(10):
            await podium.alerting.flush()
    [miss] = heard
    assert miss.kind == "freshness_miss" and miss.asset == "s3://never/written/"
    assert miss.run_id == "" and "no event yet" in miss.message
