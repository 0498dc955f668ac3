"""The ``podium`` command: serve DAG files, trigger runs, and look at runs.

Signals are handled here and only here: the first SIGINT/SIGTERM drains gracefully, a second one stops
at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from . import cli_catalog, serialization
from .dag import DAG
from .durations import format_duration
from .engine import Engine, check_pools
from .errors import ParamError, PodiumError, RunNotFoundError, TriggerError
from .loader import load_dags
from .models import Run
from .starter import STARTER_TEMPLATES
from .states import RunState
from .store import Store, is_owned

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


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
    )
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    try:
        code = anyio.run(args.handler, args)
    except PodiumError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        code = 2
    except BaseExceptionGroup as group:  # errors from inside a task group
        podium_errors, rest = group.split(PodiumError)
        if rest is not None or podium_errors is None:
            raise
        for leaf in _leaves(podium_errors):
            err_console.print(f"[bold red]error:[/] {leaf}")
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podium", description="Podium: an asyncio orchestration engine with durable state."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve the DAGs in PATH until SIGTERM/SIGINT")
    run.add_argument("path", help="a DAG file (.py, .yaml, .yml) or a folder of them")
    _db_arg(run)
    run.add_argument("--max-tasks", type=int, default=64, help="live tasks at most (default 64)")
    run.add_argument("--max-threads", type=int, default=8, help="threads for sync tasks")
    run.add_argument(
        "--pool", action="append", default=[], metavar="NAME=SLOTS", help="a task pool; repeatable"
    )
    run.add_argument(
        "--grace", type=float, default=30.0, help="seconds running tasks get to finish on stop"
    )
    run.add_argument("--durability", choices=["normal", "full"], default="normal")
    _http_args(run, default=None)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(handler=cmd_run)

    serve = sub.add_parser(
        "serve", help="like `run`, with the HTTP API and web UI (default 127.0.0.1:8080)"
    )
    serve.add_argument("path", help="a DAG file (.py) or a folder of them")
    _db_arg(serve)
    serve.add_argument("--max-tasks", type=int, default=64)
    serve.add_argument("--max-threads", type=int, default=8)
    serve.add_argument("--pool", action="append", default=[], metavar="NAME=SLOTS")
    serve.add_argument("--grace", type=float, default=30.0)
    serve.add_argument("--durability", choices=["normal", "full"], default="normal")
    _http_args(serve, default="127.0.0.1:8080")
    serve.add_argument("-v", "--verbose", action="store_true")
    serve.set_defaults(handler=cmd_run)

    trigger = sub.add_parser("trigger", help="queue a run (served now if an engine serves FILE)")
    trigger.add_argument("dag_id")
    _db_arg(trigger)
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

    runs = sub.add_parser("runs", help="list runs, newest first")
    _db_arg(runs)
    runs.add_argument("--dag", dest="dag_id")
    runs.add_argument("--state", choices=[s.value for s in RunState])
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    runs.set_defaults(handler=cmd_runs)

    show = sub.add_parser("show", help="one run and its tasks")
    show.add_argument("run_id")
    _db_arg(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)

    for name, helptext in (("pause", "stop starting runs and tasks of a DAG"),
                           ("unpause", "start a paused DAG's queued runs again")):  # fmt: skip
        p = sub.add_parser(name, help=helptext)
        p.add_argument("dag_id")
        _db_arg(p)
        _path_arg(p)
        if name == "unpause":
            p.add_argument("--skip-queued", action="store_true", help="cancel the queued runs")
        p.set_defaults(handler=cmd_operation, operation=name)

    resume = sub.add_parser("resume", help="continue a run paused by a failure")
    resume.add_argument("run_id")
    _db_arg(resume)
    _path_arg(resume)
    resume.add_argument("--wait", action="store_true")
    resume.set_defaults(handler=cmd_operation, operation="resume")

    rerun = sub.add_parser("rerun", help="run task instances of a run again, in the same run")
    rerun.add_argument("run_id")
    _db_arg(rerun)
    _path_arg(rerun)
    rerun.add_argument("--task", dest="tasks", action="append", metavar="TASK_ID")
    rerun.add_argument("--failed-only", action="store_true")
    rerun.add_argument("--downstream", action="store_true", help="also every task downstream")
    rerun.add_argument("--wait", action="store_true")
    rerun.set_defaults(handler=cmd_operation, operation="rerun")

    cancel = sub.add_parser("cancel", help="cancel a run, or one task of it")
    cancel.add_argument("run_id")
    _db_arg(cancel)
    _path_arg(cancel)
    cancel.add_argument("--task", dest="task_id")
    cancel.add_argument("--reason", default=None)
    cancel.set_defaults(handler=cmd_operation, operation="cancel")

    backfill = sub.add_parser("backfill", help="one run per schedule slot in a date range")
    backfill.add_argument("dag_id")
    _db_arg(backfill)
    _path_arg(backfill)
    backfill.add_argument("--start", required=True, help="YYYY-MM-DD (DAG's time zone)")
    backfill.add_argument("--end", required=True, help="YYYY-MM-DD, inclusive")
    backfill.add_argument("--missing-only", action="store_true", help="don't rerun failed slots")
    backfill.add_argument("--max-active", type=int, default=None, help="backfill runs at once")
    backfill.set_defaults(handler=cmd_operation, operation="backfill")

    logs = sub.add_parser("logs", help="a task's captured log lines")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    _db_arg(logs)
    logs.add_argument("--try", dest="try_number", type=int, help="one try only (default: all)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run ends"
    )
    logs.set_defaults(handler=cmd_logs)

    cli_catalog.add_parsers(sub, _db_arg)

    dags = sub.add_parser("dags", help="the DAGs an engine registered in FILE")
    _db_arg(dags)
    dags.set_defaults(handler=cmd_dags)

    validate = sub.add_parser(
        "validate", help="check DAG files without running them (exit 1 on errors)"
    )
    validate.add_argument("path", help="a DAG file (.py, .yaml, .yml) or a folder of them")
    validate.set_defaults(handler=cmd_validate)

    env = sub.add_parser("env", help="the virtualenvs of Virtualenv tasks")
    env_sub = env.add_subparsers(required=True, metavar="ACTION")
    env_build = env_sub.add_parser(
        "build",
        help="build the virtualenv of every Virtualenv task in the DAG files under PATH "
        "(ahead of serving them, e.g. in a Docker build); exit 1 if one cannot be built",
    )
    env_build.add_argument("path", help="a DAG file or a folder of them")
    env_build.add_argument(
        "--cache-dir",
        help="build here, for tasks that name no cache_dir (default: $PODIUM_VENV_CACHE, else "
        "~/.cache/podium/venvs)",
    )
    env_build.set_defaults(handler=cmd_env_build)

    schema = sub.add_parser("schema", help="print the JSON Schema of YAML DAG files (for editors)")
    schema.set_defaults(handler=cmd_schema)

    init = sub.add_parser("init", help="write a small working project into DIR")
    init.add_argument("directory", metavar="DIR")
    init.add_argument(
        "--template",
        choices=STARTER_TEMPLATES,
        default=None,
        help="a project around one kind of trigger, with a pytest test and a sample event "
        "(default: a Python DAG and a YAML DAG)",
    )
    init.set_defaults(handler=cmd_init)

    render = sub.add_parser(
        "render", help="show what every task's templated arguments render to (runs nothing)"
    )
    render.add_argument("dag_id")
    render.add_argument(
        "--path", default="pipelines", help="DAG file or folder (default: pipelines)"
    )
    render.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable; JSON values"
    )
    render.add_argument(
        "--event", metavar="EVENT.json", help="the triggering event's payload (ctx.event), as JSON"
    )
    render.add_argument(
        "--logical-date", metavar="DATE", help="YYYY-MM-DD or an ISO datetime (default: none)"
    )
    render.add_argument("--json", action="store_true", help="JSON instead of text")
    render.set_defaults(handler=cmd_render)
    return parser


def _http_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--http",
        default=default,
        metavar="HOST:PORT",
        help="serve the HTTP API and web UI here" + (f" (default {default})" if default else ""),
    )
    p.add_argument(
        "--token",
        default=os.environ.get("PODIUM_TOKEN"),
        help="bearer token for API mutations (default: $PODIUM_TOKEN, else generated and saved "
        "next to the state file)",
    )
    p.add_argument("--base-url", default=None, help="the UI's public address, for links in alerts")
    p.add_argument(
        "--public-read",
        action="store_true",
        help="off loopback, let anyone read (runs, params, logs, events) without the token",
    )
    p.add_argument(
        "--private-probes",
        action="store_true",
        help="off loopback, /metrics and /api/health need the token too",
    )


def _path_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path", help="DAG file or folder, to act right here when no engine serves the state file"
    )


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=os.environ.get("PODIUM_DB", "podium.db"),
        help="state file (default: $PODIUM_DB or podium.db)",
    )


# -- podium run ---------------------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace) -> int:
    result = load_dags(args.path)
    for error in result.errors:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
    if not result.dags:
        err_console.print(f"[bold red]error:[/] no DAGs found in {args.path}")
        return 2
    pools = _parse_pairs(args.pool, "--pool", int)
    dags: list[DAG] = []
    for d in result.dags:
        try:
            check_pools(d, pools)
        except PodiumError as exc:
            err_console.print(f"[bold red]error:[/] {d.source_file}: {exc}")
            continue
        dags.append(d)
    if not dags:
        return 2
    engine = Engine(
        args.db,
        dags=dags,
        max_tasks=args.max_tasks,
        max_threads=args.max_threads,
        pools=pools,
        shutdown_grace=args.grace,
        durability=args.durability,
        http=args.http,
        http_token=args.token,
        http_public_read=args.public_read,
        http_private_probes=args.private_probes,
        base_url=args.base_url or (f"http://{args.http}" if args.http else None),
    )
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                count = 0
                async for signum in signals:
                    count += 1
                    if count == 1:
                        err_console.print(
                            f"{signal.Signals(signum).name}: stopping; running tasks get "
                            f"{args.grace:g}s (send again to stop at once)"
                        )
                        stop.set()
                    else:
                        err_console.print("stopping now")
                        engine.stop_now()

        tg.start_soon(watch_signals)
        async with engine:
            names = ", ".join(d.dag_id for d in dags)
            err_console.print(
                f"podium serving {len(dags)} DAG(s) from {args.path} on {args.db} "
                f"(pid {os.getpid()}): {names}"
            )
            if engine.http is not None:
                err_console.print(f"web UI and API on http://{engine.http[0]}:{engine.http_port}/")
            await stop.wait()
        tg.cancel_scope.cancel()
    err_console.print("podium stopped")
    return 0


# -- podium validate / schema / init -------------------------------------------------------------------


async def cmd_validate(args: argparse.Namespace) -> int:
    result = load_dags(args.path)
    for error in result.errors:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
    if result.errors or not result.dags:
        if not result.dags and not result.errors:
            err_console.print(f"[bold red]error:[/] no DAGs found in {args.path}")
        return 1
    names = ", ".join(d.dag_id for d in result.dags)
    console.print(f"ok: {len(result.dags)} DAG(s) in {args.path}: {names}", highlight=False)
    return 0


async def cmd_env_build(args: argparse.Namespace) -> int:
    from .runners.sessions import runner_of
    from .runners.venv import Virtualenv
    from .runners.venv_build import ensure_env

    result = load_dags(args.path)
    for error in result.errors:
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
    wanted: dict[tuple[str, str], Virtualenv] = {}
    failed = bool(result.errors)
    for d in result.dags:
        for node in d.tasks.values():
            runner = runner_of(d, node, None)
            if not isinstance(runner, Virtualenv):
                continue
            if args.cache_dir and runner.cache_dir is None:
                runner = dataclasses.replace(runner, cache_dir=args.cache_dir)
            try:
                key = runner.spec().key
            except PodiumError as exc:
                err_console.print(f"[bold red]error:[/] {d.dag_id}.{node.task_id}: {exc}")
                failed = True
                continue
            wanted.setdefault((key, str(runner.resolve_cache_dir())), runner)
    for runner in wanted.values():
        started = time.monotonic()
        try:
            env = await ensure_env(runner.spec(), runner.resolve_cache_dir())
        except PodiumError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            failed = True
            continue
        what = "built" if env.built else "cached"
        console.print(
            f"{what} {env.path} for {runner.spec().describe()} ({time.monotonic() - started:.1f}s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if not wanted:
        console.print(f"no Virtualenv tasks in {args.path}", highlight=False)
    return 1 if failed else 0


async def cmd_schema(args: argparse.Namespace) -> int:
    from .yaml_spec import json_schema

    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def cmd_init(args: argparse.Namespace) -> int:
    from .starter import write_starter

    written = write_starter(args.directory, template=args.template)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    first = "python -m pytest tests/" if args.template else "podium validate pipelines/"
    console.print(
        f"next: cd {args.directory} && {first} && podium run pipelines/ --db podium.db",
        highlight=False,
    )
    return 0


async def cmd_render(args: argparse.Namespace) -> int:
    from .render import parse_logical_date, render_dag

    params = _parse_pairs(args.param, "--param", _parse_value)
    event = _read_event(args.event) if args.event else None
    logical_date = parse_logical_date(args.logical_date) if args.logical_date else None
    loaded = load_dags(args.path)
    found = {d.dag_id: d for d in loaded.dags}
    if args.dag_id not in found:
        for error in loaded.errors:
            err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        known = ", ".join(sorted(found)) or "none"
        raise PodiumError(f"no DAG {args.dag_id!r} in {args.path} (DAGs there: {known})")
    rendering = render_dag(found[args.dag_id], params, event=event, logical_date=logical_date)
    if args.json:
        sys.stdout.write(orjson.dumps(rendering.as_json()).decode() + "\n")
        return 1 if rendering.errors else 0
    when = rendering.logical_date.isoformat() if rendering.logical_date else "none"
    console.print(
        f"DAG [bold]{rendering.dag_id}[/] · params {escape(orjson.dumps(rendering.params).decode())}"
        f" · logical_date {when} · event {'given' if event is not None else 'none'}",
        highlight=False,
    )
    for task in rendering.tasks:
        console.print(
            f"[bold]{escape(task.task_id)}[/]"
            + ("" if task.fields else "  [grey50](no templates)[/]"),
            highlight=False,
        )
        for f in task.fields:
            shown = f"[bold red]error:[/] {escape(f.error)}" if f.error else escape(repr(f.value))
            console.print(f"  {escape(f.field)} = {shown}", highlight=False, soft_wrap=True)
    count = len(rendering.errors)
    if count:
        err_console.print(f"[bold red]{count} template(s) failed to render[/]")
    return 1 if count else 0


def _read_event(path: str) -> dict[str, Any]:
    try:
        value = orjson.loads(open(path, "rb").read())
    except OSError as exc:
        raise PodiumError(f"--event {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise PodiumError(f"--event {path}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PodiumError(f"--event {path}: an event is a JSON object, got {type(value).__name__}")
    return value


# -- podium trigger -----------------------------------------------------------------------------------


async def cmd_trigger(args: argparse.Namespace) -> int:
    params = _parse_pairs(args.param, "--param", _parse_value)
    local_dags: dict[str, DAG] = {}
    if args.path:
        loaded = load_dags(args.path)
        for error in loaded.errors:
            err_console.print(f"[bold red]error:[/] {error}")
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
    _print_run(final)
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
                live.update(_task_table(run))
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
        _print_run(final)
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
    for error in loaded.errors:
        err_console.print(f"[bold red]error:[/] {error}")
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


# -- podium runs / show / dags ------------------------------------------------------------------------


async def cmd_runs(args: argparse.Namespace) -> int:
    async with Store(args.db, owner=False) as store:
        runs = await store.list_runs(dag_id=args.dag_id, state=args.state, limit=args.limit)
    if args.json:
        for r in runs:
            sys.stdout.write(orjson.dumps(_run_json(r)).decode() + "\n")
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
            _fmt_time(r.created_at),
            format_duration(r.duration),
            r.note or "",
        )
    console.print(table)
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with Store(args.db, owner=False) as store:
        try:
            run = await store.get_run(args.run_id)
        except RunNotFoundError as exc:
            raise PodiumError(str(exc)) from None
    if args.json:
        sys.stdout.write(orjson.dumps(_run_json(run, with_tasks=True)).decode() + "\n")
        return 0
    _print_run(run)
    return 0


async def cmd_logs(args: argparse.Namespace) -> int:
    async with Store(args.db, owner=False) as store:
        try:
            run = await store.get_run(args.run_id)
        except RunNotFoundError as exc:
            raise PodiumError(str(exc)) from None
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


def _print_run(run: Run) -> None:
    style = RUN_STYLE.get(run.state.value, "")
    console.print(
        f"run [bold]{run.run_id}[/] of [bold]{run.dag_id}[/]: [{style}]{run.state.value}[/]"
        f"  trigger={run.trigger} key={run.key} duration={format_duration(run.duration)}"
    )
    if run.params:
        console.print(f"params: {orjson.dumps(run.params).decode()}")
    if run.note:
        console.print(f"note: {run.note}")
    console.print(_task_table(run))


def _task_table(run: Run) -> Table:
    table = Table(title_justify="left")
    for col in ("task", "state", "try", "started (UTC)", "duration", "error"):
        table.add_column(col)
    for tid, ti in sorted(run.tasks.items(), key=lambda kv: (kv[1].started_at or 1e18, kv[0])):
        error = (ti.error or "").strip().splitlines()
        table.add_row(
            tid,
            f"[{TASK_STYLE.get(ti.state.value, '')}]{ti.state.value}[/]",
            str(ti.try_number),
            _fmt_time(ti.started_at),
            format_duration(ti.duration),
            error[-1] if error else "",
        )
    return table


def _run_json(run: Run, with_tasks: bool = False) -> dict[str, Any]:
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


def _fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _parse_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _parse_pairs(items: Sequence[str], flag: str, convert: Any) -> dict[str, Any]:
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
