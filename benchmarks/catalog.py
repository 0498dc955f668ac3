"""The catalog at scale: HTML response times of the Assets page and an asset's page.

    .venv/bin/python -m benchmarks.catalog [--assets 5000] [--events 100000] [--repeat 30]

A state file is filled with ``--assets`` assets and ``--events`` asset events (spread over the
assets, a few hundred on the busiest one, every event with metadata and a schema that changes now
and then), written straight into the tables through the store's own schema. An engine then serves
it with 50 DAGs whose 500 tasks declare 1 000 of the assets as inlets and outlets (so producers,
consumers and freshness are worked out on every page), and each page is fetched ``--repeat``
times over HTTP on 127.0.0.1, measuring the whole response (server time + transfer) with
``time.perf_counter``: the Assets page (first page, a page in the middle by key, a filtered page),
an asset's page (the busiest asset, and its events ``?before=`` deep in its history), and one
lineage hop (``/api/lineage``). Reported: median and p95 per page, in ms; the target is < 1 s.

Not a test: the figures depend on the machine (a shared 2-core box for the committed ones).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from engine import Asset, Engine, dag, task
from engine.dag import DAG
from engine.store import Store
from engine.web import serve

RESULTS = Path(__file__).with_name("catalog_results.json")
SCHEMA_V1 = [{"name": "id", "type": "int"}, {"name": "amount", "type": "int"}]
SCHEMA_V2 = [*SCHEMA_V1, {"name": "region", "type": "text"}]


def uri_of(n: int) -> str:
    return f"s3://lake/zone-{n % 7}/table-{n:05d}/"


async def fill(db: Path, assets: int, events: int, seed: int = 7) -> str:
    """Write the catalog; return the URI with the most events."""
    async with Store(db):  # the schema, as the engine creates it
        pass
    rng = random.Random(seed)
    now = time.time()
    busiest = uri_of(0)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "INSERT INTO assets (uri, name, metadata, first_seen) VALUES (?, ?, NULL, ?)",
            [(uri_of(n), f"table {n}" if n % 3 else None, now - 86400) for n in range(assets)],
        )
        rows = []
        for i in range(events):
            # a skewed spread: asset 0 gets ~1 in 200 events, the rest share the remainder
            n = 0 if i % 200 == 0 else rng.randrange(assets)
            schema = SCHEMA_V2 if (i // 1000) % 2 else SCHEMA_V1
            rows.append(
                (
                    f"asset:bench-{i}:load:1:0",
                    uri_of(n),
                    now - (events - i),
                    f"bench-{i // 10}",
                    f"dag_{n % 50}",
                    f"load_{n % 10}",
                    1,
                    json.dumps({"rows": rng.randrange(10**6)}).encode(),
                    json.dumps(schema).encode(),
                )
            )
        conn.executemany(
            "INSERT INTO asset_events (event_id, uri, ts, run_id, dag_id, task_id, try_number,"
            " metadata, schema) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return busiest


def make_dags(assets: int, count: int = 50, tasks: int = 10) -> list[DAG]:
    """``count`` DAGs of ``tasks`` tasks, each reading one asset and writing another."""
    dags = []
    for d in range(count):
        nodes = []
        for t in range(tasks):
            k = (d * tasks + t) * 2 % assets
            reads = Asset(uri_of(k))
            writes = Asset(uri_of(k + 1), fresh_within=3600 if t % 2 else None)

            @task(task_id=f"load_{t}", inlets=[reads], outlets=[writes])
            async def step() -> None: ...

            nodes.append(step)

        dags.append(dag(dag_id=f"dag_{d}")(_calling(nodes)))
    return dags


def _calling(nodes: list[Any]) -> Any:
    def body() -> None:
        for node in nodes:
            node()

    return body


async def timed(http: aiohttp.ClientSession, url: str, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            assert resp.status == 200, (url, resp.status, body[:300])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "max_ms": round(times[-1], 1),
        "bytes": len(body),
    }


async def measure(assets: int, events: int, repeat: int, folder: Path) -> dict[str, Any]:
    db = folder / "catalog.db"
    started = time.perf_counter()
    busiest = await fill(db, assets, events)
    filled_s = time.perf_counter() - started
    enc = quote(busiest, safe="")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (busiest_events,) = conn.execute(
            "SELECT COUNT(*) FROM asset_events WHERE uri = ?", (busiest,)
        ).fetchone()
        (deep,) = conn.execute(
            "SELECT seq FROM asset_events WHERE uri = ? ORDER BY seq LIMIT 1 OFFSET ?",
            (busiest, busiest_events // 2),
        ).fetchone()
    middle = uri_of(assets // 2)
    pages = {
        "assets page (first 50)": "/assets",
        "assets page (after a URI in the middle)": f"/assets?after={quote(middle)}",
        "assets page (filter 'zone-3/table-04')": f"/assets?q={quote('zone-3/table-04')}",
        f"asset page (busiest: {busiest_events} events)": f"/assets/{enc}",
        "asset page (events before a deep seq)": f"/assets/{enc}?before={deep}",
        "lineage hop (JSON)": f"/api/lineage?uri={enc}",
        "assets API (100)": "/api/assets?limit=100",
    }
    out: dict[str, Any] = {
        "assets": assets,
        "asset_events": events,
        "dags": 50,
        "tasks": 500,
        "fill_seconds": round(filled_s, 1),
        "pages": {},
    }
    engine = Engine(db, dags=make_dags(assets), sensors=False, shutdown_grace=1)
    async with engine, anyio.create_task_group() as tg:
        port = await tg.start(functools.partial(serve, engine, "127.0.0.1", 0, "bench"))
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for name, path in pages.items():
                await timed(http, base + path, 2)  # warm: templates, SQLite page cache
                out["pages"][name] = {"path": path, **await timed(http, base + path, repeat)}
        tg.cancel_scope.cancel()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catalog", description=__doc__)
    parser.add_argument("--assets", type=int, default=5000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = anyio.run(measure, args.assets, args.events, args.repeat, Path(folder))
    width = max(len(name) for name in result["pages"])
    print(
        f"{result['assets']:,} assets, {result['asset_events']:,} asset events "
        f"(filled in {result['fill_seconds']} s), {result['dags']} DAGs / {result['tasks']} tasks"
    )
    print(f"{'page':<{width}}  median ms    p95 ms    max ms     bytes")
    for name, r in result["pages"].items():
        print(
            f"{name:<{width}}  {r['median_ms']:>9}  {r['p95_ms']:>8}  {r['max_ms']:>8}"
            f"  {r['bytes']:>8,}"
        )
    if args.save:
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
