"""The checkpoints benchmark: ``python -m benchmarks.checkpoints`` (``--quick``: 1 repetition).

What one ``ctx.checkpoint_sync(value)`` costs, from the call to its return (the value committed to
the state file), on each runner: one try of a sync task checkpoints a small dict ``CHECKPOINTS``
times in a row and times itself. The floor is the default runner (the task in an engine thread,
one group commit per checkpoint); ``Process(workers=1)`` adds a pipe round trip; ``Dask`` (a
``LocalCluster`` of 1 worker process on loopback, its scheduler in a thread of this process) adds
the event to the engine, the engine's two calls back to the worker through the scheduler, and the
worker's wait. One warm-up run, then ``--reps`` timed runs per runner on the same open engine,
median reported, all in one process, so the ratios compare like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import Context

CHECKPOINTS = 200


def checkpoint_many(count: int, ctx: Context) -> float:
    """Checkpoint ``count`` times; seconds per checkpoint (importable by the workers)."""
    started = time.perf_counter()
    for i in range(count):
        ctx.checkpoint_sync({"done": i})
    return (time.perf_counter() - started) / count


async def measure(runner: Any, reps: int) -> dict[str, Any]:
    from engine import Engine, dag, task

    @dag(dag_id="checkpoints", runner=runner)
    def checkpoints() -> None:
        task(checkpoint_many)(CHECKPOINTS)

    samples: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        async with Engine(Path(folder) / "state.db", dags=[checkpoints], sensors=False) as engine:
            for rep in range(reps + 1):  # the first is the warm-up
                run = await (await engine.trigger("checkpoints")).wait(timeout=600)
                instance = run.tasks["checkpoint_many"]
                if run.state != "success" or instance.checkpoint != {"done": CHECKPOINTS - 1}:
                    raise RuntimeError(f"run failed: {run}")
                if rep:
                    samples.append(instance.result * 1000)
    return {"median_ms": statistics.median(samples), "samples_ms": samples}


async def main_async(reps: int, dask_address: str) -> dict[str, Any]:
    from engine import Dask, Process

    load_before = os.getloadavg()[0]
    results = {
        "local": await measure(None, reps),
        "process1": await measure(Process(workers=1), reps),
        "dask1": await measure(Dask(address=dask_address), reps),
    }
    ms = {name: row["median_ms"] for name, row in results.items()}
    summary = {
        "cpus": os.cpu_count(),
        "checkpoints_per_try": CHECKPOINTS,
        **{f"{name}_ms_per_checkpoint": value for name, value in ms.items()},
        "process1_vs_local": ms["process1"] / ms["local"],
        "dask1_vs_local": ms["dask1"] / ms["local"],
        "load_average_1m_before_after": [load_before, os.getloadavg()[0]],  # a shared machine
    }
    return {"summary": summary, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from distributed import LocalCluster

    with LocalCluster(
        processes=True,
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        out = asyncio.run(main_async(1 if args.quick else args.reps, cluster.scheduler_address))
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
