"""Flood the engine with 10x more events than it can hold: pending work stays bounded, nothing is
dropped, and every event runs exactly once."""

from __future__ import annotations

from pathlib import Path

import anyio

from engine import Context, Engine, dag, task
from sensors import KafkaTopic
from sensors.base import Event, EventBatch
from sensors.sources import subscription_of

ran: list[int] = []
gate: dict[str, anyio.Event] = {}


@task
async def handle(ctx: Context, n: int) -> int:
    await gate["open"].wait()  # held until the flood has met backpressure once: deterministic
    await anyio.sleep(0.002)
    ran.append(n)
    return n


FLOOD = KafkaTopic("flood")


@dag(triggers=[FLOOD])
def flooded(n: int = -1) -> None:
    handle(n)


async def test_flood_is_paced_by_backpressure_and_every_event_runs_once(tmp_path: Path) -> None:
    ran.clear()
    gate["open"] = anyio.Event()
    total, high, batch_size = 1500, 150, 25
    subscription = subscription_of(FLOOD, dag_id="flooded", index=0)
    peak_pending = 0
    paused_publishes = 0
    async with Engine(
        tmp_path / "f.db",
        dags=[flooded],
        sensors=False,
        high_water=high,
        low_water=high // 3,
        max_tasks=32,
    ) as podium:
        sink = podium.sink

        async def source() -> None:
            nonlocal peak_pending, paused_publishes
            for start in range(0, total, batch_size):
                if not sink.accepting:  # what a real sensor does: stop pulling until resumed
                    paused_publishes += 1
                    gate["open"].set()  # let the engine work the backlog off
                    await sink.wait_accepting()
                events = [
                    Event("kafka", f"kafka:flood:0:{i}", {"n": i}, params={"n": i})
                    for i in range(start, start + batch_size)
                ]
                batch = EventBatch(subscription, events)
                await sink.publish(batch)
                assert await batch.stored() == ["ran"] * batch_size
                peak_pending = max(peak_pending, podium.pending_runs)

        with anyio.fail_after(120):
            await source()
            while podium.pending_runs:
                await anyio.sleep(0.02)
        runs = await podium.runs(dag_id="flooded", limit=10_000)
    assert paused_publishes > 0, "the flood never met backpressure"
    assert peak_pending <= high + batch_size  # bounded by the high-water mark, not by the flood
    assert len(runs) == total and all(r.state == "success" for r in runs)
    assert sorted(ran) == list(range(total))  # every event ran, exactly once
