"""20 000 tasks queued at once (20 runs of 1000 independent tasks): every run succeeds, every task
runs exactly once, and the tasks never count more of themselves live than ``max_tasks``.

The correctness half of ``benchmarks/load.py``; no timing is asserted."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import anyio
import anyio.lowlevel

from engine import Context, Engine, dag, task

RUNS, WIDTH, MAX_TASKS = 20, 1000, 64


class Live:
    now = 0
    peak = 0
    ran: Counter[tuple[str, str]] = Counter()


@task
async def unit(ctx: Context, i: int) -> int:
    Live.now += 1
    Live.peak = max(Live.peak, Live.now)
    try:
        await anyio.lowlevel.checkpoint()  # let the others in while this one is live
        Live.ran[(ctx.run_id, ctx.task_id)] += 1
        return i
    finally:
        Live.now -= 1


@dag
def wide() -> None:
    for i in range(WIDTH):
        unit.override(task_id=f"t{i}")(i)


async def test_twenty_thousand_queued_tasks_all_run_once_within_the_limit(tmp_path: Path) -> None:
    Live.now = Live.peak = 0
    Live.ran.clear()
    async with Engine(tmp_path / "load.db", dags=[wide], max_tasks=MAX_TASKS) as podium:
        with anyio.fail_after(100):
            runs = await asyncio.gather(*(podium.trigger("wide") for _ in range(RUNS)))
            for run in runs:
                await run.wait()
        final = await podium.runs(dag_id="wide", limit=RUNS + 1)  # read back from the state file
        assert len(final) == RUNS and {r.state.value for r in final} == {"success"}
        one = await podium.get_run(final[0].run_id)
        assert len(one.tasks) == WIDTH and one.tasks["t999"].result == 999
    assert len(Live.ran) == RUNS * WIDTH and set(Live.ran.values()) == {1}
    assert Live.now == 0
    assert 1 < Live.peak <= MAX_TASKS, Live.peak
