"""``podium validate``, ``env build``, ``schema``, ``init`` and ``render``: the commands for writing
DAG files. They read DAG files, not a state file, and start no engine."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

import orjson
from rich.markup import escape

from .cli_output import (
    console,
    err_console,
    parse_pairs,
    parse_value,
    print_error,
    print_load_errors,
)
from .errors import PodiumError
from .loader import load_dags
from .starter import STARTER_TEMPLATES


def add_parsers(sub: Any) -> None:  # argparse's subparsers action has no public type
    """``podium validate``, ``env build``, ``schema``, ``init`` and ``render``."""
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


async def cmd_validate(args: argparse.Namespace) -> int:
    """Load the DAG files under a path and report every problem; run nothing."""
    result = load_dags(args.path)
    print_load_errors(result.errors)
    if result.errors or not result.dags:
        if not result.dags and not result.errors:
            print_error(f"no DAGs found in {args.path}")
        return 1
    names = ", ".join(d.dag_id for d in result.dags)
    console.print(f"ok: {len(result.dags)} DAG(s) in {args.path}: {names}", highlight=False)
    return 0


async def cmd_env_build(args: argparse.Namespace) -> int:
    """Build (or find cached) the virtualenv of every Virtualenv task under a path."""
    from .runners.sessions import runner_of
    from .runners.venv import Virtualenv
    from .runners.venv_build import ensure_env

    result = load_dags(args.path)
    print_load_errors(result.errors)
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
                print_error(f"{d.dag_id}.{node.task_id}: {exc}")
                failed = True
                continue
            wanted.setdefault((key, str(runner.resolve_cache_dir())), runner)
    for runner in wanted.values():
        started = time.monotonic()
        try:
            env = await ensure_env(runner.spec(), runner.resolve_cache_dir())
        except PodiumError as exc:
            print_error(exc)
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
    """The JSON Schema of YAML DAG files, on stdout."""
    from .yaml_spec import json_schema

    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def cmd_init(args: argparse.Namespace) -> int:
    """Write a starter project into a directory."""
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
    """What each task's templated arguments render to for given params, event and date."""
    from .render import parse_logical_date, render_dag

    params = parse_pairs(args.param, "--param", parse_value)
    event = _read_event(args.event) if args.event else None
    logical_date = parse_logical_date(args.logical_date) if args.logical_date else None
    loaded = load_dags(args.path)
    found = {d.dag_id: d for d in loaded.dags}
    if args.dag_id not in found:
        print_load_errors(loaded.errors)
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
