"""Concurrency limits are never exceeded, counted by the tasks themselves."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import anyio
import pytest

from engine import Context, Engine, dag, task

pytestmark = pytest.mark.each_loop  # asyncio's default loop and uvloop (tests/conftest.py)


class LiveCounter:
    """Counts live tasks per label and remembers the peak of each."""

    def __init__(self) -> None:
        self.live: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)

    async def hold(self, labels: list[str], seconds: float = 0.01) -> None:
        for label in labels:
            self.live[label] += 1
            self.peak[label] = max(self.peak[label], self.live[label])
        try:
            await anyio.sleep(seconds)
        finally:
            for label in labels:
                self.live[label] -= 1


counter = LiveCounter()


@task(pool="db")
async def db_task(ctx: Context, i: int) -> int:
    await counter.hold(["global", "db", f"run:{ctx.run_id}", f"dag:{ctx.dag_id}"])
    return i


@task(concurrency=2)
async def throttled(ctx: Context, i: int) -> int:
    await counter.hold(["global", "throttled", f"dag:{ctx.dag_id}"])
    return i


@task
async def free(ctx: Context, i: int) -> int:
    await counter.hold(["global", f"dag:{ctx.dag_id}"])
    return i


@dag(max_active_tasks=5)
def mixed() -> None:
    for i in range(12):
        db_task(i)
        throttled(i)
        free(i)


@task
async def run_marker(ctx: Context) -> None:
    await counter.hold(["runs:serial"], 0.02)


@dag(max_active_runs=2)
def serial() -> None:
    run_marker()


async def test_global_pool_dag_and_task_limits_hold_across_runs(tmp_path: Path) -> None:
    counter.live.clear()
    counter.peak.clear()
    async with Engine(tmp_path / "l.db", dags=[mixed], max_tasks=7, pools={"db": 3}) as podium:
        runs = [await podium.trigger("mixed") for _ in range(4)]
        done = [await r.wait(timeout=30) for r in runs]
    assert all(r.state == "success" for r in done)
    assert counter.peak["global"] <= 7
    assert 1 <= counter.peak["db"] <= 3
    assert counter.peak["throttled"] <= 2
    assert counter.peak["dag:mixed"] <= 5
    assert all(v == 0 for v in counter.live.values())


@task(pool="db")
async def pooled_only(ctx: Context, i: int) -> int:
    await counter.hold(["pool-only"])
    return i


@dag
def pool_bound() -> None:
    for i in range(10):
        pooled_only(i)


async def test_a_pool_is_filled_to_its_slots_and_no_further(tmp_path: Path) -> None:
    counter.live.clear()
    counter.peak.clear()
    async with Engine(tmp_path / "q.db", dags=[pool_bound], pools={"db": 3}) as podium:
        done = await (await podium.trigger("pool_bound")).wait(timeout=30)
    assert done.state == "success"
    assert counter.peak["pool-only"] == 3


async def test_max_active_runs_queues_the_rest_in_order(tmp_path: Path) -> None:
    counter.live.clear()
    counter.peak.clear()
    async with Engine(tmp_path / "r.db", dags=[serial]) as podium:
        runs = [await podium.trigger("serial") for _ in range(6)]
        done = [await r.wait(timeout=30) for r in runs]
    assert counter.peak["runs:serial"] == 2
    assert all(r.state == "success" for r in done)
    starts = [r.started_at for r in done]
    assert starts == sorted(starts)  # admitted first-in, first-out


async def test_priority_orders_ready_tasks(tmp_path: Path) -> None:
    order: list[str] = []

    def make(name: str, priority: int) -> object:
        @task(task_id=name, priority=priority)
        async def t() -> None:
            order.append(name)

        return t

    tasks = [make(f"p{p}_{i}", p) for i in range(3) for p in (0, 5, 1)]

    @dag
    def prioritised() -> None:
        for t in tasks:
            t()  # type: ignore[operator]

    async with Engine(tmp_path / "p.db", dags=[prioritised], max_tasks=1) as podium:
        await (await podium.trigger("prioritised")).wait(timeout=10)
    assert order == [
        "p5_0", "p5_1", "p5_2", "p1_0", "p1_1", "p1_2", "p0_0", "p0_1", "p0_2",
    ]  # fmt: skip


@pytest.mark.parametrize("n_threads", [2])
async def test_sync_tasks_share_a_bounded_thread_limiter(tmp_path: Path, n_threads: int) -> None:
    import threading

    lock = threading.Lock()
    live = 0
    peak = 0
    # n_threads tasks at a time meet here: proves they overlap without timing them
    together = threading.Barrier(n_threads, timeout=20)

    @task
    def blocking(i: int) -> int:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        together.wait()
        with lock:
            live -= 1
        return i

    @dag
    def threads() -> None:
        for i in range(8):
            blocking(i)

    async with Engine(tmp_path / "t.db", dags=[threads], max_threads=n_threads) as podium:
        done = await (await podium.trigger("threads")).wait(timeout=20)
    assert done.state == "success"
    assert peak == n_threads
