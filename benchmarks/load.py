"""Load: many queued tasks and many concurrent runs — wall time, per-task overhead, peak RSS.

``python -m benchmarks.load`` runs every scenario, each in its own subprocess
(``python -m benchmarks.load --one q100k``) so peak RSS never leaks between them, prints a table and
writes ``benchmarks/load_results.json``. ``--scenarios q1k,q10k`` picks some; ``--reps N`` overrides
the repetitions; ``--one NAME --profile OUT.prof`` runs cProfile over one scenario's timed
repetitions (``python -m pstats OUT.prof``); ``--markdown [RESULTS]`` prints a results file as the
Markdown table of ``benchmarks/README.md`` and measures nothing.

Scenarios (trivial async tasks, each counting itself live on entry and exit around one
``await anyio.lowlevel.checkpoint()``; the engine's default ``max_tasks=64``):

- ``q1k``, ``q10k``, ``q100k``: one DAG of 1000 independent tasks, 1 / 10 / 100 runs triggered at
  once (``asyncio.gather`` of ``trigger``), so 1 000 / 10 000 / 100 000 tasks are queued together;
- ``dag10k``, ``dag100k``: one run of a DAG of 10 000 / 100 000 independent tasks;
- ``runs1000``: 1 000 concurrent runs of a 5-task ETL DAG (W3's shape: two extracts -> clean ->
  enrich -> load), 5 000 tasks.

Timed span: from the first ``trigger`` to the last run read back finished (``run.wait()``);
``queue_s`` is when the last ``trigger`` returned, i.e. every run and task was committed and queued.
Building the DAG and opening/closing the engine are not timed (``build_s``, ``open_s``, ``close_s``).
Checked: every run succeeded (read back from the state file), as many task executions as tasks, and at
most ``max_tasks`` were ever live (counted by the tasks). A failed check flags the row INVALID.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.lowlevel

from engine import DAG, Engine, dag, task

from .run import _peak_rss_mb, machine_info
from .workloads import DEFAULT_LIMIT, LiveProbe

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "load_results.json"
RSS_TARGET_MB = 300.0


class Probe(LiveProbe):
    """``LiveProbe`` plus the time of every ``step``-th finished task, to tell the per-task cost
    while the queue is still deep from the cost once it has drained."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 1000
        self.marks: list[float] = []  # process CPU time (all threads): immune to other processes

    def reset(self) -> None:
        super().reset()
        self.marks = [time.process_time()]

    def exit(self) -> None:
        super().exit()
        if self.finished % self.step == 0:
            self.marks.append(time.process_time())


PROBE = Probe()


async def _be_live() -> None:
    """Count this task live across one trip through the event loop."""
    PROBE.enter()
    await anyio.lowlevel.checkpoint()
    PROBE.exit()


def by_queue_depth(
    marks: list[float], step: int, total: int, slices: int = 10
) -> list[list[float]]:
    """[[tasks still queued when the slice began, CPU µs per task in the slice], ...]: ``slices``
    equal slices of the run from the first task finished (full queue) to the last (empty queue)."""
    points = marks[1:]  # marks[0] is the start of the run, before the first task
    per = max(1, len(points) // slices)
    out = []
    for i in range(0, len(points) - per, per):
        took = points[i + per] - points[i]
        out.append([total - (i + 1) * step, took / (per * step) * 1e6])
    return out


@task
async def unit(i: int) -> int:
    await _be_live()
    return i


@task
async def extract(n: int) -> list[int]:
    await _be_live()
    return list(range(n))


@task
async def clean(a: list[int], b: list[int]) -> list[int]:
    await _be_live()
    return sorted(set(a) | set(b))


@task
async def enrich(ids: list[int]) -> list[dict[str, int]]:
    await _be_live()
    return [{"id": i} for i in ids]


@task
async def load_rows(rows: list[dict[str, int]]) -> int:
    await _be_live()
    return len(rows)


def wide_dag(width: int) -> DAG:
    """``width`` independent tasks."""

    def body() -> None:
        for i in range(width):
            unit.override(task_id=f"t{i}")(i)

    body.__name__ = f"wide{width}"
    return dag(body)


def etl_dag() -> DAG:
    def body() -> None:
        crm = extract.override(task_id="extract_crm")(3)
        db = extract.override(task_id="extract_db")(3)
        load_rows(enrich(clean(crm, db)))

    body.__name__ = "etl"
    return dag(body)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    build: Callable[[], DAG]
    runs: int
    tasks_per_run: int
    reps: int  # timed repetitions (after one warm-up when the scenario is small)

    @property
    def tasks(self) -> int:
        return self.runs * self.tasks_per_run


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("q1k", "1 run x 1000 tasks", lambda: wide_dag(1000), 1, 1000, 5),
        Scenario("q10k", "10 runs x 1000 tasks", lambda: wide_dag(1000), 10, 1000, 3),
        Scenario("q100k", "100 runs x 1000 tasks", lambda: wide_dag(1000), 100, 1000, 1),
        Scenario("dag10k", "1 run x 10 000 tasks", lambda: wide_dag(10_000), 1, 10_000, 3),
        Scenario("dag100k", "1 run x 100 000 tasks", lambda: wide_dag(100_000), 1, 100_000, 1),
        Scenario("runs1000", "1000 runs x 5-task ETL", etl_dag, 1000, 5, 3),
    ]
}


