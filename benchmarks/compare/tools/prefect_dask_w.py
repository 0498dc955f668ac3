"""Prefect 3 with ``prefect-dask``'s ``DaskTaskRunner``: the ``dask`` workload (run in the
``prefect-dask`` venv).

Server: ``prefect.testing.utilities.prefect_test_harness()``, as in ``prefect_w.py`` (a temporary
API server in a subprocess on a fresh SQLite database, started before the warm-up, untimed).

One sync flow per call, ``@flow(task_runner=DaskTaskRunner(address=--scheduler))``: it submits n
tasks ``step(x)`` (x -> x + 1) with ``step.submit(x)`` and then takes ``.result()`` of each future.
The task runner connects its Dask client to the driver's cluster when the flow starts; each task run
executes Prefect's task engine on a Dask worker (the workers have Prefect: they run in the
``dask-cluster`` venv), which reports the task run's states to the server. The task is defined in
this script, so Dask receives it by value (cloudpickle), as for any task defined in a flow file.

Timed: the flow call (flow-run creation, the task runner's client, the n task runs, the flow run's
end), like the other Prefect cells; the flow body alone (first submit to last result) is recorded as
``extra.flow_body_s``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Prefect keeps its profile and local storage under PREFECT_HOME: never the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-home-"))

import _common as c
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness
from prefect_dask import DaskTaskRunner


@task
def step(x: int) -> int:
    return x + 1  # self-contained: Dask gets this function by value


def make_flow(address: str) -> Any:
    @flow(task_runner=DaskTaskRunner(address=address))
    def on_dask(n: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        futures = [step.submit(x) for x in range(n)]
        total = sum(f.result() for f in futures)
        return total, time.perf_counter() - t0

    return on_dask


def main(args: c.Args) -> int:
    assert args.scheduler is not None
    on_dask = make_flow(args.scheduler)

    def run(workload: str, n: int) -> c.Timed:
        t0 = time.perf_counter()
        total, body = on_dask(n)
        return c.Timed(total, time.perf_counter() - t0, {"flow_body_s": body})

    return c.measure(
        "prefect",
        "prefect",
        args,
        run,
        notes={
            "server": "prefect_test_harness (subprocess API server, temporary SQLite DB)",
            "task_runner": "prefect_dask.DaskTaskRunner(address=...)",
        },
    )


if __name__ == "__main__":
    arguments = c.parse_args()
    with prefect_test_harness(server_startup_timeout=120):
        code = main(arguments)
    home = Path(os.environ["PREFECT_HOME"])
    if home.name.startswith("bench-prefect-home-"):  # ours (above), not one the caller set
        shutil.rmtree(home, ignore_errors=True)
    sys.exit(code)
