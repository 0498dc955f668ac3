"""``python -m examples.runners`` (``make demo-runners``): run the access-logs DAG once and print where
each step ran (runner, process IDs, the legacy step's library version) and the day's figures.

``--day YYYY-MM-DD`` (default 2026-11-25), ``--data-dir DIR`` (default
``examples/runners/output/data``; a day without files gets a sample day of ``--lines-per-hour``
lines an hour), ``--output-dir DIR`` for the state file (default ``examples/runners/output``). The
legacy step's virtualenv is built in Podium's cache (``$PODIUM_VENV_CACHE``, else
``~/.cache/podium/venvs``) on the first run, and reused after. Exit code 0 if the run succeeded, 1
if it failed, 2 if it could not run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from engine import Engine, Local, PodiumError, Process, Run, Runner, RunState, Virtualenv

from .pipeline import DATA_DIR, HERE, access_logs


async def run_once(
    *, day: str, data_dir: Path, output_dir: Path = HERE / "output", lines_per_hour: int = 5000
) -> Run:
    """One run with a fresh engine on ``<output_dir>/podium.db``; the finished run."""
    await anyio.Path(output_dir).mkdir(parents=True, exist_ok=True)
    params = {"day": day, "data_dir": str(data_dir), "lines_per_hour": lines_per_hour}
    async with Engine(output_dir / "podium.db", dags=[access_logs]) as podium:
        run = await podium.trigger(access_logs.dag_id, params=params)
        return await run.wait()


def runner_label(runner: Runner) -> str:
    if isinstance(runner, Process):
        return f"Process(workers={runner.workers})"
    if isinstance(runner, Virtualenv):
        return f"Virtualenv({', '.join(runner.requirements) or runner.lockfile})"
    return f"{type(runner).__name__}()"


def step_runner(task_id: str) -> Runner:
    """The runner a step of the DAG runs on: its own, else the DAG's, else the default."""
    node = access_logs.tasks[task_id]
    return node.options.runner or access_logs.runner or Local()


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "—"


def print_where(console: Console, run: Run) -> None:
    """One row per step: its runner, the processes that ran it, its tries and its time."""
    table = Table(title="where each step ran", title_justify="left")
    for column in ("step", "runner", "process", "tries", "time"):
        table.add_column(column, justify="right" if column in ("tries", "time") else "left")
    engine_pid = os.getpid()
    for task_id in access_logs.order:
        ti = run.tasks[task_id]
        runner = runner_label(step_runner(task_id))
        instances = [t for tid, t in run.tasks.items() if tid.startswith(f"{task_id}[")]
        if instances:  # a mapped step: where its instances ran, and the time from first to last
            pids = Counter(t.result["pid"] for t in instances if t.result)
            where = ", ".join(f"pid {pid} ran {n}" for pid, n in sorted(pids.items()))
            starts = [t.started_at for t in instances if t.started_at is not None]
            ends = [t.finished_at for t in instances if t.finished_at is not None]
            span = max(ends) - min(starts) if starts and ends else None
            table.add_row(f"{task_id}[0..{len(instances) - 1}]", runner, where,
                          str(sum(t.try_number for t in instances)), _seconds(span))  # fmt: skip
            continue
        result = ti.result if isinstance(ti.result, dict) else {}
        if "packaging" in result:
            where = f"pid {result['pid']}, packaging {result['packaging']}"
        elif isinstance(step_runner(task_id), Local):
            where = f"the engine, pid {result.get('pid', engine_pid)}"
        else:
            where = "—"
        table.add_row(task_id, runner, where, str(ti.try_number), _seconds(ti.duration))
    console.print(table)