# -- one measurement ----------------------------------------------------------------------------------


async def measure(the_dag: DAG, sc: Scenario, db_path: Path) -> dict[str, Any]:
    PROBE.reset()
    t_open = time.perf_counter()
    async with Engine(db_path, dags=[the_dag], sensors=False) as eng:
        open_s = time.perf_counter() - t_open
        writer = eng.store.writer
        commits = writer.commits
        PROBE.reset()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(eng.trigger(the_dag.dag_id) for _ in range(sc.runs)))
        queue_s = time.perf_counter() - t0
        started_by_then = PROBE.finished + PROBE.live
        finished = [await h.wait() for h in handles]
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        commits = writer.commits - commits
        # read back once more: `wait()` may return a snapshot read before the last commit
        states = {r.run_id: r.state.value for r in await eng.runs(limit=sc.runs + 10)}
        t_close = time.perf_counter()
    close_s = time.perf_counter() - t_close
    problems = []
    not_ok = [rid for rid, state in states.items() if state != "success"]
    if len(states) != sc.runs or not_ok:
        problems.append(f"{len(not_ok)} of {len(states)} runs not success")
    stale = sum(1 for r in finished if r.state.value != "success")
    if PROBE.finished != sc.tasks:
        problems.append(f"{PROBE.finished} task executions for {sc.tasks} tasks")
    if PROBE.peak > DEFAULT_LIMIT:
        problems.append(f"{PROBE.peak} tasks live at once, over max_tasks={DEFAULT_LIMIT}")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "queue_s": queue_s,
        "run_s": wall - queue_s,
        "queued_when_triggers_returned": sc.tasks - started_by_then,
        "open_s": open_s,
        "close_s": close_s,
        "commits": commits,
        "peak_live": PROBE.peak,
        "us_per_task_by_queue_depth": by_queue_depth(PROBE.marks, PROBE.step, sc.tasks),
        "wait_returned_unfinished": stale,
        "problems": problems,
    }


