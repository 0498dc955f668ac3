"""Dask itself, the floor of the ``dask`` workload (run with the project's venv, from the repo root).

n independent tasks ``step(x)`` (x -> x + 1, ``benchmarks/runner_tasks.py``, by reference: the
cluster's workers import it from this checkout) submitted at once with ``client.submit`` to the
scheduler at ``--scheduler``, then gathered: no orchestrator, no state. A fresh asynchronous
``distributed.Client`` per call (connecting is not timed); timed from the first submit to the
gathered results.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parents[2]
sys.path.insert(0, str(REPO_ROOT))

import _common as c  # noqa: E402

from benchmarks.runner_tasks import step  # noqa: E402


async def run_raw(address: str, n: int) -> c.Timed:
    from distributed import Client

    async with Client(address, asynchronous=True, set_as_default=False) as client:
        t0 = time.perf_counter()
        futures = [client.submit(step, i, pure=False) for i in range(n)]
        results = await client.gather(futures)
        wall = time.perf_counter() - t0
        del futures
    return c.Timed(sum(results), wall)


async def main(args: c.Args) -> int:
    assert args.scheduler is not None

    async def run(key: str, n: int) -> c.Timed:
        return await run_raw(str(args.scheduler), n)

    return await c.ameasure("dask", "distributed", args, run, notes={"client": "asynchronous"})


if __name__ == "__main__":
    sys.exit(asyncio.run(main(c.parse_args())))
