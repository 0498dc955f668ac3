"""Run the benchmarks: ``python -m benchmarks.run`` (``make bench``).

The parent process starts one subprocess per (workload, implementation), ``python -m benchmarks.run
--one W1 --impl podium``, so peak RSS and warm caches never leak from one measurement into another.
Each child makes one warm-up measurement and then ``--reps`` timed ones, each on a fresh state file in
a fresh temporary directory, checks every result, and prints one JSON line. The parent prints a table
and writes ``benchmarks/results.json``.

Implementations: ``podium`` on asyncio's default event loop, ``podium-uvloop`` (the same engine on
uvloop), and the floor with two commit policies. Each measurement gets a fresh loop of its kind.

Then the runner rows (``runners.py``, ``runners_table.py``): where a task runs (threads, a
``Process`` pool, Dask, a ``Virtualenv``) beside floors measured in the same run, each row in its own
subprocess too, printed as a second table and saved under ``runners`` in the same results file.

Options: ``--quick`` (1 repetition, smaller runner fan-outs; results.json is left alone unless
``--out`` is given), ``--workloads W1,W4``, ``--impls podium,podium-uvloop``, ``--runners
cpu,noop,venv`` (rows or groups; ``none`` skips them), ``--no-dask``, ``--reps N``, ``--out PATH``,
``--markdown RESULTS_JSON`` (print a results file as Markdown tables; measures nothing).
Profiling one measurement set: ``--one W1 --impl podium --profile /tmp/w1.prof`` (cProfile over
the timed repetitions; read it with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from . import floor, podium_runner, runners_table
from .workloads import WORKLOADS, Outcome, Workload, WorkloadError

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results.json"
_T = TypeVar("_T")

IMPLS = ("podium", "podium-uvloop", "floor-batch100", "floor-pertask")
UVLOOP_IMPLS = frozenset({"podium-uvloop"})  # the others run on asyncio's default loop
FLOOR_REFERENCE = "floor-batch100"  # the "x floor" column divides by this implementation


@dataclass(frozen=True)
class Target:
    metric: str  # a key of the result dict
    op: str  # "<=" or ">="
    value: float
    label: str

    def met(self, result: dict[str, Any]) -> bool:
        got = result[self.metric]
        return bool(got <= self.value if self.op == "<=" else got >= self.value)


TARGETS: dict[str, Target] = {
    "W1": Target("us_per_task", "<=", 50.0, "<= 50 us/task"),
    "W2": Target("us_per_task", "<=", 200.0, "<= 0.2 ms/task"),
    "W3-seq": Target("runs_per_s", ">=", 500.0, ">= 500 runs/s"),
    "W3-conc": Target("runs_per_s", ">=", 500.0, ">= 500 runs/s"),
    "W4": Target("median_s", "<=", 1.05, "<= 1.05 s"),
}


# -- one measurement --------------------------------------------------------------------------------


def loop_factory(impl: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``impl`` is measured on: uvloop's, or None for asyncio's default."""
    if impl not in UVLOOP_IMPLS:
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise RuntimeError(f"{impl} needs uvloop: pip install -e '.[uvloop]'") from exc
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which kind of event loop ``loop`` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def on_loop_of(impl: str, main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a fresh event loop of the kind ``impl`` is measured on."""
    with asyncio.Runner(loop_factory=loop_factory(impl)) as runner:
        return runner.run(main)


async def measure_once(impl: str, wl: Workload, db_path: str | os.PathLike[str]) -> Outcome:
    """One measurement of ``wl`` on ``impl`` with a state file at ``db_path`` (which must not exist).

    Call it on ``impl``'s loop (``on_loop_of``): a uvloop implementation refuses any other.
    """
    if impl in UVLOOP_IMPLS and loop_name(asyncio.get_running_loop()) != "uvloop":
        raise RuntimeError(f"{impl} must be measured on uvloop: use on_loop_of({impl!r}, ...)")
    if impl in ("podium", "podium-uvloop"):
        return await podium_runner.measure(wl, db_path)
    if impl.startswith("floor-"):
        return await floor.measure(wl, db_path, policy=impl.removeprefix("floor-"))
    raise ValueError(f"unknown implementation {impl!r} (one of {', '.join(IMPLS)})")


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


async def _thread_hop_us(n: int = 200) -> float:
    """Median round trip event loop -> worker thread -> event loop, in microseconds.

    Podium's store calls go through aiosqlite's thread, so chains of commits (W2, W3-seq) move with
    this figure, which on a VM depends on whether the other vCPUs are idle; recorded for context.
    """
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await loop.run_in_executor(None, int)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def run_child(
    key: str, impl: str, reps: int, *, warmup: bool = True, profile: str | None = None
) -> dict[str, Any]:
    """Warm-up plus ``reps`` checked measurements of one workload on one implementation."""
    wl = WORKLOADS[key]()
    if impl.startswith("podium"):
        podium_runner.build_dag(wl)  # building the DAG is not part of any measurement
    rss_base = _peak_rss_mb()
    hop_us = on_loop_of(impl, _thread_hop_us())
    profiler = cProfile.Profile() if profile else None
    outcomes: list[Outcome] = []
    warm: Outcome | None = None
    failures: list[str] = []
    for i in range(reps + int(warmup)):
        timed = i >= int(warmup)
        with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
            gc.collect()
            if profiler is not None and timed:
                profiler.enable()
            try:
                outcome = on_loop_of(impl, measure_once(impl, wl, Path(tmp) / "state.db"))
            finally:
                if profiler is not None:
                    profiler.disable()
        try:
            wl.check(outcome)
        except WorkloadError as exc:
            failures.append(str(exc))
        if timed:
            outcomes.append(outcome)
        else:
            warm = outcome
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    walls = [o.wall for o in outcomes]
    median = statistics.median(walls)
    mid = sorted(outcomes, key=lambda o: o.wall)[len(outcomes) // 2]
    tasks = wl.tasks_per_measurement
    return {
        "workload": key,
        "impl": impl,
        "loop": "uvloop" if impl in UVLOOP_IMPLS else "asyncio",
        "title": wl.title,
        "tasks": tasks,
        "runs": wl.runs,
        "mode": wl.mode,
        "limit": wl.limit,
        "reps": reps,
        "warmup_s": warm.wall if warm else None,
        "walls_s": walls,
        "median_s": median,
        "us_per_task": median / tasks * 1e6,
        "tasks_per_s": tasks / median,
        "runs_per_s": wl.runs / median,
        "rss_base_mb": rss_base,
        "rss_peak_mb": _peak_rss_mb(),
        "thread_hop_us": hop_us,
        "extra": mid.extra,
        "profiled": profile is not None,
        # A failed correctness check: the timings are kept (they are still real) but flagged.
        "invalid": (
            f"{failures[0]} ({len(failures)} of {reps + int(warmup)} measurements)"
            if failures
            else None
        ),
    }


# -- the parent: one subprocess per measurement set ------------------------------------------------


def _spawn(key: str, impl: str, reps: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--one",
        key,
        "--impl",
        impl,
        "--reps",
        str(reps),
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        return {"workload": key, "impl": impl, "error": "timed out after 900 s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"workload": key, "impl": impl, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def machine_info() -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable_cpus = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite_version": sqlite3.sqlite_version,
        "tmpdir": tempfile.gettempdir(),
        "packages": {
            p: version(p)
            for p in ("podium", "anyio", "aiosqlite", "orjson", "uvloop", "distributed", "uv")
        },
        "load_average": list(os.getloadavg()),  # 1, 5, 15 min: the machine is shared
        "engine_source_sha256": _source_digest(REPO_ROOT / "engine"),
    }


def _source_digest(package: Path) -> str:
    """A digest of the engine's source, to tell which engine a results file measured."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _fmt_us(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def render_table(results: list[dict[str, Any]], reps: int) -> Any:
    from rich.table import Table

    floor_us = {
        r["workload"]: r["us_per_task"]
        for r in results
        if r.get("impl") == FLOOR_REFERENCE and "error" not in r
    }
    table = Table(
        title=f"Podium vs the asyncio+sqlite3 floor (median of {reps}, durability=normal)",
        show_lines=False,
    )
    for col, justify in (
        ("workload", "left"),
        ("impl", "left"),
        ("median wall", "right"),
        ("us/task", "right"),
        ("tasks/s", "right"),
        ("runs/s", "right"),
        ("target", "left"),
        ("met", "center"),
        ("x floor", "right"),
        ("commits", "right"),
        ("RSS MB", "right"),
        ("hop us", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    previous = None
    for r in results:
        key = r["workload"]
        if previous is not None and key != previous:
            table.add_section()
        previous = key
        if "error" in r:
            table.add_row(key, r["impl"], "[red]ERROR[/red]", r["error"][:60], *[""] * 8)
            continue
        target = TARGETS.get(key)
        met = "" if target is None else ("[green]yes[/green]" if target.met(r) else "[red]no[/red]")
        if r.get("invalid"):
            met = "[red]INVALID*[/red]"
        ratio = floor_us.get(key)
        ratio_s = "" if ratio is None else f"{r['us_per_task'] / ratio:.1f}x"
        walls = r["walls_s"]
        spread = f" ({min(walls):.3f}-{max(walls):.3f})" if len(walls) > 1 else ""
        runs_s = f"{r['runs_per_s']:,.0f}" if r["runs"] > 1 else ""
        table.add_row(
            key,
            r["impl"],
            f"{r['median_s']:.3f} s{spread}",
            _fmt_us(r["us_per_task"]),
            f"{r['tasks_per_s']:,.0f}",
            runs_s,
            target.label if target else "",
            met,
            ratio_s,
            str(r["extra"].get("commits", "")),
            f"{r['rss_peak_mb']:.0f}",
            f"{r['thread_hop_us']:.0f}",
        )
    return table


def mapped_vs_fanout(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per implementation measured on both: W1's and W5's us/task, and W5 over W1 ("mapping 10 000
    elements costs no more per task than W1" holds when the ratio is <= 1)."""
    per_task = {
        (r["workload"], r["impl"]): r["us_per_task"]
        for r in results
        if "error" not in r and not r.get("invalid")
    }
    out: dict[str, dict[str, float]] = {}
    for impl in dict.fromkeys(r["impl"] for r in results):
        w1, w5 = per_task.get(("W1", impl)), per_task.get(("W5", impl))
        if w1 is not None and w5 is not None:
            out[impl] = {"w1_us_per_task": w1, "w5_us_per_task": w5, "ratio": w5 / w1}
    return out


def _comparison_lines(comparison: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"W5 (mapped, 10 000) vs W1 (fan-out, 1000), {impl}: {c['w5_us_per_task']:.1f} vs "
        f"{c['w1_us_per_task']:.1f} us/task = {c['ratio']:.2f}x"
        for impl, c in comparison.items()
    ]


def render_markdown(payload: dict[str, Any]) -> str:
    """The results of a results.json as a Markdown table (for benchmarks/README.md)."""
    results = payload["results"]
    floor_us = {
        r["workload"]: r["us_per_task"]
        for r in results
        if r.get("impl") == FLOOR_REFERENCE and "error" not in r
    }
    lines = [
        "| workload | impl | median wall (min-max) | us/task | tasks/s | runs/s | target | met "
        f"| x {FLOOR_REFERENCE} | commits | peak RSS MB |",
        "|---|---|--:|--:|--:|--:|---|:-:|--:|--:|--:|",
    ]
    for r in results:
        key = r["workload"]
        if "error" in r:
            lines.append(f"| {key} | {r['impl']} | ERROR: {r['error']} |||||||||")
            continue
        target = TARGETS.get(key)
        met = "" if target is None else ("yes" if target.met(r) else "**no**")
        if r.get("invalid"):
            met = "**INVALID**"
        walls = r["walls_s"]
        ratio = floor_us.get(key)
        cells = [
            key,
            r["impl"],
            f"{r['median_s']:.3f} s ({min(walls):.3f}-{max(walls):.3f})",
            _fmt_us(r["us_per_task"]),
            f"{r['tasks_per_s']:,.0f}",
            f"{r['runs_per_s']:,.0f}" if r["runs"] > 1 else "",
            target.label.replace("<=", "≤").replace(">=", "≥") if target else "",
            met,
            "" if ratio is None else f"{r['us_per_task'] / ratio:.1f}x",
            str(r["extra"].get("commits", "")),
            f"{r['rss_peak_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    comparison = _comparison_lines(mapped_vs_fanout(results))
    if comparison:
        lines += ["", *(f"- {line}" for line in comparison)]
    if payload.get("runners"):
        lines += ["", runners_table.markdown(payload["runners"])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition; smoke run")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated")
    parser.add_argument(
        "--runners", default="all", help="runner rows or groups (cpu,noop,venv), all, or none"
    )
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask runner rows")
    parser.add_argument("--out", default=None, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument(
        "--one", metavar="WORKLOAD", help="(child) measure one workload, print JSON"
    )
    parser.add_argument("--impl", default="podium", help="(child) implementation for --one")
    parser.add_argument("--profile", metavar="PATH", help="(child) cProfile the timed reps to PATH")
    parser.add_argument(
        "--markdown",
        metavar="RESULTS_JSON",
        help="print a results file as a Markdown table and exit (measures nothing)",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(render_markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        parser.error("--reps must be >= 1")

    if args.one:
        if args.one not in WORKLOADS:
            parser.error(f"unknown workload {args.one!r} (one of {', '.join(WORKLOADS)})")
        if args.impl not in IMPLS:
            parser.error(f"unknown implementation {args.impl!r} (one of {', '.join(IMPLS)})")
        print(json.dumps(run_child(args.one, args.impl, reps, profile=args.profile)), flush=True)
        return 0

    from rich.console import Console

    keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for k in keys:
        if k not in WORKLOADS:
            parser.error(f"unknown workload {k!r} (one of {', '.join(WORKLOADS)})")
    for i in impls:
        if i not in IMPLS:
            parser.error(f"unknown implementation {i!r} (one of {', '.join(IMPLS)})")
    try:
        runner_rows = runners_table.select(args.runners)
    except ValueError as exc:
        parser.error(str(exc))

    console = Console(width=max(Console().width, 170))  # the table needs ~160 columns
    err = Console(stderr=True)
    info = machine_info()
    err.print(
        f"[dim]{info['cpu_count']} CPUs, Python {info['python']}, SQLite {info['sqlite_version']}; "
        f"{reps} rep(s) after 1 warm-up, one subprocess per row[/dim]"
    )
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for key in keys:
        for impl in impls:
            err.print(f"  {key:8} {impl:15}", end="")
            r = _spawn(key, impl, reps)
            results.append(r)
            if "error" in r:
                err.print(f" [red]{r['error']}[/red]")
            else:
                err.print(f" {r['median_s']:.3f} s  {r['us_per_task']:,.1f} us/task")
    console.print(render_table(results, reps))
    console.print(
        "[dim]us/task = median wall / tasks per measurement; x floor = us/task over "
        f"{FLOOR_REFERENCE}'s; RSS MB = peak RSS of the measuring subprocess; W1-W3 run under Podium's default "
        "max_tasks=64 (the floor under a 64-slot semaphore); W4 under max_tasks=100 "
        "(floor: 100-slot semaphore); W5 under max_tasks=64, its tasks are the 10 000 mapped "
        "instances plus numbers and join. hop us = median event-loop -> thread -> event-loop round "
        "trip measured in that subprocess (each Podium commit pays one, each read several). "
        f"Total {time.perf_counter() - started:.0f} s.[/dim]"
    )

    comparison = mapped_vs_fanout(results)
    for line in _comparison_lines(comparison):
        console.print(line)
    for r in results:
        if r.get("invalid"):
            console.print(
                f"[red]* {r['workload']} {r['impl']}: wrong results: {r['invalid']}[/red]"
            )
    runners: dict[str, Any] | None = None
    if runner_rows:
        runners = runners_table.run(runner_rows, reps, quick=args.quick, dask=not args.no_dask)
        runners_table.print_results(console, runners)
    info["load_average_after"] = list(os.getloadavg())
    out = args.out or (None if args.quick else str(DEFAULT_OUT))
    if out:
        payload = {
            "machine": info,
            "settings": {
                "reps": reps,
                "warmup": 1,
                "durability": "normal (WAL, synchronous=NORMAL)",
                "statistic": "median",
                "quick": args.quick,
            },
            "targets": {k: t.__dict__ for k, t in TARGETS.items()},
            "results": results,
            "w5_vs_w1": comparison,
            "runners": runners,
        }
        Path(out).write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"[dim]wrote {out}[/dim]")
    failed = any("error" in r or r.get("invalid") for r in results)
    return 1 if failed or (runners is not None and runners_table.failed(runners)) else 0


if __name__ == "__main__":
    sys.exit(main())
