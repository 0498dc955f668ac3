"""``python -m examples.customer_analytics`` (``make demo``): run the pipeline once, print a summary,
the assets it wrote, and the ``top_customers`` run those assets triggered.

Each invocation is a fresh run (no idempotency key) of today's date in Berlin; the state file, the
sample data, the warehouse and the report all live under ``examples/customer_analytics/output/``.
Exit code: 0 if the run succeeded, 1 if it failed, 2 if it could not run (e.g. the state file is
owned by another live engine).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from engine import DAG, Engine, PodiumError, Run, RunState

from .pipeline import OUTPUT_DIR, POOLS, TIMEZONE, customer_analytics, top_customers

STATE_STYLE = {"success": "green", "failed": "bold red", "upstream_failed": "red"}


@dataclass
class Outcome:
    run: Run
    written: list[dict[str, Any]] = field(default_factory=list)  # the run's asset events
    triggered: Run | None = None  # the top_customers run its assets started


async def run_once(*, day: str, output_dir: Path, dag: DAG = customer_analytics) -> Outcome:
    """Run ``dag`` (the Python pipeline, or the YAML one) once with a fresh engine on
    ``<output_dir>/podium.db``; for the Python one, also wait for the ``top_customers`` run its
    warehouse tables trigger."""
    await anyio.Path(output_dir).mkdir(parents=True, exist_ok=True)
    params = {"day": day, "data_dir": str(output_dir / "data"), "output_dir": str(output_dir)}
    dags = [dag, top_customers] if dag is customer_analytics else [dag]
    async with Engine(output_dir / "podium.db", dags=dags, pools=POOLS) as podium:
        run = await (await podium.trigger(dag.dag_id, params=params)).wait()
        outcome = Outcome(run, (await podium.run_lineage(run.run_id))["outputs"])
        if run.state is RunState.SUCCESS and top_customers in dags:
            outcome.triggered = await _run_triggered_by(podium, run)
        return outcome


async def _run_triggered_by(podium: Engine, run: Run) -> Run:
    """The ``top_customers`` run that consumed ``run``'s asset events, once finished."""
    with anyio.fail_after(60):
        while True:
            for candidate in await podium.runs(dag_id=top_customers.dag_id, limit=5):
                events = (candidate.event or {}).get("events", [])
                if any(e.get("run_id") == run.run_id for e in events):
                    return await candidate.wait()
            await anyio.sleep(0.05)


def _shown(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(console: Console, outcome: Outcome, dag: DAG = customer_analytics) -> None:
    """The tasks of the run (of ``dag``, the Python or the YAML pipeline), its figures, its assets."""
    run = outcome.run
    table = Table(title=f"{dag.dag_id} · run {run.run_id}", title_justify="left")
    table.add_column("task")
    table.add_column("state")
    table.add_column("try", justify="right")
    table.add_column("duration (ms)", justify="right")
    for task_id in dag.order:
        ti = run.tasks[task_id]
        style = STATE_STYLE.get(ti.state.value, "")
        duration = f"{ti.duration * 1000:,.0f}" if ti.duration is not None else "—"
        table.add_row(task_id, f"[{style}]{ti.state}[/]" if style else str(ti.state),
                      str(ti.try_number), duration)  # fmt: skip
    console.print(table)
    total = f"{run.duration:.2f}s" if run.duration is not None else "n/a"
    style = STATE_STYLE.get(run.state.value, "")
    console.print(f"run [{style}]{run.state}[/] in {total}")
    if run.state is not RunState.SUCCESS:
        for task_id, ti in run.tasks.items():
            if ti.error:
                console.print(f"  [red]{task_id}[/]: {ti.error}", markup=True, highlight=False)
        return
    loaded, report = run.tasks["load"].result, run.tasks["report"].result
    cleaning = loaded["cleaning"]
    revenue, top = loaded["revenue_cents"] / 100, loaded["top_region_revenue_cents"] / 100
    console.print(
        f"customers   {loaded['customers']:,} clean of {cleaning['crm_rows']:,} CRM rows "
        f"({cleaning.get('duplicate_rows', 0)} duplicates, "
        f"{cleaning.get('invalid_email_or_name', 0)} invalid dropped); "
        f"{loaded['buyers']:,} with orders"
    )
    console.print(
        f"revenue     €{revenue:,.2f} from {loaded['orders']:,} completed orders "
        f"up to {loaded['as_of']}"
    )
    console.print(f"top region  {loaded['top_region']}: €{top:,.2f} ({top / revenue:.0%})")
    console.print(f"warehouse   {_shown(loaded['warehouse'])}")
    console.print(f"report      {_shown(report['report'])}")
    print_assets(console, outcome)


def print_assets(console: Console, outcome: Outcome) -> None:
    """The assets the run wrote (the catalog's view) and the run they triggered."""
    console.print(f"assets      {len(outcome.written)} written (see /assets or `podium assets`):")
    for event in outcome.written:
        rows = (event["metadata"] or {}).get("rows")
        columns = len(event["schema"]) if event["schema"] is not None else None
        facts = []
        if rows is not None:
            facts.append(f"{rows:,} rows")
        if columns is not None:
            facts.append(f"{columns} columns")
        console.print(f"  {event['uri']:<40} {', '.join(facts)}", highlight=False)
    then = outcome.triggered
    if then is None:
        return
    style = STATE_STYLE.get(then.state.value, "")
    result = then.tasks["rank_customers"].result or {}
    where = f": {_shown(result['top_customers'])}" if "top_customers" in result else ""
    console.print(
        f"then        {top_customers.dag_id} ran on orders & customers: "
        f"[{style}]{then.state}[/]{where}",
        highlight=False,
    )


def iso_day(text: str) -> str:
    """A ``YYYY-MM-DD`` argument (argparse names the function when the value is invalid)."""
    return date.fromisoformat(text).isoformat()


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m examples.customer_analytics",
    dag: DAG = customer_analytics,
    output_dir: Path = OUTPUT_DIR,
) -> int:
    """Parse the arguments, run ``dag`` (the Python pipeline, or the YAML one) once, print."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"Run the {dag.dag_id} pipeline once and print a summary."
    )
    parser.add_argument(
        "--day",
        type=iso_day,
        default=datetime.now(TIMEZONE).date().isoformat(),
        help="include orders up to this day, YYYY-MM-DD (default: today in Berlin)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=output_dir, help=f"default: {_shown(output_dir)}"
    )
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 110)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[
            RichHandler(
                console=Console(stderr=True, width=None if sys.stderr.isatty() else 110),
                show_path=False,
            )
        ],
    )
    logging.getLogger("podium.task").setLevel(logging.INFO)
    try:
        outcome = anyio.run(lambda: run_once(day=args.day, output_dir=args.output_dir, dag=dag))
    except PodiumError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    print_summary(console, outcome, dag)
    triggered_ok = outcome.triggered is None or outcome.triggered.state is RunState.SUCCESS
    return 0 if outcome.run.state is RunState.SUCCESS and triggered_ok else 1


if __name__ == "__main__":
    sys.exit(main())
