"""A day of API-gateway access logs, each step where it fits.

    list_chunks ── parse_chunk[0..23] ──┬── client_versions ──┐
       Local()     Process(workers=2)   │   Virtualenv(...)   ├── report
                                        └─────────────────────┘  Local()

- ``list_chunks`` (``Local()``: a thread of the engine) lists the day's 24 hourly ``.log.gz``
  files, writing a sample day first if there is none (``sample_logs.py``).
- ``parse_chunk`` is the CPU-bound step: checksum, decompress, parse every line with a regular
  expression, normalise the endpoints and aggregate (requests, 5xx, bytes, a latency histogram per
  endpoint, app builds, the busiest minute): pure Python that would hold the engine's GIL. It runs
  on ``Process(workers=2)``, mapped over the files, so both cores work on it, one file per try.
- ``client_versions`` is a legacy step (``legacy_clients.py``) that needs packaging 21's
  ``LegacyVersion``: it runs in its own virtualenv with ``packaging==21.3``, built by uv.
- ``report`` (``Local()``) merges the 24 results into the day's figures.

Every result says which process computed it (``pid``), so the demo can show where each step ran.

This file is also a DAG file: ``python -m engine run examples/runners/pipeline.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from bisect import bisect_left
from collections import Counter
from pathlib import Path
from typing import Any

from engine import Context, Process, Virtualenv, dag, task

from . import legacy_clients, sample_logs

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "output" / "data"

CPU = Process(workers=2)
LEGACY = Virtualenv(requirements=["packaging==21.3"])

LINE = re.compile(
    r"\S+ \S+ \S+ \[[^:\]]+:(?P<hour>\d\d):(?P<minute>\d\d):\d\d [^\]]*\] "
    r'"(?P<method>[A-Z]+) (?P<path>[^ "]+)[^"]*" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"[^"]*" "(?P<agent>[^"]*)" (?P<seconds>\d+\.\d+)$'
)
ID_SEGMENT = re.compile(r"/\d+(?=/|$)")
APP = re.compile(r"acme-(\w+)/(\S+)")
# the upper bounds (ms) of the latency histogram's buckets, and one more bucket above the last
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)


@task
def list_chunks(ctx: Context, data_dir: str, day: str, lines_per_hour: int) -> list[str]:
    """The day's hourly log files, in hour order."""
    folder = Path(data_dir) / day
    if not any(folder.glob("access-*.log.gz")):
        sample_logs.write_sample_day(folder, day, lines_per_hour)
        ctx.log.info("wrote a sample day of %d lines an hour in %s", lines_per_hour, folder)
    return sorted(str(p) for p in folder.glob("access-*.log.gz"))


def endpoint_of(method: str, path: str) -> str:
    """``GET /api/v1/orders/{id}`` for ``GET /api/v1/orders/4711?x=1``."""
    return f"{method} {ID_SEGMENT.sub('/{id}', path.partition('?')[0])}"


@task(runner=CPU, retries=1)
def parse_chunk(path: str) -> dict[str, Any]:
    """One hourly file's figures: its checksum, lines, malformed lines, requests by status class,
    bytes sent, per endpoint its requests, 5xx and latency histogram, requests per app build and
    from other agents, and its busiest minute."""
    raw = Path(path).read_bytes()
    status: Counter[str] = Counter()
    endpoints: dict[str, dict[str, Any]] = {}
    clients: Counter[str] = Counter()
    minutes: Counter[str] = Counter()
    lines = malformed = sent = other_agents = 0
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        lines += 1
        m = LINE.match(line)
        if m is None:
            malformed += 1
            continue
        code = m["status"]
        status[f"{code[0]}xx"] += 1
        sent += int(m["bytes"]) if m["bytes"] != "-" else 0
        minutes[f"{m['hour']}:{m['minute']}"] += 1
        name = endpoint_of(m["method"], m["path"])
        stats = endpoints.get(name)
        if stats is None:
            stats = endpoints[name] = {
                "requests": 0,
                "errors": 0,
                "latency": [0] * (len(LATENCY_BOUNDS_MS) + 1),
            }
        stats["requests"] += 1
        stats["errors"] += code[0] == "5"
        stats["latency"][bisect_left(LATENCY_BOUNDS_MS, round(float(m["seconds"]) * 1000))] += 1
        app = APP.match(m["agent"])
        if app is None:
            other_agents += 1
        else:
            clients[f"{app[1]}/{app[2]}"] += 1
    busiest = min(minutes.items(), key=lambda kv: (-kv[1], kv[0]), default=("", 0))
    return {
        "file": Path(path).name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "lines": lines,
        "malformed": malformed,
        "status": dict(sorted(status.items())),
        "bytes": sent,
        "endpoints": endpoints,
        "clients": dict(clients),
        "other_agents": other_agents,
        "busiest_minute": list(busiest),
        "pid": os.getpid(),
    }


