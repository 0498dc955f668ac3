"""The parent side of the runners benchmark (``runners.py``): one subprocess per row, the Dask
cluster the Dask rows share, the figures derived from rows of the same run, and their table.

The parent calibrates ``burn`` once (so every cpu-* row does the same work), starts a
``LocalCluster`` of 2 worker processes x 1 thread on loopback when a Dask row is selected and
``distributed`` is installed (its scheduler in a thread of this process; every Dask measurement
opens its own client), then runs the rows one after another, each in its own subprocess.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .runner_tasks import TARGET_SECONDS, calibrate
from .runners import GROUPS, ROWS, ROWS_BY_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL_TASKS, QUICK_TASKS = 200, 40
QUICK_TARGET_SECONDS = 0.005
POOL_TARGET_MS = 1.0  # the Process pool's per-task overhead over a bare process pool

# key -> (what it is, unit); computed by derive() from rows of one run
FIGURES: dict[str, tuple[str, str]] = {
    "speedup_process2_vs_threads": (
        "CPU fan-out: Process(workers=2) speed-up over the thread runner (2x is the ceiling)",
        "x",
    ),
    "speedup_bare_pool2_vs_bare_threads": (
        "CPU fan-out: the same speed-up for the bare pools (what the machine allowed now)",
        "x",
    ),
    "process2_wall_over_bare_pool2": (
        "CPU fan-out: Process(workers=2) wall / bare ProcessPoolExecutor(2) wall",
        "x",
    ),
    "pool_overhead_ms_per_task": (
        f"no-op: Process(workers=2) minus bare ProcessPoolExecutor(2), per task "
        f"(target <= {POOL_TARGET_MS:g} ms)",
        "ms",
    ),
    "pool_over_thread_runner_ms_per_task": (
        "no-op: Process(workers=2) minus Podium's thread runner, per task",
        "ms",
    ),
    "thread_runner_over_bare_threads_ms_per_task": (
        "no-op: Podium's thread runner minus bare ThreadPoolExecutor(8), per task",
        "ms",
    ),
    "dask_overhead_ms_per_task": (
        "no-op: Podium's Dask runner minus client.submit on the same cluster, per task",
        "ms",
    ),
    "speedup_dask2_vs_threads": ("CPU fan-out: Dask (2 workers) speed-up over threads", "x"),
    "venv_cold_build_uvcold_s": ("Virtualenv cold build, uv cache empty (index fetched)", "s"),
    "venv_cold_build_uvwarm_s": ("Virtualenv cold build, uv cache warm", "s"),
    "venv_warm_start_ms": ("Virtualenv warm start: one-task run on a cached env", "ms"),
    "venv_warm_start_over_local": (
        "Virtualenv warm start / the same run on the default runner",
        "x",
    ),
}


def select(spec: str) -> list[str]:
    """Row keys from ``all``, ``none``, or a comma-separated list of rows and groups."""
    if spec.strip() == "all":
        return [r.key for r in ROWS]
    if spec.strip() == "none":
        return []
    keys: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name in GROUPS:
            keys += [r.key for r in ROWS if r.group == name]
        elif name in ROWS_BY_KEY:
            keys.append(name)
        else:
            raise ValueError(f"unknown runner row {name!r} (one of {', '.join(GROUPS)}, or a row)")
    return [k for k in ROWS_BY_KEY if k in keys]


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """A ``LocalCluster`` of 2 worker processes x 1 thread on loopback (no dashboard)."""
    from distributed import LocalCluster

    with LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server on a free port
    ) as cluster:
        yield cluster


def spawn_row(key: str, reps: int, tasks: int, iterations: int, scheduler: str | None) -> Any:
    """Measure one row in its own subprocess (``--one``); its JSON line, or an error record."""
    cmd = [sys.executable, "-m", "benchmarks.runners", "--one", key, "--reps", str(reps)]
    cmd += ["--tasks", str(tasks), "--iterations", str(iterations)]
    if scheduler is not None:
        cmd += ["--scheduler", scheduler]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        return {"row": key, "error": "timed out after 900 s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"row": key, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def run(keys: list[str], reps: int, *, quick: bool, dask: bool = True) -> dict[str, Any]:
    """Measure ``keys`` (in ``ROWS`` order), each in its own subprocess; the results and figures."""
    tasks = QUICK_TASKS if quick else FULL_TASKS
    target = QUICK_TARGET_SECONDS if quick else TARGET_SECONDS
    iterations = calibrate(target)
    skipped: dict[str, str] = {}
    if not dask:
        skipped = {k: "--no-dask" for k in keys if ROWS_BY_KEY[k].dask}
    elif importlib.util.find_spec("distributed") is None:
        skipped = {k: "distributed is not installed" for k in keys if ROWS_BY_KEY[k].dask}
    keys = [k for k in keys if k not in skipped]
    needs_dask = any(ROWS_BY_KEY[k].dask for k in keys)
    settings = {
        "reps": reps,
        "warmup": 1,
        "statistic": "median",
        "quick": quick,
        "tasks": tasks,
        "target_seconds_per_cpu_task": target,
        "iterations_per_cpu_task": iterations,
        "dask_cluster": "LocalCluster, 2 worker processes x 1 thread, loopback"
        if needs_dask
        else None,
    }
    log(f"runners: {len(keys)} rows, {tasks} tasks, burn({iterations}) ~{target * 1000:g} ms")
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with local_cluster() if needs_dask else contextlib.nullcontext() as cluster:
        address = cluster.scheduler_address if cluster is not None else None
        for key in keys:
            log(f"  {key:22}", end="")
            r = spawn_row(key, reps, tasks, iterations, address if ROWS_BY_KEY[key].dask else None)
            results.append(r)
            if "median_s" in r:
                log(f" {r['median_s']:.3f} s  {r['ms_per_task']:.3f} ms/task")
            else:
                log(f" ERROR {r.get('error') or r.get('invalid')}")
    return {
        "settings": settings,
        "skipped": skipped,
        "results": results,
        "figures": derive(results),
        "seconds": time.perf_counter() - started,
    }


def log(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def derive(results: list[dict[str, Any]]) -> dict[str, float]:
    """The ratios and differences of FIGURES, from the rows of one run that were measured."""
    wall = {r["row"]: r["median_s"] for r in results if "median_s" in r and not r.get("invalid")}
    ms = {r["row"]: r["ms_per_task"] for r in results if r["row"] in wall}
    out: dict[str, float] = {}

    def ratio(name: str, a: dict[str, float], top: str, bottom: str) -> None:
        if top in a and bottom in a:
            out[name] = a[top] / a[bottom]

    def minus(name: str, top: str, bottom: str) -> None:
        if top in ms and bottom in ms:
            out[name] = ms[top] - ms[bottom]

    ratio("speedup_process2_vs_threads", wall, "cpu-podium-threads", "cpu-podium-process2")
    ratio("speedup_bare_pool2_vs_bare_threads", wall, "cpu-floor-threads", "cpu-floor-pool2")
    ratio("process2_wall_over_bare_pool2", wall, "cpu-podium-process2", "cpu-floor-pool2")
    minus("pool_overhead_ms_per_task", "noop-podium-process2", "noop-floor-pool2")
    minus("pool_over_thread_runner_ms_per_task", "noop-podium-process2", "noop-podium-threads")
    minus(
        "thread_runner_over_bare_threads_ms_per_task", "noop-podium-threads", "noop-floor-threads"
    )
    minus("dask_overhead_ms_per_task", "noop-podium-dask2", "noop-raw-dask2")
    ratio("speedup_dask2_vs_threads", wall, "cpu-podium-threads", "cpu-podium-dask2")
    if "venv-build-uvcold" in wall:
        out["venv_cold_build_uvcold_s"] = wall["venv-build-uvcold"]
    if "venv-build-uvwarm" in wall:
        out["venv_cold_build_uvwarm_s"] = wall["venv-build-uvwarm"]
    if "venv-warm-start" in ms:
        out["venv_warm_start_ms"] = ms["venv-warm-start"]
    ratio("venv_warm_start_over_local", wall, "venv-warm-start", "one-task-local")
    return out


def failed(payload: dict[str, Any]) -> bool:
    return any("error" in r or r.get("invalid") for r in payload["results"])


# -- output -------------------------------------------------------------------------------------------


def _floor_ratio(r: dict[str, Any], by_row: dict[str, dict[str, Any]]) -> str:
    floor = ROWS_BY_KEY[r["row"]].floor
    f = by_row.get(floor) if floor else None
    if f is None or "median_s" not in f or "median_s" not in r:
        return ""
    return f"{r['median_s'] / f['median_s']:.2f}x"


def _cells(r: dict[str, Any], by_row: dict[str, dict[str, Any]]) -> list[str]:
    if "median_s" not in r:
        return [r["row"], "ERROR", (r.get("error") or r.get("invalid") or "")[:70], "", "", "", ""]
    walls = r["walls_s"]
    spread = f" ({min(walls):.3f}-{max(walls):.3f})" if len(walls) > 1 else ""
    load = r.get("load_average_1m") or [0.0, 0.0]
    label = r["label"] + (" INVALID" if r.get("invalid") else "")
    return [
        r["row"],
        label,
        f"{r['median_s']:.3f} s{spread}",
        f"{r['ms_per_task']:.3f}",
        _floor_ratio(r, by_row),
        f"{r['rss_peak_mb']:.0f}",
        f"{load[0]:.1f}-{load[1]:.1f}",
    ]


HEAD = ("row", "what", "median wall (min-max)", "ms/task", "x floor", "RSS MB", "load 1m")


def figure_lines(payload: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in payload["figures"].items():
        text, unit = FIGURES[key]
        shown = f"{value:.2f}x" if unit == "x" else f"{value:.3f} {unit}"
        if key == "pool_overhead_ms_per_task":
            shown += " (met)" if value <= POOL_TARGET_MS else " (NOT met)"
        lines.append(f"{text}: {shown}")
    lines += [f"skipped {k}: {why}" for k, why in payload.get("skipped", {}).items()]
    return lines


def print_results(console: Any, payload: dict[str, Any]) -> None:
    from rich.table import Table

    s = payload["settings"]
    table = Table(
        title=f"Where a task runs (median of {s['reps']}; {s['tasks']} tasks per fan-out, "
        f"cpu tasks burn({s['iterations_per_cpu_task']}) ~{s['target_seconds_per_cpu_task'] * 1000:g} ms)"
    )
    for col in HEAD:
        table.add_column(col, justify="left" if col in ("row", "what") else "right", no_wrap=True)
    by_row = {r["row"]: r for r in payload["results"]}
    group = None
    for r in payload["results"]:
        row_group = ROWS_BY_KEY[r["row"]].group
        if group is not None and row_group != group:
            table.add_section()
        group = row_group
        table.add_row(*_cells(r, by_row))
    console.print(table)
    console.print(
        "[dim]x floor = median wall over the row it is compared with (threads: bare "
        "ThreadPoolExecutor(8); Process(2): bare ProcessPoolExecutor(2); Dask: client.submit on "
        "the same cluster; Virtualenv warm start: the default runner). Each row in its own "
        "subprocess, fresh state per measurement, warm pools (priming not timed).[/dim]"
    )
    for line in figure_lines(payload):
        console.print(line)


def markdown(payload: dict[str, Any]) -> str:
    """The runner rows and figures of a results file as Markdown (for benchmarks/README.md)."""
    by_row = {r["row"]: r for r in payload["results"]}
    lines = ["| " + " | ".join(HEAD) + " |", "|---|---|--:|--:|--:|--:|--:|"]
    lines += ["| " + " | ".join(_cells(r, by_row)) + " |" for r in payload["results"]]
    lines.append("")
    lines += [f"- {line}" for line in figure_lines(payload)]
    return "\n".join(lines)
