"""``podium assets`` and ``podium lineage URI``: the catalog from the state file, like ``podium
runs`` (no engine needed; who produces and consumes what comes from the DAG descriptions the
engine stored)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from rich.markup import escape
from rich.table import Table

from .cli_output import console, fmt_time
from .durations import format_duration
from .lineage import Lineage
from .store import Store


def add_parsers(
    sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]
) -> None:  # argparse's subparsers action has no public type
    assets = sub.add_parser("assets", help="the catalog: assets by URI, with their last event")
    db_arg(assets)
    assets.add_argument("--after", default="", metavar="URI", help="the page after this URI")
    assets.add_argument("--limit", type=int, default=100)
    assets.add_argument("--match", default=None, help="only URIs or names containing this")
    assets.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    assets.set_defaults(handler=cmd_assets)

    lineage = sub.add_parser("lineage", help="an asset's producers and consumers (one hop)")
    lineage.add_argument("uri")
    db_arg(lineage)
    lineage.add_argument("--json", action="store_true")
    lineage.set_defaults(handler=cmd_lineage)


async def cmd_assets(args: argparse.Namespace) -> int:
    async with Store(args.db, owner=False) as store:
        lineage = Lineage(store=store, dags=None, now=time.time)
        found = await lineage.assets(after=args.after, limit=args.limit, matching=args.match)
    if args.json:
        for a in found:
            sys.stdout.write(orjson.dumps(a).decode() + "\n")
        return 0
    table = Table(title=f"assets in {args.db}", title_justify="left")
    table.add_column("asset", no_wrap=True)
    for col in ("producers", "consumers", "last event (UTC)", "metadata", "freshness", "schema"):
        table.add_column(col)
    for a in found:
        event = a["last_event"] or {}
        name = f"\n[grey50]{escape(a['name'])}[/]" if a["name"] != a["uri"] else ""
        run = f"\n[grey50]{escape(event['run_id'])}[/]" if event.get("run_id") else ""
        table.add_row(
            escape(a["uri"]) + name,
            escape(", ".join(a["producers"])),
            escape(", ".join([*a["consumers"], *(f"on {d}" for d in a["triggers"])])),
            fmt_time(event.get("ts")) + run,
            escape(_metadata_text(event.get("metadata"))),
            _freshness_text(a["freshness"]),
            escape(_schema_text(a)),
        )
    console.print(table)
    if len(found) == args.limit:
        console.print(f"next page: --after {escape(found[-1]['uri'])}", highlight=False)
    return 0


async def cmd_lineage(args: argparse.Namespace) -> int:
    async with Store(args.db, owner=False) as store:
        lineage = Lineage(store=store, dags=None, now=time.time)
        hop = await lineage.hop(uri=args.uri)
        asset = await lineage.asset(args.uri)
    if args.json:
        sys.stdout.write(orjson.dumps({**hop, "asset": asset}).decode() + "\n")
        return 0 if asset is not None else 1
    if asset is None:
        console.print(f"[yellow]{escape(args.uri)} is not in the catalog of {args.db}[/]")
        return 1
    console.print(f"[bold]{escape(asset['name'])}[/]  {escape(args.uri)}", highlight=False)
    event = asset["last_event"]
    if event is not None:
        console.print(
            f"last event {fmt_time(event['ts'])} UTC by {escape(str(event['dag_id']))}."
            f"{escape(str(event['task_id']))} (run {escape(str(event['run_id']))})"
            f"  {escape(_metadata_text(event['metadata']))}",
            highlight=False,
        )
    if asset["freshness"] is not None:
        console.print(f"freshness: {_freshness_text(asset['freshness'])}", highlight=False)
    for side, title in (("upstream", "producers"), ("downstream", "consumers")):
        console.print(f"{title}:", highlight=False)
        nodes = hop[side]
        for n in nodes:
            console.print(f"  {n['kind']:<5} {escape(n['label'])}", highlight=False)
        if not nodes:
            console.print("  (none)", highlight=False)
        if hop[f"more_{side}"]:
            console.print(f"  ... and {hop[f'more_{side}']} more", highlight=False)
    return 0


def _metadata_text(metadata: Any) -> str:
    if not metadata:
        return ""
    return " ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in metadata.items())[:80]


def _freshness_text(f: dict[str, Any] | None) -> str:
    if f is None:
        return ""
    if f["fresh"]:
        return f"[green]fresh[/] (every {format_duration(f['fresh_within'])})"
    return f"[bold red]stale[/] (overdue {format_duration(f['overdue'])})"


def _schema_text(asset: dict[str, Any]) -> str:
    from .assets import describe_schema_changes

    if asset["schema"] is None:
        return ""
    text = f"{len(asset['schema'])} columns"
    if asset["schema_changes"]:
        text += f"; {describe_schema_changes(asset['schema_changes'])}"
    return text