# the legacy step's function lives in a module that does not import the engine (the virtualenv
# has none); here it only becomes a task
client_versions = task(runner=LEGACY)(legacy_clients.client_versions)


def p95_bound(histogram: list[int]) -> int | None:
    """The upper bound (ms) of the bucket holding the 95th percentile; None above the last bound."""
    wanted, seen = 0.95 * sum(histogram), 0
    for bound, count in zip(LATENCY_BOUNDS_MS, histogram, strict=False):
        seen += count
        if seen >= wanted:
            return bound
    return None


@task
def report(chunks: list[dict[str, Any]], clients: dict[str, Any], day: str) -> dict[str, Any]:
    """The day's figures from the hourly ones: totals, endpoints by traffic with their 5xx and
    p95, the worst hour for 5xx, the busiest minute, and the apps' oldest builds in use."""
    status: Counter[str] = Counter()
    merged: dict[str, dict[str, Any]] = {}
    for chunk in chunks:
        status.update(chunk["status"])
        for name, stats in chunk["endpoints"].items():
            into = merged.setdefault(
                name, {"requests": 0, "errors": 0, "latency": [0] * len(stats["latency"])}
            )
            into["requests"] += stats["requests"]
            into["errors"] += stats["errors"]
            into["latency"] = [
                a + b for a, b in zip(into["latency"], stats["latency"], strict=True)
            ]
    endpoints = [
        {"endpoint": name, "requests": s["requests"], "errors": s["errors"],
         "p95_ms": p95_bound(s["latency"])}
        for name, s in sorted(merged.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))
    ]  # fmt: skip
    # ties go to the earlier hour, as within a file they go to the earlier minute
    worst = min(chunks, key=lambda c: (-c["status"].get("5xx", 0), c["file"]))
    busiest = min(chunks, key=lambda c: (-c["busiest_minute"][1], c["busiest_minute"][0]))
    return {
        "day": day,
        "files": len(chunks),
        "lines": sum(c["lines"] for c in chunks),
        "malformed": sum(c["malformed"] for c in chunks),
        "requests": sum(status.values()),
        "status": dict(sorted(status.items())),
        "bytes": sum(c["bytes"] for c in chunks),
        "endpoints": endpoints,
        "worst_hour": {"file": worst["file"], "errors": worst["status"].get("5xx", 0)},
        "busiest_minute": busiest["busiest_minute"],
        "oldest_builds": {
            name: p["ladder"][0][0] for name, p in clients["platforms"].items() if p["ladder"]
        },
        "pid": os.getpid(),
    }


@dag(description="A day of access logs: parsed in processes, one step in a legacy virtualenv",
     tags=["example"])  # fmt: skip
def access_logs(
    day: str = "2026-11-25", data_dir: str = str(DATA_DIR), lines_per_hour: int = 5000
) -> None:
    chunks = parse_chunk.map(list_chunks(data_dir, day, lines_per_hour))
    report(chunks, client_versions(chunks), day)
