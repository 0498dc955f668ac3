"""What the ``podium`` commands share to talk to the terminal: the two consoles, a run and its
tasks as a table or as JSON, times, load errors, and the ``NAME=VALUE`` flags (``--param``,
``--pool``) read into a dict."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .durations import format_duration
from .errors import PodiumError
from .models import Run

# a pipe or a file gets lines of 160 columns, not rich's default 80
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

RUN_STYLE = {
    "success": "green",
    "failed": "bold red",
    "running": "cyan",
    "queued": "grey62",
    "cancelled": "magenta",
    "paused": "yellow",
}
TASK_STYLE = {
    **RUN_STYLE,
    "pending": "grey50",
    "up_for_retry": "yellow",
    "upstream_failed": "red",
    "skipped": "grey58",
}


def print_error(message: object) -> None:
    """An ``error:`` line on stderr (the text is not markup: a message may hold brackets,
    ``list[int]``, ``[/x]``)."""
    err_console.print(
        f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True
    )


def print_load_errors(errors: Sequence[object]) -> None:
    """One ``error:`` line on stderr per problem found loading DAG files."""
    for error in errors:
        print_error(error)


def print_run(run: Run) -> None:
    """A run's header line, its params and note, and its tasks' table."""
    style = RUN_STYLE.get(run.state.value, "")
    console.print(
        f"run [bold]{run.run_id}[/] of [bold]{run.dag_id}[/]: [{style}]{run.state.value}[/]"
        f"  trigger={run.trigger} key={run.key} duration={format_duration(run.duration)}"
    )
    if run.params:
        console.print(f"params: {orjson.dumps(run.params).decode()}")
    if run.note:
        console.print(f"note: {run.note}")
    console.print(task_table(run))


def task_table(run: Run) -> Table:
    """A run's tasks, in the order they started, with each one's last error line."""
    table = Table(title_justify="left")
    for col in ("task", "state", "try", "started (UTC)", "duration", "error"):
        table.add_column(col)
    for tid, ti in sorted(run.tasks.items(), key=lambda kv: (kv[1].started_at or 1e18, kv[0])):
        error = (ti.error or "").strip().splitlines()
        table.add_row(
            tid,
            f"[{TASK_STYLE.get(ti.state.value, '')}]{ti.state.value}[/]",
            str(ti.try_number),
            fmt_time(ti.started_at),
            format_duration(ti.duration),
            error[-1] if error else "",
        )
    return table


def run_json(run: Run, with_tasks: bool = False) -> dict[str, Any]:
    """A run as the JSON of ``podium runs --json`` (and, with its tasks, ``podium show --json``)."""
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "dag_id": run.dag_id,
        "key": run.key,
        "state": run.state.value,
        "params": run.params,
        "trigger": run.trigger,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "note": run.note,
    }
    if with_tasks:
        data["tasks"] = {
            tid: {
                "state": ti.state.value,
                "try_number": ti.try_number,
                "result": ti.result,
                "error": ti.error,
                "started_at": ti.started_at,
                "finished_at": ti.finished_at,
                "tries": [
                    {"try_number": t.try_number, "state": t.state.value, "error": t.error}
                    for t in ti.tries
                ],
            }
            for tid, ti in run.tasks.items()
        }
    return data


def fmt_time(epoch: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` in UTC; none as an empty cell."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON when it parses as JSON, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def parse_pairs(items: Sequence[str], flag: str, convert: Callable[[str], Any]) -> dict[str, Any]:
    """``NAME=VALUE`` items of a repeatable flag as a dict, each value through ``convert``; a
    malformed item or value is a ``PodiumError`` naming the flag."""
    pairs: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise PodiumError(f"{flag} expects NAME=VALUE, got {item!r}")
        try:
            pairs[name] = convert(value)
        except ValueError:
            raise PodiumError(f"{flag} {name}: invalid value {value!r}") from None
    return pairs
