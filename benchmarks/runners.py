"""The runners benchmark: where a task runs, beside floors measured in the same run.

Part of ``make bench``: ``benchmarks/run.py`` measures these rows after W1-W5 and prints them as a
second table (``runners_table.py`` is that parent side). ``python -m benchmarks.runners`` measures
only these rows (``--rows cpu,noop``: a subset; ``--quick``; ``--out PATH`` to save them).

Each row is measured in its own subprocess, ``python -m benchmarks.runners --one ROW --tasks N
--iterations I [--scheduler ADDRESS]``: one warm-up measurement, then ``--reps`` timed ones, each
with fresh state (a new temporary folder and state file, a new ``Engine`` and runner, or a new
executor for a floor), checked, then one JSON line. The rows:

- **cpu-***: a fan-out of ``--tasks`` independent tasks of ``burn(I)``, pure-Python work calibrated
  by the parent to ~20 ms on one core, as one DAG run on Podium's default runner (sync tasks in the
  engine's threads: one GIL), on ``Process(workers=2)`` and on ``Dask`` (a ``LocalCluster`` of 2
  worker processes x 1 thread); the floors run the same calls on a bare
  ``concurrent.futures.ThreadPoolExecutor(8)`` (the engine's ``max_threads``) and a bare
  ``ProcessPoolExecutor(2)`` (spawned interpreters, like Podium's workers).
- **noop-***: the same with ``burn(0)``: what each way of running a task costs per task, plus the
  same calls submitted straight to the Dask cluster with ``client.submit`` (Dask's own cost).
- **venv-*** and **one-task-***: the ``Virtualenv`` runner. ``venv-build-uvcold`` builds an
  environment (``tabulate``) into an empty Podium cache with ``UV_CACHE_DIR`` pointed at an empty
  folder, so uv fetches from the package index; ``venv-build-uvwarm`` into an empty Podium cache with
  a uv cache that already holds the package (filled before the warm-up, untimed). ``venv-warm-start``
  is a one-task run on an environment found in the cache, on its warm pool (primed as a ``Process``
  pool is), beside the same run on the default runner and on a warm ``Process(workers=1)``;
  ``venv-first-try`` the same run unprimed: its pool starts the worker (a fresh interpreter).

Timed span: Podium, from ``trigger`` to ``run.wait()`` returning (engine start, the pool's start and
its priming are not timed: before the timed run, a priming run keeps every worker busy at once
until each has answered); floors and raw Dask, from the first submit to the last result (executor
start and priming not timed); venv builds, ``ensure_env`` (what the engine calls before a try).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runner_tasks import burn, hold

THREADS = 8  # the engine's default max_threads, and the bare thread pool's size
REQUIREMENTS = ("tabulate",)  # the Virtualenv rows' environment: a small pure-Python package


@dataclass(frozen=True, kw_only=True)
class Params:
    """What one row measures: how many tasks, how much work each, where Dask is."""

    tasks: int = 200
    iterations: int = 0  # burn() iterations per cpu-* task (calibrated by the parent)
    scheduler: str | None = None  # the Dask scheduler's address, for the Dask rows
    requirements: tuple[str, ...] = REQUIREMENTS


@dataclass
class Sample:
    wall: float
    extra: dict[str, Any] = field(default_factory=dict)


class CheckError(RuntimeError):
    """A measurement ran but gave wrong results."""


@dataclass(frozen=True)
class Row:
    key: str
    group: str  # "cpu", "noop", "venv"
    label: str
    dask: bool = False  # needs --scheduler
    floor: str | None = None  # the row this one is compared with ("x floor")

    def tasks(self, p: Params) -> int:
        return p.tasks if self.group in ("cpu", "noop") else 1


ROWS: tuple[Row, ...] = (  # each Podium row next to its floor: the load drifts between rows
    Row("cpu-podium-threads", "cpu", "Podium, default runner (threads)", floor="cpu-floor-threads"),
    Row("cpu-floor-threads", "cpu", "floor: ThreadPoolExecutor(8)"),
    Row("cpu-podium-process2", "cpu", "Podium, Process(workers=2)", floor="cpu-floor-pool2"),
    Row("cpu-floor-pool2", "cpu", "floor: ProcessPoolExecutor(2)"),
    Row("cpu-podium-dask2", "cpu", "Podium, Dask (2 workers x 1 thread)", dask=True),
    Row(
        "noop-podium-threads",
        "noop",
        "Podium, default runner (threads)",
        floor="noop-floor-threads",
    ),
    Row("noop-floor-threads", "noop", "floor: ThreadPoolExecutor(8)"),
    Row("noop-podium-process2", "noop", "Podium, Process(workers=2)", floor="noop-floor-pool2"),
    Row("noop-floor-pool2", "noop", "floor: ProcessPoolExecutor(2)"),
    Row(
        "noop-podium-dask2",
        "noop",
        "Podium, Dask (2 workers x 1 thread)",
        dask=True,
        floor="noop-raw-dask2",
    ),
    Row("noop-raw-dask2", "noop", "floor: client.submit to the same cluster", dask=True),
    Row("venv-build-uvcold", "venv", "Virtualenv cold build: empty env cache, empty uv cache"),
    Row("venv-build-uvwarm", "venv", "Virtualenv cold build: empty env cache, warm uv cache"),
    Row("venv-warm-start", "venv", "one-task run, Virtualenv (env cached)", floor="one-task-local"),
    Row("venv-first-try", "venv", "one-task run, Virtualenv: its pool's first worker starts"),
    Row("one-task-local", "venv", "one-task run, default runner"),
    Row("one-task-process1", "venv", "one-task run, warm Process(workers=1)"),
)
ROWS_BY_KEY = {r.key: r for r in ROWS}
GROUPS = ("cpu", "noop", "venv")


# -- Podium -------------------------------------------------------------------------------------------


def _runner(row: Row, p: Params, shared: Path) -> Any:
    from engine import Dask, Process, Virtualenv

    if row.key.endswith("process2"):
        return Process(workers=2)
    if row.key.endswith("process1"):
        return Process(workers=1)
    if row.dask:
        assert p.scheduler is not None, f"{row.key} needs --scheduler"
        return Dask(address=p.scheduler)
    if row.key in ("venv-warm-start", "venv-first-try"):
        return Virtualenv(requirements=list(p.requirements), cache_dir=shared / "envs")
    return None  # the default runner


def _workers(runner: Any) -> tuple[int, float]:
    """How many tasks the priming run holds at once, and for how long each."""
    from engine import Dask, Process, Virtualenv

    if isinstance(runner, (Process, Virtualenv)):
        return runner.workers, 0.3  # long enough for every fresh interpreter to come up
    if isinstance(runner, Dask):
        return 2, 0.05
    return THREADS, 0.02


async def _podium(row: Row, p: Params, folder: Path, shared: Path) -> Sample:
    from engine import Engine, Process, Virtualenv, dag, task

    runner = _runner(row, p, shared)
    tasks = row.tasks(p)
    iterations = p.iterations if row.group == "cpu" else 0

    @dag(dag_id="fanout", runner=runner)
    def fanout() -> None:
        for i in range(tasks):
            task(task_id=f"burn_{i}")(burn)(iterations)

    width, seconds = _workers(runner)

    @dag(dag_id="prime", runner=runner)
    def prime() -> None:
        for i in range(width):
            task(task_id=f"hold_{i}")(hold)(seconds)

    async with Engine(folder / "state.db", dags=[fanout, prime], sensors=False) as engine:
        if row.key != "venv-first-try":
            for _ in range(10):
                primed = await (await engine.trigger("prime")).wait(timeout=600)
                pids = {t.result for t in primed.tasks.values()}
                if primed.state != "success":
                    raise CheckError(f"the priming run failed: {primed.state}")
                if not isinstance(runner, (Process, Virtualenv)) or len(pids) == width:
                    break
        started = time.perf_counter()
        run = await (await engine.trigger("fanout")).wait(timeout=900)
        wall = time.perf_counter() - started
    _check(run.state == "success", f"run ended {run.state}")
    results = [t.result for t in run.tasks.values()]
    _check(results == [burn(iterations)] * tasks, f"{len(results)} results, not {tasks} right ones")
    return Sample(wall)


# -- floors and Dask itself ---------------------------------------------------------------------------


def _prime_executor(executor: Executor, width: int, seconds: float, processes: bool) -> None:
    """Keep ``width`` workers busy at once until each has started (processes: distinct PIDs)."""
    for _ in range(10):
        pids = set(executor.map(hold, [seconds] * width))
        if not processes or len(pids) == width:
            return


def _floor(row: Row, p: Params) -> Sample:
    tasks = row.tasks(p)
    iterations = p.iterations if row.group == "cpu" else 0
    executor: Executor
    if row.key.endswith("threads"):
        executor = ThreadPoolExecutor(max_workers=THREADS)
        width, seconds, processes = THREADS, 0.02, False
    else:
        executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        width, seconds, processes = 2, 0.3, True
    with executor:
        _prime_executor(executor, width, seconds, processes)
        started = time.perf_counter()
        futures = [executor.submit(burn, iterations) for _ in range(tasks)]
        results = [f.result() for f in futures]
        wall = time.perf_counter() - started
    _check(results == [burn(iterations)] * tasks, f"{len(results)} results, not {tasks} right ones")
    return Sample(wall)


async def _raw_dask(row: Row, p: Params) -> Sample:
    from distributed import Client

    tasks = row.tasks(p)
    async with Client(p.scheduler, asynchronous=True, set_as_default=False) as client:
        await client.gather([client.submit(hold, 0.05, pure=False) for _ in range(2)])
        started = time.perf_counter()
        futures = [client.submit(burn, 0, pure=False) for _ in range(tasks)]
        results = await client.gather(futures)
        wall = time.perf_counter() - started
        del futures
    _check(results == [0] * tasks, f"{len(results)} results, not {tasks} zeros")
    return Sample(wall)


# -- Virtualenv builds --------------------------------------------------------------------------------


@contextlib.contextmanager
def _uv_cache(folder: Path) -> Iterator[None]:
    saved = os.environ.get("UV_CACHE_DIR")
    os.environ["UV_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["UV_CACHE_DIR"]
        else:
            os.environ["UV_CACHE_DIR"] = saved


async def _build(p: Params, envs: Path, uv_cache: Path) -> Sample:
    from engine import Virtualenv
    from engine.runners.venv_build import ensure_env

    setting = Virtualenv(requirements=list(p.requirements), cache_dir=envs)
    with _uv_cache(uv_cache):
        started = time.perf_counter()
        built = await ensure_env(setting.spec(), envs)
        wall = time.perf_counter() - started
    _check(built.built, "the environment was found in the cache: not a cold build")
    return Sample(wall, {"uv_cache": str(uv_cache)})


def set_up(row: Row, p: Params, shared: Path) -> None:
    """What a row needs before its warm-up, untimed: a uv cache holding the package, a built env."""
    if row.key in ("venv-build-uvwarm", "venv-warm-start", "venv-first-try"):
        envs = shared / ("fill" if row.key == "venv-build-uvwarm" else "envs")
        asyncio.run(_build(p, envs, shared / "uv"))


def measure(row: Row, p: Params, folder: Path, shared: Path) -> Sample:
    """One measurement of ``row``, its state in ``folder`` (new and empty), on a fresh event loop."""
    if row.key.startswith(("cpu-floor", "noop-floor")):
        return _floor(row, p)
    if row.key == "noop-raw-dask2":
        return asyncio.run(_raw_dask(row, p))
    if row.key == "venv-build-uvcold":
        return asyncio.run(_build(p, folder / "envs", folder / "uv"))
    if row.key == "venv-build-uvwarm":
        return asyncio.run(_build(p, folder / "envs", shared / "uv"))
    return asyncio.run(_podium(row, p, folder, shared))


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise CheckError(why)


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_row(key: str, p: Params, reps: int, *, warmup: bool = True) -> dict[str, Any]:
    """Set-up, a warm-up and ``reps`` timed measurements of one row, each with fresh state."""
    row = ROWS_BY_KEY[key]
    load_before = os.getloadavg()[0]
    samples: list[Sample] = []
    warm: Sample | None = None
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="podium-rbench-") as shared_dir:
        shared = Path(shared_dir)
        set_up(row, p, shared)
        for i in range(reps + int(warmup)):
            with tempfile.TemporaryDirectory(prefix="podium-rbench-") as tmp:
                try:
                    sample = measure(row, p, Path(tmp), shared)
                except CheckError as exc:
                    failures.append(str(exc))
                    continue
            if warmup and i == 0:
                warm = sample
            else:
                samples.append(sample)
    walls = [s.wall for s in samples]
    tasks = row.tasks(p)
    result: dict[str, Any] = {
        "row": key,
        "group": row.group,
        "label": row.label,
        "tasks": tasks,
        "iterations": p.iterations if row.group == "cpu" else 0,
        "reps": reps,
        "warmup_s": warm.wall if warm else None,
        "walls_s": walls,
        "rss_peak_mb": _peak_rss_mb(),
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "extra": samples[len(samples) // 2].extra if samples else {},
        "invalid": f"{failures[0]} ({len(failures)} measurements)" if failures else None,
    }
    if walls:
        median = statistics.median(walls)
        result |= {
            "median_s": median,
            "min_s": min(walls),
            "max_s": max(walls),
            "ms_per_task": median / tasks * 1000,
        }
    return result


# -- the command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from . import runners_table

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runners", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller fan-outs")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3)")
    parser.add_argument("--rows", default="all", help="rows or groups (cpu, noop, venv), or all")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--one", metavar="ROW", help="(child) measure one row, print JSON")
    parser.add_argument("--tasks", type=int, default=200, help="(child) tasks per fan-out")
    parser.add_argument("--iterations", type=int, default=0, help="(child) burn() per cpu task")
    parser.add_argument("--scheduler", default=None, help="(child) Dask scheduler address")
    parser.add_argument(
        "--requirements", default=",".join(REQUIREMENTS), help="(child) the venv rows' packages"
    )
    args = parser.parse_args(argv)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        parser.error("--reps must be >= 1")
    if args.one:
        if args.one not in ROWS_BY_KEY:
            parser.error(f"unknown row {args.one!r} (one of {', '.join(ROWS_BY_KEY)})")
        p = Params(
            tasks=args.tasks,
            iterations=args.iterations,
            scheduler=args.scheduler,
            requirements=tuple(r for r in args.requirements.split(",") if r),
        )
        print(json.dumps(measure_row(args.one, p, reps)), flush=True)
        return 0
    try:
        keys = runners_table.select(args.rows)
    except ValueError as exc:
        parser.error(str(exc))
    from rich.console import Console

    console = Console(width=max(Console().width, 150))
    payload = runners_table.run(keys, reps, quick=args.quick, dask=not args.no_dask)
    runners_table.print_results(console, payload)
    if args.out:
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"[dim]wrote {args.out}[/dim]")
    return 1 if runners_table.failed(payload) else 0


if __name__ == "__main__":
    sys.exit(main())
