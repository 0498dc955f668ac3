"""The ``podium`` command: its parser, its entry point, and ``podium run`` / ``serve``.

The commands live by what they are for: ``cli_authoring`` (validate, env build, schema, init,
render), ``cli_operations`` (trigger, pause, unpause, resume, rerun, cancel, backfill), ``cli_runs``
(runs, show, logs, dags), ``cli_catalog`` (assets, lineage); ``cli_output`` holds what they print
with. This module assembles their parsers and holds the argument helpers they share (``--db``,
``--path``, ``--http`` ...).

Signals are handled here and only here: the first SIGINT/SIGTERM drains gracefully, a second one stops
at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from rich.logging import RichHandler

from . import cli_authoring, cli_catalog, cli_operations, cli_runs
from .assembly import check_pools
from .cli_output import err_console, parse_pairs, print_error, print_load_errors
from .dag import DAG
from .engine import Engine
from .errors import PodiumError
from .loader import load_dags


def main(argv: Sequence[str] | None = None) -> None:
    """The ``podium`` entry point: parse, run the command's handler, exit with its code."""
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
        print_error(exc)
        code = 2
    except BaseExceptionGroup as group:  # errors from inside a task group
        podium_errors, rest = group.split(PodiumError)
        if rest is not None or podium_errors is None:
            raise
        for leaf in _leaves(podium_errors):
            print_error(leaf)
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

    # the order here is the order of `podium --help`
    cli_operations.add_trigger_parser(sub, _db_arg)
    cli_runs.add_runs_parsers(sub, _db_arg)
    cli_operations.add_operation_parsers(sub, _db_arg, _path_arg)
    cli_runs.add_logs_parser(sub, _db_arg)
    cli_catalog.add_parsers(sub, _db_arg)
    cli_runs.add_dags_parser(sub, _db_arg)
    cli_authoring.add_parsers(sub)
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
    """Serve the DAGs under a path until a signal: the first drains, a second stops at once."""
    result = load_dags(args.path)
    print_load_errors(result.errors)
    if not result.dags:
        print_error(f"no DAGs found in {args.path}")
        return 2
    pools = parse_pairs(args.pool, "--pool", int)
    dags: list[DAG] = []
    for d in result.dags:
        try:
            check_pools(d, pools)
        except PodiumError as exc:
            print_error(f"{d.source_file}: {exc}")
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
