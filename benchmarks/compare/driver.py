"""``python -m benchmarks.compare``: the same workloads on Podium, the floor and other orchestrators.

For every row of ``specs.ROWS`` (a tool or a tool in one configuration) the driver makes sure the
tool's own virtualenv exists (``venvs.py``; built in parallel, pinned from ``requirements/``), then,
for every workload the row can express, starts ``reps`` fresh processes of that venv's Python, each
running the row's adapter (``tools/<tool>_w.py``) for ONE measurement: tool set-up (untimed), an
in-process warm-up at a small size (untimed), the timed run, a correctness check, one JSON line.
The median of the processes' walls is reported with min-max. Results go to ``results.json``, a
Markdown table (``--markdown``) and ``overhead.png`` (drawn by ``plot.py`` in its own venv).

The ``dask`` workload (Podium's ``Dask`` runner, Prefect's ``DaskTaskRunner`` and Dask's own
``client.submit``) runs in rounds on one shared cluster per round: ``dask_rounds.py``.

Options: ``--quick`` (1 process per cell, small sizes; results.json and the plot are left alone
unless ``--out`` is given), ``--tools podium,dagster`` (row keys or tool names), ``--workloads``,
``--reps N``, ``--cache DIR`` (venvs; default ``.bench-venvs``), ``--out``, ``--no-plot``,
``--markdown RESULTS_JSON`` (print the table of a results file; measures nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import dask_rounds, report, venvs
from .specs import (
    DASK_CLUSTER,
    DASK_WORKLOAD,
    PLOT,
    ROWS,
    ROWS_BY_KEY,
    TOOL_ALIASES,
    WORKLOADS,
    Row,
)

COMPARE_DIR = Path(__file__).resolve().parent
TOOLS_DIR = COMPARE_DIR / "tools"
DEFAULT_OUT = COMPARE_DIR / "results.json"
DEFAULT_PLOT = COMPARE_DIR / "overhead.png"
RESULT_PREFIX = "BENCH-RESULT "


def log(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def select_rows(spec: str | None) -> list[Row]:
    if not spec:
        return [r for r in ROWS if r.default]
    keys: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name in ROWS_BY_KEY:
            keys.append(name)
        elif name in TOOL_ALIASES:
            keys.extend(TOOL_ALIASES[name])
        else:
            known = sorted(ROWS_BY_KEY) + sorted(TOOL_ALIASES)
            raise SystemExit(f"unknown tool {name!r} (one of {', '.join(known)})")
    return [ROWS_BY_KEY[k] for k in dict.fromkeys(keys)]


def measure_once(
    row: Row, python: Path, workload: str, n: int, extra_args: Sequence[str] = ()
) -> dict[str, Any]:
    """One measurement: a fresh process of the row's venv; its JSON line, or an error record."""
    cmd = [str(python), str(TOOLS_DIR / f"{row.adapter}.py"), "--workload", workload, "--n", str(n)]
    if row.variant:
        cmd += ["--variant", row.variant]
    cmd += extra_args
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=venvs.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=row.timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {row.timeout_s:.0f} s", "process_s": row.timeout_s}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
        return {
            "error": f"exit {proc.returncode}, no result: {' | '.join(tail)[-400:]}",
            "process_s": time.perf_counter() - t0,
        }
    record: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    record["process_s"] = time.perf_counter() - t0
    return record


def summarize(row: Row, workload: str, n: int, samples: list[dict[str, Any]]) -> dict[str, Any]:
    good = [s for s in samples if "error" not in s and s.get("wall_s") is not None]
    cell: dict[str, Any] = {"row": row.key, "workload": workload, "n": n, "samples": samples}
    errors = [s["error"] for s in samples if "error" in s]
    if errors:
        cell["error"] = f"{errors[0]} ({len(errors)} of {len(samples)} processes)"
    if not good:
        return cell
    walls = [s["wall_s"] for s in good]
    median = statistics.median(walls)
    tasks, runs = good[0]["tasks"], good[0]["runs"]
    invalid = [s["invalid"] for s in good if s.get("invalid")]
    cell |= {
        "tasks": tasks,
        "runs": runs,
        "walls_s": walls,
        "median_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "us_per_task": median / tasks * 1e6,
        "runs_per_s": runs / median,
        "rss_peak_mb": max(s.get("rss_peak_mb", 0.0) for s in good),
        "invalid": f"{invalid[0]} ({len(invalid)} of {len(good)})" if invalid else None,
    }
    if workload == "W4":
        cell["peak_live"] = max(s.get("peak_live", 0) for s in good)
    return cell


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite_version": sqlite3.sqlite_version,
        "load_average": list(os.getloadavg()),  # 1, 5, 15 min: the machine is shared
    }


