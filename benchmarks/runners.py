"""The runners benchmark: ``python -m benchmarks.runners`` (``--quick``: 1 repetition).

A CPU-bound fan-out, 200 independent tasks of ~20 ms of pure-Python work each (the work is
calibrated on this machine first), run as one DAG run on the default runner (sync tasks in the
engine's worker threads, which share one GIL) and on ``Process(workers=2)``; then the same 200 tasks
doing nothing, to show what the pool costs per task. Every measurement is one warm-up run and then
``--reps`` timed runs on the same open engine (the pool is warm), median reported; all in one
process and one invocation, so the ratios compare like with like on the same (shared, noisy)
machine.
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

TASKS = 200
TARGET_SECONDS = 0.020


def burn(iterations: int) -> int:
    """Pure-Python CPU work: holds the GIL for all of it."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(target: float = TARGET_SECONDS) -> int:
    iterations = 10_000
    while True:
        started = time.perf_counter()
        burn(iterations)
        spent = time.perf_counter() - started
        if spent > 0.005:
            return max(1, int(iterations * target / spent))
        iterations *= 4


async def measure(runner: Any, iterations: int, reps: int, tasks: int = TASKS) -> dict[str, Any]:
    from benchmarks.runners import burn as work  # by reference: importable in the workers
    from engine import Engine, dag, task

    @dag(dag_id="fanout", runner=runner)
    def fanout() -> None:
        for i in range(tasks):
            task(task_id=f"burn_{i}")(work)(iterations)

    samples: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        async with Engine(Path(folder) / "state.db", dags=[fanout], sensors=False) as engine:
            for rep in range(reps + 1):  # the first is the warm-up
                started = time.perf_counter()
                run = await (await engine.trigger("fanout")).wait(timeout=600)
                spent = time.perf_counter() - started
                if run.state != "success":
                    raise RuntimeError(f"run failed: {run}")
                if rep:
                    samples.append(spent)
    return {"median_s": statistics.median(samples), "samples_s": samples}


async def main_async(reps: int) -> dict[str, Any]:
    from engine import Process

    load_before = os.getloadavg()[0]
    iterations = calibrate()
    pool = Process(workers=2)
    results = {
        "cpu_threads": await measure(None, iterations, reps),
        "cpu_process2": await measure(pool, iterations, reps),
        "noop_threads": await measure(None, 0, reps),
        "noop_process2": await measure(pool, 0, reps),
    }
    threads, process = results["cpu_threads"]["median_s"], results["cpu_process2"]["median_s"]
    noop_t, noop_p = results["noop_threads"]["median_s"], results["noop_process2"]["median_s"]
    summary = {
        "cpus": os.cpu_count(),
        "load_average_1m_before_after": [load_before, os.getloadavg()[0]],  # a shared machine
        "iterations_per_task": iterations,
        "tasks": TASKS,
        "speedup_process2_vs_threads": threads / process,
        "cpu_threads_wall_s": threads,
        "cpu_process2_wall_s": process,
        "noop_threads_ms_per_task": noop_t / TASKS * 1000,
        "noop_process2_ms_per_task": noop_p / TASKS * 1000,
        # what the pool adds per task, over the built-in path, with 2 workers sharing the run
        "pool_overhead_ms_per_task": (noop_p - noop_t) / TASKS * 1000,
    }
    return {"summary": summary, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = asyncio.run(main_async(1 if args.quick else args.reps))
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
