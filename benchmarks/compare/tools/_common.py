"""Shared by every tool adapter: the command line, the workload sizes and checks, the JSON line.

This module is imported by the adapters *inside each tool's own virtualenv* (an adapter is run as a
script, so this directory is on ``sys.path``); it uses the standard library only.

An adapter measures exactly one workload per process: it sets the tool up (untimed), runs the same
workload once at a small size as an in-process warm-up (untimed, same state), then runs it at the
requested size and times that, checks the result, and prints one JSON line on stdout.

The task bodies below are the ones of ``benchmarks/workloads.py`` (root/leaf/join, a chain of +1
steps, a 5-task ETL, sleepers under a limit); each adapter wraps them in its tool's own idiom.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

WORKLOADS = ("W1", "W2", "W3-seq", "W3-conc", "W4", "events", "dask")

# Full sizes, as in benchmarks/workloads.py: W1 fan-out width, W2 chain length, W3 runs, W4 sleepers;
# dask: n independent tasks x -> x + 1 (x = 0..n-1) on the Dask cluster at --scheduler.
FULL_SIZE = {
    "W1": 1000,
    "W2": 200,
    "W3-seq": 200,
    "W3-conc": 200,
    "W4": 1000,
    "events": 1000,
    "dask": 200,
}
W4_SLEEP_S = 0.1
W4_LIMIT = 100
W3_TASKS_PER_RUN = 5


# -- task bodies (pure; each adapter wraps them as its tool's tasks/ops/steps) -------------------------


def root_body() -> int:
    return 1


def leaf_body(x: int) -> int:
    return x + 1


def join_body(xs: list[int]) -> list[int]:
    return [len(xs), sum(xs)]


def first_body() -> int:
    return 1


def step_body(x: int) -> int:
    return x + 1


def extract_crm_body() -> list[dict[str, Any]]:
    return [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]


def extract_db_body() -> list[dict[str, Any]]:
    return [{"id": 2, "spend": 10.0}, {"id": 3, "spend": 4.5}]


def clean_body(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return sorted({row["id"] for row in crm} | {row["id"] for row in db})


def enrich_body(ids: list[int]) -> list[dict[str, Any]]:
    return [{"id": i, "tier": "gold" if i % 2 else "silver"} for i in ids]


def load_body(rows: list[dict[str, Any]]) -> int:
    return len(rows)


class LiveProbe:
    """Counts, from inside the sleeper tasks, how many are live at once and how many finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live = self.peak = self.finished = 0

    def reset(self) -> None:
        with self._lock:
            self.live = self.peak = self.finished = 0

    def enter(self) -> None:
        with self._lock:
            self.live += 1
            self.peak = max(self.peak, self.live)

    def exit(self) -> None:
        with self._lock:
            self.live -= 1
            self.finished += 1


PROBE = LiveProbe()


@dataclass
class Timed:
    """What ``run`` returns when it times its own span (Podium, the floor: engine open/close are
    left out, like the other tools' server start or launch): the sink result and that wall time."""

    result: Any
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


# -- checks ---------------------------------------------------------------------------------------------


def tasks_of(workload: str, n: int) -> int:
    """Tasks in one measurement of ``workload`` at size ``n``."""
    if workload == "W1":
        return n + 2
    if workload in ("W3-seq", "W3-conc"):
        return n * W3_TASKS_PER_RUN
    return n  # W2, W4, events (one task per run), dask


def runs_of(workload: str, n: int) -> int:
    return n if workload in ("W3-seq", "W3-conc", "events") else 1


def check(workload: str, n: int, got: Any, limit: int = W4_LIMIT) -> str | None:
    """None if ``got`` (the sink result(s); for W4 ignored, the probe is read) is right, else why."""
    if workload == "W1":
        want: Any = [n, 2 * n]
        return None if got == want else f"join returned {got!r}, expected {want!r}"
    if workload == "W2":
        return None if got == n else f"the chain's last step returned {got!r}, expected {n}"
    if workload in ("W3-seq", "W3-conc"):
        got = list(got)
        wrong = [g for g in got if g != 3]
        if len(got) != n or wrong:
            return f"{len(got)} runs, {len(wrong)} with a wrong load result (e.g. {wrong[:2]!r})"
        return None
    if workload == "dask":
        want = n * (n + 1) // 2  # the sum of x + 1 over x = 0..n-1
        return None if got == want else f"the results summed to {got!r}, expected {want}"
    if workload == "W4":
        if PROBE.finished != n:
            return f"{PROBE.finished} of {n} sleepers finished"
        if PROBE.peak > limit:
            return f"{PROBE.peak} sleepers live at once, over the limit of {limit}"
        return None
    return None


