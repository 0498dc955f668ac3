"""The Dask cluster the ``dask`` workload's rows share (run by the driver in the ``dask-cluster`` venv).

A ``LocalCluster`` of 2 worker processes x 1 thread on loopback, its scheduler in this process. The
workers must run both sides' tasks: Prefect's task engine (``prefect`` and ``prefect-dask`` are in
this venv, pinned like the Prefect side's) and Podium's ``run_job`` (Podium's dependencies are in
this venv, and the repo root is put on the workers' ``PYTHONPATH``, so they import the engine and
the benchmark's task module from this checkout, as a real cluster imports the tasks' code).

Prints one line, ``BENCH-CLUSTER {"address": ..., "versions": {...}, "workers": 2}``, once every
worker is up, then serves until its standard input closes (the driver closes it to stop it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKERS = 2
THREADS_PER_WORKER = 1


def main() -> int:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    sys.path.insert(0, str(REPO_ROOT))
    from distributed import LocalCluster

    # Prefect's task engine on the workers keeps its profile under PREFECT_HOME: never ~/.prefect
    with tempfile.TemporaryDirectory(prefix="bench-prefect-workers-") as prefect_home:
        os.environ["PREFECT_HOME"] = prefect_home
        with LocalCluster(
            processes=True,
            n_workers=WORKERS,
            threads_per_worker=THREADS_PER_WORKER,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster:
            serve(cluster)
    return 0


def serve(cluster: Any) -> None:
    """Say where the scheduler is once every worker is up, then serve until stdin closes."""
    cluster.wait_for_workers(WORKERS, timeout=120)
    versions = {
        dist: metadata.version(dist)
        for dist in ("distributed", "dask", "cloudpickle", "msgpack", "prefect", "prefect-dask")
    }
    line = {
        "address": cluster.scheduler_address,
        "versions": versions,
        "workers": WORKERS,
        "threads_per_worker": THREADS_PER_WORKER,
        "pid": os.getpid(),
    }
    print("BENCH-CLUSTER " + json.dumps(line), flush=True)
    sys.stdin.read()  # until the driver closes our stdin


if __name__ == "__main__":
    sys.exit(main())