def run_child(sc: Scenario, reps: int, *, profile: str | None = None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # the machine's own load: other processes skew the times
    rss_start = _peak_rss_mb()
    t0 = time.perf_counter()
    the_dag = sc.build()
    build_s = time.perf_counter() - t0
    rss_built = _peak_rss_mb()
    warmup = sc.tasks <= 10_000
    profiler = cProfile.Profile() if profile else None
    samples: list[dict[str, Any]] = []
    for i in range(reps + int(warmup)):
        timed = i >= int(warmup)
        with tempfile.TemporaryDirectory(prefix="podium-load-") as tmp:
            gc.collect()
            if profiler is not None and timed:
                profiler.enable()
            try:
                sample = asyncio.run(measure(the_dag, sc, Path(tmp) / "state.db"))
            finally:
                if profiler is not None:
                    profiler.disable()
        if timed:
            samples.append(sample)
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    mid = sorted(samples, key=lambda s: s["wall_s"])[len(samples) // 2]
    wall = statistics.median(s["wall_s"] for s in samples)
    problems = sorted({p for s in samples for p in s["problems"]})
    return {
        "scenario": sc.name,
        "title": sc.title,
        "runs": sc.runs,
        "tasks": sc.tasks,
        "max_tasks": DEFAULT_LIMIT,
        "reps": reps,
        "walls_s": [s["wall_s"] for s in samples],
        "wall_s": wall,
        "us_per_task": wall / sc.tasks * 1e6,
        "cpu_us_per_task": statistics.median(s["cpu_s"] for s in samples) / sc.tasks * 1e6,
        "queue_us_per_task": mid["queue_s"] / sc.tasks * 1e6,
        "run_us_per_task": mid["run_s"] / sc.tasks * 1e6,
        "tasks_per_s": sc.tasks / wall,
        "runs_per_s": sc.runs / wall,
        "build_s": build_s,
        "rss_start_mb": rss_start,
        "rss_after_build_mb": rss_built,
        "rss_peak_mb": _peak_rss_mb(),
        "detail": {k: v for k, v in mid.items() if k != "problems"},
        "loadavg_1m": [load_before, os.getloadavg()[0]],
        "profiled": profile is not None,
        "invalid": "; ".join(problems) or None,
    }


# -- the parent ---------------------------------------------------------------------------------------


def _spawn(name: str, reps: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.load", "--one", name]
    if reps is not None:
        cmd += ["--reps", str(reps)]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired:
        return {"scenario": name, "error": "timed out after 1800 s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"scenario": name, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


COLUMNS = (
    "scenario",
    "shape",
    "tasks",
    "wall s",
    "us/task",
    "CPU us/task",
    "queue us/task",
    "run us/task",
    "runs/s",
    "peak live",
    "peak RSS MB",
    "RSS <= 300 MB",
    "load avg",
    "check",
)


def _row(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [r["scenario"], *[""] * (len(COLUMNS) - 2), f"ERROR {r['error']}"]
    return [
        r["scenario"],
        r["title"],
        f"{r['tasks']:,}",
        f"{r['wall_s']:.2f}"
        + (f" ({min(r['walls_s']):.2f}-{max(r['walls_s']):.2f})" if r["reps"] > 1 else ""),
        f"{r['us_per_task']:.0f}",
        f"{r['cpu_us_per_task']:.0f}",
        f"{r['queue_us_per_task']:.0f}",
        f"{r['run_us_per_task']:.0f}",
        f"{r['runs_per_s']:,.0f}",
        str(r["detail"]["peak_live"]),
        f"{r['rss_peak_mb']:.0f}",
        "yes" if r["rss_peak_mb"] <= RSS_TARGET_MB else "**no**",
        "-".join(f"{v:.1f}" for v in r.get("loadavg_1m", [])),
        "ok" if not r["invalid"] else f"INVALID: {r['invalid']}",
    ]


def flatness(results: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """``metric`` of q1k, q10k, q100k relative to q1k (1.00 everywhere = flat)."""
    by = {r["scenario"]: r for r in results if metric in r}
    if "q1k" not in by:
        return {}
    base = by["q1k"][metric]
    return {k: by[k][metric] / base for k in ("q1k", "q10k", "q100k") if k in by}


def render_markdown(payload: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in payload["results"]]
    return "\n".join(lines)


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Podium under load (max_tasks=64)", title_justify="left")
    for col in COLUMNS:
        table.add_column(
            col, justify="right" if col not in ("scenario", "shape", "check") else "left"
        )
    for r in results:
        table.add_row(*_row(r))
    Console(width=200).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.splitlines()[0]
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    p.add_argument(
        "--reps", type=int, default=None, help="timed repetitions (default: per scenario)"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument(
        "--one", choices=sorted(SCENARIOS), help="child mode: one scenario, one JSON line"
    )
    p.add_argument("--profile", default=None, help="with --one: cProfile output file")
    p.add_argument("--markdown", nargs="?", const=str(DEFAULT_OUT), default=None)
    args = p.parse_args(argv)
    if args.markdown:
        print(render_markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.one:
        sc = SCENARIOS[args.one]
        result = run_child(sc, args.reps or sc.reps, profile=args.profile)
        print(json.dumps(result))
        return 0 if not result["invalid"] else 1
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    results = []
    for name in names:
        print(f"measuring {name} ({SCENARIOS[name].title}) ...", file=sys.stderr, flush=True)
        results.append(_spawn(name, args.reps))
    print_table(results)
    for r in results:
        curve = r.get("detail", {}).get("us_per_task_by_queue_depth") or []
        if r.get("tasks", 0) >= 10_000 and curve:
            print(
                f"{r['scenario']} CPU µs/task while N tasks were still queued: "
                + ", ".join(f"{int(n):,}: {us:.0f}" for n, us in curve)
            )
    flat = {m: flatness(results, m) for m in ("us_per_task", "cpu_us_per_task")}
    for metric, ratios in flat.items():
        if ratios:
            print(
                f"{metric} as the queue grows (q1k = 1.00): "
                + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
            )
    payload = {
        "machine": machine_info(),
        "rss_target_mb": RSS_TARGET_MB,
        "flatness_vs_q1k": flat,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    bad = [r for r in results if r.get("error") or r.get("invalid")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