# -- the command line and the JSON line ----------------------------------------------------------------


@dataclass
class Args:
    workload: str
    n: int
    warmup_n: int
    variant: str
    scheduler: str | None = None  # the Dask scheduler's address (the dask workload)
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(variants: tuple[str, ...] = ("default",)) -> Args:
    parser = argparse.ArgumentParser(description="Measure one workload once; print one JSON line.")
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--n", type=int, default=None, help="size (default: the full size)")
    parser.add_argument("--warmup-n", type=int, default=None, help="in-process warm-up size")
    parser.add_argument("--variant", default=variants[0], choices=variants)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (dask)")
    ns = parser.parse_args()
    if ns.workload == "dask" and not ns.scheduler:
        parser.error("the dask workload needs --scheduler ADDRESS")
    n = ns.n if ns.n is not None else FULL_SIZE[ns.workload]
    default_warm = min(n, 5) if ns.workload.startswith("W3") else min(n, 20)  # W3: runs
    warm = ns.warmup_n if ns.warmup_n is not None else default_warm
    return Args(
        workload=ns.workload, n=n, warmup_n=warm, variant=ns.variant, scheduler=ns.scheduler
    )


def version(dist: str) -> str | None:
    if dist == "sqlite3":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(record: dict[str, Any]) -> None:
    """The one JSON line this process reports (on stdout, prefixed so log noise cannot mix in)."""
    sys.stdout.write("BENCH-RESULT " + json.dumps(record) + "\n")
    sys.stdout.flush()


def _record(tool: str, dist: str, args: Args) -> dict[str, Any]:
    return {
        "tool": tool,
        "version": version(dist),
        "variant": args.variant,
        "workload": args.workload,
        "n": args.n,
        "tasks": tasks_of(args.workload, args.n),
        "runs": runs_of(args.workload, args.n),
        "pid": os.getpid(),
    }


def _finish(record: dict[str, Any], args: Args, got: Any, wall: float, limit: int) -> None:
    if isinstance(got, Timed):
        record["outer_wall_s"] = wall  # the whole call, engine open/close included
        record["extra"] = got.extra
        got, wall = got.result, got.wall_s
    record["wall_s"] = wall
    record["invalid"] = check(args.workload, args.n, got, limit)
    if args.workload == "W4":
        record["peak_live"] = PROBE.peak
    record["rss_peak_mb"] = peak_rss_mb()


def _failed(record: dict[str, Any], exc: BaseException) -> int:
    traceback.print_exc()
    record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    emit(record)
    return 1


def measure(
    tool: str,
    dist: str,
    args: Args,
    run: Callable[[str, int], Any],
    *,
    limit: int = W4_LIMIT,
    notes: dict[str, Any] | None = None,
) -> int:
    """Warm up with ``run(workload, warmup_n)``, then time ``run(workload, n)``; print the JSON line.

    ``run`` returns the sink result (W1: join's, W2: the last step's, W3: the list of load results).
    """
    record = _record(tool, dist, args) | {"notes": notes or {}}
    try:
        if args.warmup_n > 0:
            PROBE.reset()
            t0 = time.perf_counter()
            run(args.workload, args.warmup_n)
            record["warmup_s"], record["warmup_n"] = time.perf_counter() - t0, args.warmup_n
        PROBE.reset()
        gc.collect()
        t0 = time.perf_counter()
        got = run(args.workload, args.n)
        _finish(record, args, got, time.perf_counter() - t0, limit)
    except Exception as exc:  # reported, not hidden: the driver shows it in the table
        return _failed(record, exc)
    emit(record)
    return 0


async def ameasure(
    tool: str,
    dist: str,
    args: Args,
    run: Callable[[str, int], Awaitable[Any]],
    *,
    limit: int = W4_LIMIT,
    notes: dict[str, Any] | None = None,
) -> int:
    """``measure`` for async tools: warm-up and timed run on the caller's event loop."""
    record = _record(tool, dist, args) | {"notes": notes or {}}
    try:
        if args.warmup_n > 0:
            PROBE.reset()
            t0 = time.perf_counter()
            await run(args.workload, args.warmup_n)
            record["warmup_s"], record["warmup_n"] = time.perf_counter() - t0, args.warmup_n
        PROBE.reset()
        gc.collect()
        t0 = time.perf_counter()
        got = await run(args.workload, args.n)
        _finish(record, args, got, time.perf_counter() - t0, limit)
    except Exception as exc:
        return _failed(record, exc)
    emit(record)
    return 0
