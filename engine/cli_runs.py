"""``podium runs``, ``show``, ``logs`` and ``dags``: what the state file holds, read without an
engine (one may be serving the file meanwhile)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from rich.markup import escape
from rich.table import Table

from . import serialization
from .cli_output import RUN_STYLE, console, fmt_time, print_run, run_json
from .durations import format_duration
from .errors import PodiumError
from .states import RunState
from .store import Store


def add_runs_parsers(
    sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]
) -> None:  # argparse's subparsers action has no public type
    """``podium runs`` and ``podium show``."""
    runs = sub.add_parser("runs", help="list runs, newest first")
    db_arg(runs)
    runs.add_argument("--dag", dest="dag_id")
    runs.add_argument("--state", choices=[s.value for s in RunState])
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    runs.set_defaults(handler=cmd_runs)

    show = sub.add_parser("show", help="one run and its tasks")
    show.add_argument("run_id")
    db_arg(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)


def add_logs_parser(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """``podium logs RUN TASK``."""
    logs = sub.add_parser("logs", help="a task's captured log lines")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    db_arg(logs)
    logs.add_argument("--try", dest="try_number", type=int, help="one try only (default: all)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run ends"
    )
    logs.set_defaults(handler=cmd_logs)


def add_dags_parser(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """``podium dags``."""
    dags = sub.add_parser("dags", help="the DAGs an engine registered in FILE")
    db_arg(dags)
    dags.set_defaults(handler=cmd_dags)


async def cmd_runs(args: argparse.Namespace) -> int:
    """The newest runs, as a table or JSON lines."""
    async with Store(args.db, owner=False) as store:
        runs = await store.list_runs(dag_id=args.dag_id, state=args.state, limit=args.limit)
    if args.json:
        for r in runs:
            sys.stdout.write(orjson.dumps(run_json(r)).decode() + "\n")
        return 0
    table = Table(title=f"runs in {args.db}", title_justify="left")
    for col in ("run", "dag", "state", "trigger", "created (UTC)", "duration", "note"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.run_id,
            r.dag_id,
            f"[{RUN_STYLE.get(r.state.value, '')}]{r.state.value}[/]",
            r.trigger,
            fmt_time(r.created_at),
            format_duration(r.duration),
            r.note or "",
        )
    console.print(table)
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    """One run and its tasks."""
    async with Store(args.db, owner=False) as store:
        run = await store.get_run(args.run_id)  # an unknown id: PodiumError, exit 2
    if args.json:
        sys.stdout.write(orjson.dumps(run_json(run, with_tasks=True)).decode() + "\n")
        return 0
    print_run(run)
    return 0


async def cmd_logs(args: argparse.Namespace) -> int:
    """A task's log lines; with ``--follow``, new ones as they are stored until the run ends."""
    async with Store(args.db, owner=False) as store:
        run = await store.get_run(args.run_id)  # an unknown id: PodiumError, exit 2
        if args.task_id not in run.tasks:
            raise PodiumError(
                f"run {args.run_id} has no task {args.task_id!r} "
                f"(tasks: {', '.join(sorted(run.tasks))})"
            )
        seen: dict[int, int] = {}
        while True:
            rows = await store.task_logs(args.run_id, args.task_id, args.try_number)
            for line in rows:
                if line.line_no <= seen.get(line.try_number, 0):
                    continue
                seen[line.try_number] = line.line_no
                stamp = time.strftime("%H:%M:%S", time.gmtime(line.ts))
                console.print(
                    f"[grey50]{stamp} try {line.try_number}[/] {line.level:<7} "
                    f"{escape(line.message)}",
                    highlight=False,
                )
            if not args.follow or (await store.get_run(args.run_id)).finished:
                return 0
            await anyio.sleep(0.5)


async def cmd_dags(args: argparse.Namespace) -> int:
    """The DAGs an engine registered in the state file."""
    async with Store(args.db, owner=False) as store:
        rows = await store.dag_rows()
    table = Table(title=f"DAGs in {args.db}", title_justify="left")
    for col in ("dag", "tasks", "params", "triggers", "source"):
        table.add_column(col)
    for row in rows:
        d = serialization.loads(row.description)
        table.add_row(
            row.dag_id,
            str(len(d.get("tasks", []))),
            ", ".join(d.get("params", {})),
            ", ".join(d.get("triggers", [])),
            row.source_file or "",
        )
    console.print(table)
    return 0
