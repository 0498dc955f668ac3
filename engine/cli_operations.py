"""``podium trigger`` and the operations on DAGs and runs: ``pause``, ``unpause``, ``resume``,
``rerun``, ``cancel``, ``backfill``.

Each goes to the engine serving the state file when there is one (a request row it performs and
answers), else, given ``--path``, is done right here by an engine started for it. ``--wait`` follows
the run live until it finishes and exits 0 or 1 by its outcome.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import orjson
from rich.live import Live
from rich.progress import Progress

from . import serialization
from .cli_output import console, parse_pairs, parse_value, print_load_errors, print_run, task_table
from .dag import DAG
from .engine import Engine
from .errors import ParamError, PodiumError, TriggerError
from .loader import load_dags
from .models import Run
from .states import RunState
from .store import Store, is_owned

ArgAdder = Callable[[argparse.ArgumentParser], None]


def add_trigger_parser(sub: Any, db_arg: ArgAdder) -> None:  # subparsers have no public type
    """``podium trigger DAG``."""
    trigger = sub.add_parser("trigger", help="queue a run (served now if an engine serves FILE)")
    trigger.add_argument("dag_id")
    db_arg(trigger)
    trigger.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable; JSON values"
    )
    trigger.add_argument("--key", help="idempotency key: the same key returns the existing run")
    trigger.add_argument("--wait", action="store_true", help="wait and exit 0/1 by the outcome")
    trigger.add_argument(
        "--path",
        help="DAG file or folder: validates params, and with --wait runs the DAG here "
        "when no engine serves FILE",
    )
    trigger.set_defaults(handler=cmd_trigger)


def add_operation_parsers(sub: Any, db_arg: ArgAdder, path_arg: ArgAdder) -> None:
    """``podium pause``, ``unpause``, ``resume``, ``rerun``, ``cancel`` and ``backfill``."""
    for name, helptext in (("pause", "stop starting runs and tasks of a DAG"),
                           ("unpause", "start a paused DAG's queued runs again")):  # fmt: skip
        p = sub.add_parser(name, help=helptext)
        p.add_argument("dag_id")
        db_arg(p)
        path_arg(p)
        if name == "unpause":
            p.add_argument("--skip-queued", action="store_true", help="cancel the queued runs")
        p.set_defaults(handler=cmd_operation, operation=name)

    resume = sub.add_parser("resume", help="continue a run paused by a failure")
    resume.add_argument("run_id")
    db_arg(resume)
    path_arg(resume)
    resume.add_argument("--wait", action="store_true")
    resume.set_defaults(handler=cmd_operation, operation="resume")

    rerun = sub.add_parser("rerun", help="run task instances of a run again, in the same run")
    rerun.add_argument("run_id")
    db_arg(rerun)
    path_arg(rerun)
    rerun.add_argument("--task", dest="tasks", action="append", metavar="TASK_ID")
    rerun.add_argument("--failed-only", action="store_true")
    rerun.add_argument("--downstream", action="store_true", help="also every task downstream")
    rerun.add_argument("--wait", action="store_true")
    rerun.set_defaults(handler=cmd_operation, operation="rerun")

    cancel = sub.add_parser("cancel", help="cancel a run, or one task of it")
    cancel.add_argument("run_id")
    db_arg(cancel)
    path_arg(cancel)
    cancel.add_argument("--task", dest="task_id")
    cancel.add_argument("--reason", default=None)
    cancel.set_defaults(handler=cmd_operation, operation="cancel")

    backfill = sub.add_parser("backfill", help="one run per schedule slot in a date range")
    backfill.add_argument("dag_id")
    db_arg(backfill)
    path_arg(backfill)
    backfill.add_argument("--start", required=True, help="YYYY-MM-DD (DAG's time zone)")
    backfill.add_argument("--end", required=True, help="YYYY-MM-DD, inclusive")
    backfill.add_argument("--missing-only", action="store_true", help="don't rerun failed slots")
    backfill.add_argument("--max-active", type=int, default=None, help="backfill runs at once")
    backfill.set_defaults(handler=cmd_operation, operation="backfill")


async def cmd_trigger(args: argparse.Namespace) -> int:
    """Queue a run; with ``--wait``, follow it (running it here when no engine serves the file)."""
    params = parse_pairs(args.param, "--param", parse_value)
    local_dags: dict[str, DAG] = {}
    if args.path:
        loaded = load_dags(args.path)
        print_load_errors(loaded.errors)
        local_dags = {d.dag_id: d for d in loaded.dags}
    async with Store(args.db, owner=False) as store:
        dag_obj = local_dags.get(args.dag_id)
        if dag_obj is not None:
            run_params = dag_obj.validate_params(params)
            task_ids: Sequence[str] = dag_obj.order
        else:
            row = await store.dag_row(args.dag_id)
            if row is None:
                raise PodiumError(
                    f"DAG {args.dag_id!r} is not known to {args.db}: serve it once with "
                    f"`podium run PATH --db {args.db}`, or pass --path PATH"
                )
            description = serialization.loads(row.description)
            run_params = _validate_against_description(args.dag_id, description, params)
            task_ids = [t["task_id"] for t in description["tasks"]]
        run = await _queue_run(store, args.dag_id, run_params, args.key, task_ids)
    served = is_owned(args.db)
    console.print(
        f"run [bold]{run.run_id}[/] of {run.dag_id}: {run.state.value}"
        + ("" if served else f"  (no engine serves {args.db} now; it starts with the next one)")
    )
    if not args.wait:
        return 0
    if not served and dag_obj is not None and not run.finished:
        async with Engine(args.db, dags=list(local_dags.values())) as engine:
            final = await _follow(args.db, run.run_id)
            await engine.wait_run(run.run_id)
    else:
        final = await _follow(args.db, run.run_id)
    print_run(final)
    return 0 if final.state is RunState.SUCCESS else 1


async def _queue_run(
    store: Store,
    dag_id: str,
    params: dict[str, Any],
    key: str | None,
    task_ids: Sequence[str],
) -> Run:
    from .runbook import new_run_row

    _, run_key, row = new_run_row(
        dag_id, params, key=key, logical_date=None, event=None, trigger="cli", now=time.time()
    )
    existing = await store.find_run(dag_id, run_key)
    if existing is None:
        store.writer.insert_run(row, task_ids)
        await store.writer.flush()
        existing = await store.find_run(dag_id, run_key)
        if existing is None:
            raise PodiumError(f"run {run_key!r} of DAG {dag_id!r} was not stored in {store.path}")
    return await store.get_run(existing.run_id)


def _validate_against_description(
    dag_id: str, description: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    declared: dict[str, Any] = description.get("params", {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ParamError(
            f"DAG {dag_id!r}: unknown param(s) {', '.join(unknown)} "
            f"(declared: {', '.join(declared) or 'none'})"
        )
    for name, spec in declared.items():
        if spec.get("required") and name not in params:
            raise ParamError(f"DAG {dag_id!r}: missing required param {name!r}")
    return params


async def _follow(db: str, run_id: str) -> Run:
    """Poll the state file until the run finishes, showing its tasks live."""
    async with Store(db, owner=False) as store:
        with Live(console=console, refresh_per_second=8, transient=True) as live:
            while True:
                run = await store.get_run(run_id)
                live.update(task_table(run))
                if run.finished:
                    return run
                await anyio.sleep(0.2)


# -- operations: pause / unpause / resume / rerun / cancel / backfill -----------------------------


def _operation_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    op = args.operation
    if op in ("pause", "unpause"):
        extra = {"skip_queued": args.skip_queued} if op == "unpause" else {}
        return op, {"dag_id": args.dag_id, **extra}
    if op == "resume":
        return op, {"run_id": args.run_id}
    if op == "rerun":
        return op, {
            "run_id": args.run_id,
            "tasks": args.tasks,
            "failed_only": args.failed_only,
            "downstream": args.downstream,
        }
    if op == "cancel":
        reason = args.reason or f"cancelled by {_actor()}"
        if args.task_id:
            return "cancel_task", {"run_id": args.run_id, "task_id": args.task_id, "reason": reason}
        return op, {"run_id": args.run_id, "reason": reason}
    if op == "backfill":
        return op, {
            "dag_id": args.dag_id,
            "start": args.start,
            "end": args.end,
            "missing_only": args.missing_only,
            "max_active": args.max_active,
        }
    raise PodiumError(f"unknown operation {op}")


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


async def cmd_operation(args: argparse.Namespace) -> int:
    """Hand the operation to the engine serving the file, or do it here with --path."""
    operation, op_args = _operation_args(args)
    if is_owned(args.db):
        result = await _request(args.db, operation, op_args, args)
    elif args.path:
        result = await _operate_here(args.path, args.db, operation, op_args, args)
    else:
        raise PodiumError(
            f"no engine serves {args.db}: start `podium run PATH --db {args.db}`, or pass --path "
            "PATH to do it here"
        )
    console.print(f"{operation}: done {orjson.dumps(result).decode() if result else ''}")
    run_id = getattr(args, "run_id", None)
    if getattr(args, "wait", False) and run_id:
        final = await _follow(args.db, run_id)
        print_run(final)
        return 0 if final.state is RunState.SUCCESS else 1
    if operation == "backfill" and isinstance(result, dict):
        return 0 if not result.get("failed") else 1
    return 0


async def _request(
    db: str, operation: str, op_args: dict[str, Any], args: argparse.Namespace
) -> Any:
    async with Store(db, owner=False) as store:
        request_id = await store.insert_request(_actor(), operation, op_args)
        total = await _backfill_total(store, op_args) if operation == "backfill" else 0
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task(operation, total=total or None)
            while True:
                status = await store.request(request_id)
                if status is None:
                    raise PodiumError(f"request {request_id} is no longer in {db}")
                if status.state == "done":
                    return serialization.loads(status.result)
                if status.state == "failed":
                    raise PodiumError(status.error or f"{operation} failed")
                if total:
                    progress.update(bar, completed=await _backfill_done(store, op_args))
                await anyio.sleep(0.1)


async def _operate_here(
    path: str, db: str, operation: str, op_args: dict[str, Any], args: argparse.Namespace
) -> Any:
    from .requests import perform

    loaded = load_dags(path)
    print_load_errors(loaded.errors)
    async with Engine(db, dags=loaded.dags, sensors=False) as engine:
        if operation == "backfill":
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task("backfill", total=None)

                def on_progress(done: int, total: int) -> None:
                    progress.update(bar, completed=done, total=total)

                result = await perform(
                    engine.ops, operation, op_args, actor=_actor(), on_progress=on_progress
                )
        else:
            result = await perform(engine.ops, operation, op_args, actor=_actor())
        run_id = op_args.get("run_id")
        if run_id and operation in ("rerun", "resume"):
            await engine.wait_run(run_id)  # the run finishes here, not at the next engine start
        return result


async def _backfill_total(store: Store, op_args: dict[str, Any]) -> int:
    return len(await _backfill_keys(store, op_args))


async def _backfill_keys(store: Store, op_args: dict[str, Any]) -> list[str]:
    from sensors.timer_source import timer_event_id
    from sensors.timers import schedule_from_spec

    from .backfill import backfill_slots

    row = await store.dag_row(op_args["dag_id"])
    if row is None:
        return []
    # the DAG's stored description holds its timers' ``Schedule.spec()``; the first is backfilled
    timers = serialization.loads(row.description).get("timers") or []
    if not timers:
        return []
    try:
        schedule = schedule_from_spec(timers[0])
    except TriggerError:  # a schedule of the DAG's own making: no total to show
        return []
    slots = backfill_slots(schedule, op_args["start"], op_args["end"])
    return [timer_event_id(op_args["dag_id"], slot) for slot in slots]


async def _backfill_done(store: Store, op_args: dict[str, Any]) -> int:
    keys = await _backfill_keys(store, op_args)
    done = 0
    for key in keys:
        row = await store.find_run(op_args["dag_id"], key)
        if row is not None and row.state in ("success", "failed", "cancelled"):
            done += 1
    return done
