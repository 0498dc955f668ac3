"""The runners example (examples/runners/), end to end: a real engine, a real pool of worker processes
for the CPU-bound step, and a real virtualenv built by uv from PyPI, in a cache folder this test owns,
for the legacy step.

Expected figures are computed here straight from the generated log files, not with the pipeline's
code, and the legacy step's ordering is checked against the engine's own (newer) packaging.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import packaging
import pytest
from packaging.version import InvalidVersion, Version
from rich.console import Console

from engine import RunState, TaskState
from examples.runners.__main__ import print_summary, run_once
from examples.runners.pipeline import LATENCY_BOUNDS_MS

pytestmark = pytest.mark.slow  # builds a virtualenv

DAY = "2026-11-25"
LINES_PER_HOUR = 600


def bound_of(ms: int) -> int | None:
    return next((b for b in LATENCY_BOUNDS_MS if ms <= b), None)


def expected_from_files(folder: Path) -> dict[str, Any]:
    """The day's figures, read from the gzip files with a parser of the test's own."""
    files = sorted(folder.glob("access-*.log.gz"))
    totals: Counter[str] = Counter()
    latencies: defaultdict[str, list[int]] = defaultdict(list)
    errors: Counter[str] = Counter()
    builds: defaultdict[str, Counter[str]] = defaultdict(Counter)
    errors_per_file: dict[str, int] = {}
    minutes: Counter[str] = Counter()
    checksums = {}
    for path in files:
        raw = path.read_bytes()
        checksums[path.name] = hashlib.sha256(raw).hexdigest()
        errors_per_file[path.name] = 0
        for line in gzip.decompress(raw).decode("utf-8").splitlines():
            totals["lines"] += 1
            parts = line.split('"')
            if len(parts) != 7:  # a line the shipper cut short lost at least its last quote
                totals["malformed"] += 1
                continue
            head, request, middle, _referer, _, agent, seconds = parts
            method, target, _ = request.split(" ")
            status, size = middle.split()
            segments = target.partition("?")[0].split("/")
            endpoint = f"{method} " + "/".join("{id}" if s.isdigit() else s for s in segments)
            latencies[endpoint].append(round(float(seconds) * 1000))
            totals["requests"] += 1
            totals["bytes"] += int(size)
            if status.startswith("5"):
                errors[endpoint] += 1
                errors_per_file[path.name] += 1
            minutes[head.split("[")[1][12:17]] += 1  # 25/Nov/2026:HH:MM:SS
            if agent.startswith("acme-"):
                app, _, version = agent.split(" ")[0].removeprefix("acme-").partition("/")
                builds[app][version] += 1
    endpoints = []
    for endpoint, values in latencies.items():
        values.sort()
        p95 = values[math.ceil(0.95 * len(values)) - 1]
        endpoints.append(
            {"endpoint": endpoint, "requests": len(values), "errors": errors[endpoint],
             "p95_ms": bound_of(p95)}
        )  # fmt: skip
    endpoints.sort(key=lambda e: (-e["requests"], e["endpoint"]))
    worst = min(errors_per_file, key=lambda f: (-errors_per_file[f], f))
    busiest = min(minutes, key=lambda m: (-minutes[m], m))
    return {
        **totals,
        "files": [p.name for p in files],
        "checksums": checksums,
        "endpoints": endpoints,
        "worst_hour": {"file": worst, "errors": errors_per_file[worst]},
        "busiest_minute": [busiest, minutes[busiest]],
        "errors": sum(errors.values()),
        "builds": builds,
    }


def not_pep440(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return True
    return False


async def test_the_runners_example_runs_each_step_where_it_belongs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venvs = tmp_path / "venvs"  # the virtualenv is built here, whatever the machine's cache holds
    monkeypatch.setenv("PODIUM_VENV_CACHE", str(venvs))
    run = await run_once(
        day=DAY, data_dir=tmp_path / "data", output_dir=tmp_path / "out",
        lines_per_hour=LINES_PER_HOUR,
    )  # fmt: skip
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items() if i.error}
    assert {t.state for t in run.tasks.values()} == {TaskState.SUCCESS}
    expected = expected_from_files(tmp_path / "data" / DAY)
    assert len(expected["files"]) == 24 and expected["lines"] == 24 * LINES_PER_HOUR

    # the CPU-bound step: 24 instances, in worker processes, none of them this one
    chunks = [run.tasks[f"parse_chunk[{i}]"] for i in range(24)]
    assert [c.try_number for c in chunks] == [1] * 24
    assert [c.result["file"] for c in chunks] == expected["files"]
    assert {c.result["file"]: c.result["sha256"] for c in chunks} == expected["checksums"]
    workers = {c.result["pid"] for c in chunks}
    assert os.getpid() not in workers and 1 <= len(workers) <= 2  # Process(workers=2)

    # the legacy step: packaging 21.3 in a virtualenv of the test's cache, in a process of its own
    clients = run.tasks["client_versions"].result
    assert clients["packaging"] == "21.3" != packaging.__version__
    assert Path(clients["prefix"]).parent == venvs
    assert clients["pid"] != os.getpid() and clients["pid"] not in workers
    assert set(clients["platforms"]) == set(expected["builds"]) == {"android", "ios", "web"}
    for app, seen in expected["builds"].items():
        got = clients["platforms"][app]
        legacy = {v for v in seen if not_pep440(v)}  # what the engine's packaging refuses
        assert set(got["legacy"]) == legacy
        assert got["legacy_requests"] == sum(seen[v] for v in legacy)
        assert got["requests"] == sum(seen.values())
        ladder = got["ladder"]
        assert dict(map(tuple, ladder)) == dict(seen)
        # packaging 21 put the legacy builds first, then the rest in version order
        assert {v for v, _ in ladder[: len(legacy)]} == legacy
        rest = [v for v, _ in ladder[len(legacy) :]]
        assert rest == sorted(rest, key=Version)
    assert expected["builds"]["android"].keys() >= {"3.5.2-hotfix_4", "nightly-20261124"}
    assert clients["platforms"]["android"]["legacy"]  # the data holds legacy builds to rank

    # the last step, back on the engine: the day's figures
    report = run.tasks["report"].result
    assert report["pid"] == os.getpid()
    assert (report["lines"], report["malformed"], report["requests"], report["bytes"]) == (
        expected["lines"], expected["malformed"], expected["requests"], expected["bytes"],
    )  # fmt: skip
    assert expected["malformed"] > 0  # the sample data has cut lines, and they were skipped
    assert report["status"]["5xx"] == expected["errors"]
    assert report["endpoints"] == expected["endpoints"]
    assert report["worst_hour"] == expected["worst_hour"]
    assert report["worst_hour"]["file"] == f"access-{DAY}T14.log.gz"  # the payments incident
    assert report["busiest_minute"] == expected["busiest_minute"]
    assert report["oldest_builds"]["android"] in {"3.5.2-hotfix_4", "nightly-20261124"}

    out = io.StringIO()
    print_summary(Console(file=out, width=200), run)
    printed = out.getvalue()
    for row in (  # the table's columns are padded: a row is its cells, in order
        ("parse_chunk[0..23]", "Process(workers=2)"),
        ("client_versions", "Virtualenv(packaging==21.3)", f"pid {clients['pid']}, packaging 21.3"),
        ("report", "Local()", f"the engine, pid {os.getpid()}"),
    ):
        assert re.search(r"\s+│ ".join(map(re.escape, row)), printed), (row, printed)
    assert (
        f"client_versions ran with packaging 21.3 on Python {clients['python']} "
        f"in {clients['prefix']}\n"
    ) in printed
    assert f"the engine has packaging {packaging.__version__}, where " in printed
