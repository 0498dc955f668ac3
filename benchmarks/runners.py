"""The runners benchmark: ``python -m benchmarks.runners`` (``--quick``: 1 repetition).

A CPU-bound fan-out, 200 independent tasks of ~20 ms of pure-Python work each (the work is
calibrated on this machine first), run as one DAG run on the default runner (sync tasks in the
engine's worker threads, which share one GIL) and on ``Process(workers=2)``; then the same 200 tasks
doing nothing, to show what the pool costs per task. Every measurement is one warm-up run and then
``--reps`` timed runs on the same open engine (the pool is warm), median reported; all in one
process and one invocation, so the ratios compare like with like on the same (shared, noisy)
machine.

Then the ``Virtualenv`` runner: the cold build of an environment (``tabulate``, a small pure-Python
package) into an empty Podium cache, once with uv's own download cache empty too (so PyPI is
fetched) and once with it warm; and the warm start of a try, a one-task run on an environment
found in the cache (interpreter start-up, import of the task's module, the JSON-lines exchange),
next to the same one-task run on the default runner and on a warm ``Process(workers=1)``. ``--part venv`` measures only these.
With ``distributed`` installed (``podium[dask]``, in dev), the same rows on ``Dask(address=...)``
against a ``LocalCluster`` of 2 worker processes x 1 thread on loopback (its scheduler in a thread
of this process), and the same no-op tasks submitted straight to that cluster with
``client.submit`` (no Podium), so the Dask runner's overhead shows beside Local's and Dask's own.
``--no-dask`` skips them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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


async def measure_venv(reps: int) -> dict[str, Any]:
    from benchmarks.runners import burn as work  # by reference: importable in the env
    from engine import Engine, Process, Virtualenv, dag, task
    from engine.runners.venv_build import ensure_env

    requirements = ["tabulate"]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cold: dict[str, float] = {}
        for name, uv_cache in (("empty_uv_cache", root / "uv"), ("warm_uv_cache", None)):
            cache = root / f"podium-{name}"
            setting = Virtualenv(requirements=requirements, cache_dir=cache)
            saved = os.environ.get("UV_CACHE_DIR")
            if uv_cache is not None:
                os.environ["UV_CACHE_DIR"] = str(uv_cache)
            try:
                started = time.perf_counter()
                built = await ensure_env(setting.spec(), cache)
                cold[name] = time.perf_counter() - started
            finally:
                if uv_cache is not None:
                    if saved is None:
                        del os.environ["UV_CACHE_DIR"]
                    else:
                        os.environ["UV_CACHE_DIR"] = saved
            assert built.built, name
        cached = Virtualenv(requirements=requirements, cache_dir=root / "podium-warm_uv_cache")

        async def one_task(runner: Any) -> list[float]:
            @dag(dag_id="one")
            def one() -> None:
                task(task_id="burn", runner=runner)(work)(1000)

            samples: list[float] = []
            db = root / f"state-{len(samples_by)}.db"
            async with Engine(db, dags=[one], sensors=False) as e:
                for rep in range(reps * 3 + 1):  # the first is the warm-up
                    started = time.perf_counter()
                    run = await (await e.trigger("one")).wait(timeout=600)
                    spent = time.perf_counter() - started
                    if run.state != "success":
                        raise RuntimeError(f"run failed: {run}")
                    if rep:
                        samples.append(spent)
            samples_by.append(samples)
            return samples

        samples_by: list[list[float]] = []
        warm = await one_task(cached)
        local = await one_task(None)
        pooled = await one_task(Process(workers=1))
    return {
        "cold_build_empty_uv_cache_s": cold["empty_uv_cache"],
        "cold_build_warm_uv_cache_s": cold["warm_uv_cache"],
        "warm_start_one_task_run_ms": statistics.median(warm) * 1000,
        "warm_start_samples_s": warm,
        "local_one_task_run_ms": statistics.median(local) * 1000,
        "process1_one_task_run_ms": statistics.median(pooled) * 1000,
    }


async def raw_dask(address: str, reps: int, tasks: int = TASKS) -> dict[str, Any]:
    """No-op tasks submitted straight to the cluster and awaited, one batch per rep: Dask's own
    cost per task, the floor under the Dask runner's."""
    from distributed import Client

    from benchmarks.runners import burn as work

    samples: list[float] = []
    async with Client(address, asynchronous=True, set_as_default=False) as client:
        for rep in range(reps + 1):  # the first is the warm-up
            started = time.perf_counter()
            futures = [client.submit(work, 0, pure=False) for _ in range(tasks)]
            await client.gather(futures)
            spent = time.perf_counter() - started
            del futures
            if rep:
                samples.append(spent)
    return {"median_s": statistics.median(samples), "samples_s": samples}


async def dask_rows(address: str, iterations: int, reps: int) -> dict[str, Any]:
    from engine import Dask

    on_dask = Dask(address=address)
    return {
        "cpu_dask2": await measure(on_dask, iterations, reps),
        "noop_dask2": await measure(on_dask, 0, reps),
        "noop_raw_dask2": await raw_dask(address, reps),
    }


def dask_summary(results: dict[str, Any]) -> dict[str, Any]:
    ms = {name: row["median_s"] / TASKS * 1000 for name, row in results.items()}
    return {
        "cpu_dask2_wall_s": results["cpu_dask2"]["median_s"],
        "speedup_dask2_vs_threads": (
            results["cpu_threads"]["median_s"] / results["cpu_dask2"]["median_s"]
        ),
        "noop_dask2_ms_per_task": ms["noop_dask2"],
        "noop_raw_dask2_ms_per_task": ms["noop_raw_dask2"],
        # what the Dask runner adds per task over the built-in path, and over Dask itself
        "dask_overhead_vs_local_ms_per_task": ms["noop_dask2"] - ms["noop_threads"],
        "dask_overhead_vs_raw_dask_ms_per_task": ms["noop_dask2"] - ms["noop_raw_dask2"],
    }


async def main_async(
    reps: int, part: str = "all", dask_address: str | None = None
) -> dict[str, Any]:
    from engine import Process

    if part == "venv":
        load_before = os.getloadavg()[0]
        venv = await measure_venv(reps)
        return {
            "summary": {
                "cpus": os.cpu_count(),
                "load_average_1m_before_after": [load_before, os.getloadavg()[0]],
                **{k: v for k, v in venv.items() if not k.endswith("samples_s")},
            },
            "results": {"venv": venv},
        }

    load_before = os.getloadavg()[0]
    iterations = calibrate()
    pool = Process(workers=2)
    results = {
        "cpu_threads": await measure(None, iterations, reps),
        "cpu_process2": await measure(pool, iterations, reps),
        "noop_threads": await measure(None, 0, reps),
        "noop_process2": await measure(pool, 0, reps),
    }
    if dask_address is not None:
        results.update(await dask_rows(dask_address, iterations, reps))
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
    if dask_address is not None:
        summary.update(dask_summary(results))
    if part == "all":
        venv = await measure_venv(reps)
        results["venv"] = venv
        summary.update({k: v for k, v in venv.items() if not k.endswith("samples_s")})
    summary["load_average_1m_before_after"] = [load_before, os.getloadavg()[0]]
    return {"summary": summary, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["all", "venv"], default="all")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    if args.part == "venv" or args.no_dask or importlib.util.find_spec("distributed") is None:
        out = asyncio.run(main_async(reps, args.part))
    else:
        from distributed import LocalCluster

        with LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster:
            out = asyncio.run(main_async(reps, args.part, cluster.scheduler_address))
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
