"""The ``dask`` workload of ``python -m benchmarks.compare``: its rows share one Dask cluster.

For each repetition (a **round**) the driver starts a fresh ``LocalCluster`` (2 worker processes x 1
thread, loopback; ``tools/dask_cluster.py`` in the ``dask-cluster`` venv, whose workers can run both
Prefect's and Podium's tasks), then runs every selected row once against it, each in a fresh process
of its own venv with ``--scheduler ADDRESS``: Dask's own ``client.submit`` (the floor), Podium's
``Dask(address=...)`` runner and Prefect's ``DaskTaskRunner``. The order of the rows rotates from one
round to the next, so a drift in the machine's load does not always hit the same row. A row's figure
is the median over rounds; its overhead is its per-task figure minus the floor's, both medians of
the same rounds.

The clients and the cluster must speak the same ``distributed``: the pins of the three venvs make
them equal, and the driver checks it before the first round (a mismatch fails the cells, naming the
versions).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import venvs
from .specs import DASK_WORKLOAD, Row

TOOLS_DIR = Path(__file__).resolve().parent / "tools"
CLUSTER_PREFIX = "BENCH-CLUSTER "
FLOOR_ROW = "dask-raw"
WIRE_DISTS = ("distributed", "dask", "cloudpickle", "msgpack", "tornado")  # must match everywhere

MeasureOnce = Callable[[Row, Path, str, int, Sequence[str]], dict[str, Any]]
Summarize = Callable[[Row, str, int, list[dict[str, Any]]], dict[str, Any]]


class Cluster:
    """``tools/dask_cluster.py`` in its venv: started on enter (once every worker is up), stopped
    on exit (its standard input closed; killed if it does not stop in time)."""

    def __init__(self, python: Path, log: Path, timeout: float = 180.0) -> None:
        self.python = python
        self.log = log
        self.timeout = timeout
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        with self.log.open("a") as err:
            self._proc = subprocess.Popen(
                [str(self.python), str(TOOLS_DIR / "dask_cluster.py")],
                cwd=venvs.REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        try:
            self.info = self._ready_line()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _ready_line(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(timeout=left):
                    continue
                line = self._proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the Dask cluster exited before it was up; see {self.log}")
                if line.startswith(CLUSTER_PREFIX):
                    info: dict[str, Any] = json.loads(line[len(CLUSTER_PREFIX) :])
                    return info
        raise RuntimeError(
            f"the Dask cluster was not up after {self.timeout:.0f} s; see {self.log}"
        )

    @property
    def address(self) -> str:
        return str(self.info["address"])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def wire_versions(pythons: dict[str, Path]) -> dict[str, dict[str, str | None]]:
    """Per venv, the versions of the packages a client and the cluster must share."""
    return {
        name: {dist: venvs.installed_version(python, dist) for dist in WIRE_DISTS}
        for name, python in pythons.items()
    }


def mismatch(versions: dict[str, dict[str, str | None]]) -> str | None:
    """None if every venv has the same versions of WIRE_DISTS, else what differs."""
    differing = [
        f"{dist}: " + ", ".join(f"{name} {v[dist]}" for name, v in versions.items())
        for dist in WIRE_DISTS
        if len({v[dist] for v in versions.values()}) > 1
    ]
    return "; ".join(differing) or None


def measure(
    rows: list[Row],
    pythons: dict[str, Path],
    cluster_python: Path,
    *,
    reps: int,
    quick: bool,
    log_dir: Path,
    measure_once: MeasureOnce,
    summarize: Summarize,
    log: Callable[..., None],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``reps`` rounds of ``rows`` (keyed by row in ``pythons``) on a fresh shared cluster each;
    the cells (median per row, and its overhead over the floor) and what the rounds ran on."""
    versions = wire_versions({"dask-cluster": cluster_python, **pythons})
    sizes = {row.key: row.size(DASK_WORKLOAD, quick) for row in rows}
    bad = mismatch(versions)
    if bad:
        error = f"the clients and the cluster need the same Dask packages; they differ: {bad}"
        cells = [
            {"row": r.key, "workload": DASK_WORKLOAD, "n": sizes[r.key], "error": error}
            for r in rows
        ]
        return cells, {"versions": versions}
    samples: dict[str, list[dict[str, Any]]] = {row.key: [] for row in rows}
    rounds: list[dict[str, Any]] = []
    for i in range(reps):
        order = rows[i % len(rows) :] + rows[: i % len(rows)]
        with Cluster(cluster_python, log_dir / f"dask-cluster-{i}.log") as cluster:
            log(f"  dask round {i + 1}/{reps} on {cluster.address}:", end="")
            for row in order:
                args = ["--scheduler", cluster.address]
                s = measure_once(row, pythons[row.key], DASK_WORKLOAD, sizes[row.key], args)
                samples[row.key].append(s)
                log(f" {row.key} x" if "error" in s else f" {row.key} {s['wall_s']:.3f}s", end="")
            log("")
            rounds.append({"order": [r.key for r in order], **cluster.info})
    cells = [summarize(row, DASK_WORKLOAD, sizes[row.key], samples[row.key]) for row in rows]
    floor = next((c for c in cells if c["row"] == FLOOR_ROW and "median_s" in c), None)
    for cell in cells:
        if floor is not None and "median_s" in cell and cell is not floor:
            cell["over_floor_us_per_task"] = cell["us_per_task"] - floor["us_per_task"]
            cell["x_floor"] = cell["us_per_task"] / floor["us_per_task"]
    return cells, {"versions": versions, "rounds": rounds}