def print_figures(console: Console, day: dict[str, Any], clients: dict[str, Any]) -> None:
    """The day's traffic, its endpoints, and the apps' builds as the legacy step ranked them."""
    requests, errors = day["requests"], day["status"].get("5xx", 0)
    console.print(
        f"{day['lines']:,} log lines in {day['files']} hourly files ({day['malformed']} malformed, "
        f"skipped): {requests:,} requests, {day['bytes'] / 1e6:,.1f} MB sent, "
        f"5xx {errors / requests:.2%}",
        highlight=False,
    )
    minute, count = day["busiest_minute"]
    console.print(
        f"worst hour {day['worst_hour']['file']} ({day['worst_hour']['errors']} 5xx); "
        f"busiest minute {minute} ({count} requests)",
        highlight=False,
    )
    table = Table(title=f"endpoints on {day['day']}", title_justify="left")
    for column in ("endpoint", "requests", "5xx", "p95"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for e in day["endpoints"]:
        p95 = f"≤ {e['p95_ms']:,} ms" if e["p95_ms"] is not None else "> 2,500 ms"
        table.add_row(e["endpoint"], f"{e['requests']:,}", f"{e['errors']:,}", p95)
    console.print(table)

    table = Table(
        title="app builds in use, oldest first (packaging 21 order)", title_justify="left"
    )
    for column in ("app", "builds", "oldest", "newest", "legacy builds", "on legacy builds"):
        table.add_column(column, justify="right" if column == "builds" else "left")
    for name, p in clients["platforms"].items():
        ladder = [v for v, _ in p["ladder"]]
        share = p["legacy_requests"] / p["requests"] if p["requests"] else 0.0
        table.add_row(name, str(len(ladder)), ladder[0], ladder[-1],
                      ", ".join(p["legacy"]) or "—", f"{share:.1%}")  # fmt: skip
    console.print(table)


def print_isolation(console: Console, clients: dict[str, Any]) -> None:
    """What the legacy step ran with, against what the engine has."""
    console.print(
        f"client_versions ran with packaging {clients['packaging']} on Python "
        f"{clients['python']} in {clients['prefix']}",
        highlight=False,
        soft_wrap=True,  # a path broken over two lines cannot be copied
    )
    legacy = [v for p in clients["platforms"].values() for v in p["legacy"]]
    try:
        mine = importlib.metadata.version("packaging")
        from packaging.version import InvalidVersion, Version
    except (importlib.metadata.PackageNotFoundError, ImportError):
        console.print("the engine's environment has no packaging at all")
        return
    refused = []
    for v in legacy:
        try:
            Version(v)
        except InvalidVersion:
            refused.append(v)
    console.print(
        f"the engine has packaging {mine}"
        + (f", where {', '.join(refused)} do not parse (InvalidVersion)" if refused else ""),
        highlight=False,
    )


def print_summary(console: Console, run: Run) -> None:
    console.print(
        f"[bold]{access_logs.dag_id}[/] · run {run.run_id} · {run.params['day']} · "
        f"{run.state} in {_seconds(run.duration)} · engine pid {os.getpid()}",
        highlight=False,
    )
    print_where(console, run)
    if run.state is not RunState.SUCCESS:
        for task_id, ti in run.tasks.items():
            if ti.error:
                console.print(f"  [red]{task_id}[/]: {ti.error}", highlight=False)
        return
    clients = run.tasks["client_versions"].result
    print_figures(console, run.tasks["report"].result, clients)
    print_isolation(console, clients)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.runners",
        description="Run the access-logs DAG once and print where each step ran.",
    )
    parser.add_argument(
        "--day", type=lambda s: date.fromisoformat(s).isoformat(), default="2026-11-25"
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--output-dir", type=Path, default=HERE / "output")
    parser.add_argument("--lines-per-hour", type=int, default=5000)
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 110)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run = anyio.run(
            lambda: run_once(
                day=args.day,
                data_dir=args.data_dir,
                output_dir=args.output_dir,
                lines_per_hour=args.lines_per_hour,
            )
        )
    except PodiumError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    print_summary(console, run)
    return 0 if run.state is RunState.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