def draw_plot(results_path: Path, png: Path, cache: Path) -> str | None:
    """Draw ``png`` with matplotlib from its own venv (never the project's); an error or None."""
    ready = venvs.ensure(PLOT, cache, cache / "logs" / "plot.log")
    if ready.python is None:
        return f"plot venv: {ready.error}"
    proc = subprocess.run(
        [str(ready.python), str(COMPARE_DIR / "plot.py"), str(results_path), str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"plot.py failed: {proc.stderr.strip()[-400:]}"
    return None


def measure_dask(
    rows: list[Row],
    ready: dict[str | None, venvs.Ready],
    cache: Path,
    reps: int,
    quick: bool,
    cells: list[dict[str, Any]],
) -> dict[str, Any]:
    """The dask workload's rows, in rounds on a shared cluster; their cells go into ``cells``."""
    cluster = ready[DASK_CLUSTER.name]
    runnable: list[Row] = []
    for row in rows:
        error = ready[row.venv.name].error or cluster.error
        if ready[row.venv.name].python is None or cluster.python is None:
            n = row.size(DASK_WORKLOAD, quick)
            cells.append({"row": row.key, "workload": DASK_WORKLOAD, "n": n, "error": error})
        else:
            runnable.append(row)
    if not runnable or cluster.python is None:
        return {}
    pythons = {row.key: ready[row.venv.name].python for row in runnable}
    found, info = dask_rounds.measure(
        runnable,
        {k: p for k, p in pythons.items() if p is not None},
        cluster.python,
        reps=reps,
        quick=quick,
        log_dir=cache / "logs",
        measure_once=measure_once,
        summarize=summarize,
        log=log,
    )
    for cell in found:
        cells.append(cell)
        if "median_s" in cell:
            over = cell.get("over_floor_us_per_task")
            tail = "" if over is None else f", {over / 1000:+.2f} ms over client.submit"
            log(f"  {cell['row']:16} dask -> {report.per_task(cell)}/task{tail}")
        else:
            log(f"  {cell['row']:16} dask -> ERROR {cell.get('error', '')[:150]}")
    return info


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the rows and cells of ``new`` put in (same row and workload: replaced)."""
    fresh = {(c["row"], c["workload"]) for c in new["results"]}
    kept = [c for c in old["results"] if (c["row"], c["workload"]) not in fresh]
    order = {key: i for i, key in enumerate(ROWS_BY_KEY)}
    results = sorted(
        kept + new["results"],
        key=lambda c: (order.get(c["row"], 99), WORKLOADS.index(c["workload"])),
    )
    tools = old["tools"] | new["tools"]
    tools = dict(sorted(tools.items(), key=lambda kv: order.get(kv[0], 99)))
    for key, tool in tools.items():  # the descriptions are spec data: take the current ones
        if key in ROWS_BY_KEY:
            row = ROWS_BY_KEY[key]
            tool |= {"label": row.label, "persists": row.persists, "concurrency": row.concurrency}
    merged = old | {"tools": tools, "results": results}
    if "dask" in new:
        merged["dask"] = new["dask"]
    merged.setdefault("merged_runs", []).append(
        {"date": new["machine"]["date"], "cells": sorted(f"{r}/{w}" for r, w in fresh)}
    )
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 process per cell, small sizes")
    parser.add_argument("--reps", type=int, default=None, help="processes per cell (default 3)")
    parser.add_argument("--tools", default=None, help="comma-separated rows or tools")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--cache", default=str(venvs.DEFAULT_CACHE), help="where the venvs live")
    parser.add_argument("--out", default=None, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument("--plot", default=None, help=f"PNG (default {DEFAULT_PLOT})")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the cells measured now in an existing --out file instead of replacing it",
    )
    parser.add_argument(
        "--markdown", metavar="RESULTS_JSON", help="print its table; measure nothing"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(report.markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        parser.error("--reps must be >= 1")
    rows = select_rows(args.tools)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r} (one of {', '.join(WORKLOADS)})")
    cache = Path(args.cache).resolve()
    started = time.perf_counter()

    dask_rows = [r for r in rows if DASK_WORKLOAD in r.sizes] if DASK_WORKLOAD in workloads else []
    log(f"venvs under {cache} (built in parallel when missing; Airflow's takes longest)...")
    ready = venvs.ensure_all([r.venv for r in rows] + ([DASK_CLUSTER] if dask_rows else []), cache)
    for name, r in ready.items():
        if name is not None:
            state = f"FAILED: {r.error}" if r.python is None else f"ok ({r.seconds:.0f} s)"
            log(f"  {name:8} {state}")

    tools: dict[str, Any] = {}
    cells: list[dict[str, Any]] = []
    for row in rows:
        env_ready = ready[row.venv.name]
        version = (
            venvs.installed_version(env_ready.python, row.venv.dist or "podium")
            if env_ready.python is not None
            else None
        )
        if row.adapter == "floor_w":
            version = f"SQLite {sqlite3.sqlite_version}"
        if row.adapter == "dask_raw_w" and env_ready.python is not None:
            version = venvs.installed_version(env_ready.python, "distributed")
        tools[row.key] = {
            "label": row.label,
            "version": version,
            "venv": str(env_ready.python.parent.parent) if env_ready.python else None,
            "persists": row.persists,
            "concurrency": row.concurrency,
            "install_error": env_ready.error,
        }
        for workload in workloads:
            if workload == DASK_WORKLOAD:
                continue  # below, in rounds on a shared cluster
            if workload in row.skip:
                cells.append({"row": row.key, "workload": workload, "skipped": row.skip[workload]})
                continue
            if workload not in row.sizes:
                continue
            n = row.size(workload, args.quick)
            if env_ready.python is None:
                cells.append(
                    {"row": row.key, "workload": workload, "n": n, "error": env_ready.error}
                )
                continue
            log(f"  {row.key:16} {workload:8} n={n:<5}", end="")
            samples = []
            for _ in range(reps):
                s = measure_once(row, env_ready.python, workload, n)
                samples.append(s)
                log(" x" if "error" in s else f" {s['wall_s']:.3f}s", end="")
            cell = summarize(row, workload, n, samples)
            cells.append(cell)
            if "median_s" in cell:
                log(f"  -> {report.per_task(cell)}/task" + (" INVALID" if cell["invalid"] else ""))
            else:
                log(f"  -> ERROR {cell.get('error', '')[:150]}")

    dask_info = (
        measure_dask(dask_rows, ready, cache, reps, args.quick, cells) if dask_rows else None
    )

    payload = {
        "machine": machine_info(),
        "settings": {
            "reps": reps,
            "quick": args.quick,
            "statistic": "median of one-measurement processes",
            "warmup": "in each process, the same workload once at min(n, 20) (W3: 5 runs) first",
        },
        "tools": tools,
        "results": cells,
        "total_s": time.perf_counter() - started,
    }
    if dask_info is not None:  # kept whole by --merge, with the machine it was measured on
        payload["dask"] = dask_info | {"machine": payload["machine"]}
    print(report.markdown(payload))
    out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)
    if out is not None and args.merge and out.exists():
        payload = merge(json.loads(out.read_text()), payload)
    if out is not None:
        out.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {out}")
        if not args.no_plot:
            png = Path(args.plot) if args.plot else DEFAULT_PLOT
            if args.quick and not args.plot:
                png = out.with_suffix(".png")
            err = draw_plot(out, png, cache)
            log(f"plot: {err}" if err else f"wrote {png}")
    log(f"total {time.perf_counter() - started:.0f} s")
    failed = any("error" in c or c.get("invalid") for c in cells)
    return 1 if failed else 0
