"""``python -m examples.fan_out`` (``make demo-fan-out``): run the fan-out DAG once for a day and print
its instances and totals.

``--day YYYY-MM-DD`` (default 2026-11-25), ``--data-dir DIR`` (default ``examples/fan_out/output/data``;
a day's folder that does not exist gets sample files). Exit code 0 if the run succeeded, 1 if it
failed, 2 if it could not run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

from engine import Engine, PodiumError, Run, RunState

from .pipeline import DATA_DIR, HERE, daily_files


async def run_once(*, day: str, data_dir: Path) -> Run:
    """One run with a fresh engine on ``examples/fan_out/output/podium.db``; the finished run."""
    state = HERE / "output" / "podium.db"
    await anyio.Path(state.parent).mkdir(parents=True, exist_ok=True)
    async with Engine(state, dags=[daily_files]) as podium:
        run = await podium.trigger("daily_files", params={"day": day, "data_dir": str(data_dir)})
        return await run.wait()


def _position(task_id: str) -> tuple[int, int]:
    """Where a task or mapped instance (``load_file[3]``) goes in the table: the DAG's order."""
    base, _, index = task_id.partition("[")
    return daily_files.order.index(base), int(index.rstrip("]") or -1)


def print_summary(console: Console, run: Run) -> None:
    table = Table(title=f"daily_files · run {run.run_id}", title_justify="left")
    for column in ("task", "state", "try", "file", "rows", "revenue"):
        table.add_column(
            column, justify="right" if column in ("try", "rows", "revenue") else "left"
        )
    for task_id, ti in sorted(run.tasks.items(), key=lambda kv: _position(kv[0])):
        result = ti.result if task_id.startswith("load_file[") and ti.result else {}
        table.add_row(
            task_id, str(ti.state), str(ti.try_number), result.get("file", ""),
            f"{result['rows']:,}" if result else "", f"€{result['cents'] / 100:,.2f}" if result else "",
        )  # fmt: skip
    console.print(table)
    console.print(f"run {run.state} in {run.duration or 0:.2f}s")
    if run.state is not RunState.SUCCESS:
        for task_id, ti in run.tasks.items():
            if ti.error:
                console.print(f"  [red]{task_id}[/]: {ti.error}", highlight=False)
        return
    total = run.tasks["summarize"].result
    console.print(
        f"{total['files']} files of {total['day']}: {total['rows']:,} rows, "
        f"€{total['cents'] / 100:,.2f}; biggest {total['biggest_file']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.fan_out", description="Run the fan-out DAG once for a day."
    )
    parser.add_argument(
        "--day", type=lambda s: date.fromisoformat(s).isoformat(), default="2026-11-25"
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 110)
    try:
        run = anyio.run(lambda: run_once(day=args.day, data_dir=args.data_dir))
    except PodiumError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    print_summary(console, run)
    return 0 if run.state is RunState.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
