"""Prefect 3: the workloads as async tasks in async flows (run inside the Prefect venv).

Server: ``prefect.testing.utilities.prefect_test_harness()``: a temporary Prefect API server in a
subprocess with a fresh SQLite database in a temporary directory (started before the warm-up,
untimed). Flows and tasks report to it over HTTP; task-run states travel as events.

- W1: ``root`` -> ``asyncio.gather`` of n ``leaf`` tasks -> ``join``, in one async flow.
- W2: n ``step`` tasks awaited one after another in one flow.
- W3-seq / W3-conc: a flow ``etl`` (``extract_crm`` and ``extract_db`` gathered -> ``clean`` ->
  ``enrich`` -> ``load``) called n times in a row / n times at once with ``asyncio.gather``
  (each call is its own flow run).
- W4, variant ``taskrunner`` (the default): n ``sleeper`` tasks submitted with ``.submit()`` to the
  flow's ``ThreadPoolTaskRunner(max_workers=100)``: the task runner is the limit (each async task
  runs on an event loop in one of the 100 worker threads).
- W4, variant ``gcl``: n ``sleeper`` tasks gathered in one flow, each acquiring one slot of a Prefect
  **global concurrency limit** of 100 (created on the server; ``prefect.concurrency.asyncio
  .concurrency("bench-w4")``, a lease per acquisition through the API).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

# Prefect keeps its profile and local storage under PREFECT_HOME: never the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-home-"))

import _common as c
from prefect import flow, task
from prefect.concurrency.asyncio import concurrency
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness

W4_LIMIT_NAME = "bench-w4"


@task
async def root() -> int:
    return c.root_body()


@task
async def leaf(x: int) -> int:
    return c.leaf_body(x)


@task
async def join(xs: list[int]) -> list[int]:
    return c.join_body(xs)


@task
async def first() -> int:
    return c.first_body()


@task
async def step(x: int) -> int:
    return c.step_body(x)


@task
async def extract_crm() -> list[dict[str, Any]]:
    return c.extract_crm_body()


@task
async def extract_db() -> list[dict[str, Any]]:
    return c.extract_db_body()


@task
async def clean(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return c.clean_body(crm, db)


@task
async def enrich(ids: list[int]) -> list[dict[str, Any]]:
    return c.enrich_body(ids)


@task
async def load(rows: list[dict[str, Any]]) -> int:
    return c.load_body(rows)


async def _sleep() -> None:
    c.PROBE.enter()
    try:
        await asyncio.sleep(c.W4_SLEEP_S)
    finally:
        c.PROBE.exit()


@task
async def sleeper() -> None:
    await _sleep()


@task
async def sleeper_gcl() -> None:
    async with concurrency(W4_LIMIT_NAME, occupy=1):
        await _sleep()


@flow
async def fan_out(n: int) -> list[int]:
    r = await root()
    xs = await asyncio.gather(*(leaf(r) for _ in range(n)))
    return await join(list(xs))


@flow
async def chain(n: int) -> int:
    x = await first()
    for _ in range(n - 1):
        x = await step(x)
    return x


@flow
async def etl() -> int:
    crm, db = await asyncio.gather(extract_crm(), extract_db())
    return await load(await enrich(await clean(crm, db)))


@flow(task_runner=ThreadPoolTaskRunner(max_workers=c.W4_LIMIT))
def sleepers_pool(n: int) -> None:
    futures = [sleeper.submit() for _ in range(n)]
    for f in futures:
        f.result()


@flow
async def sleepers_gcl(n: int) -> None:
    await asyncio.gather(*(sleeper_gcl() for _ in range(n)))


VARIANT = "taskrunner"


async def run(workload: str, n: int) -> Any:
    if workload == "W1":
        return await fan_out(n)
    if workload == "W2":
        return await chain(n)
    if workload == "W3-seq":
        return [await etl() for _ in range(n)]
    if workload == "W3-conc":
        return list(await asyncio.gather(*(etl() for _ in range(n))))
    if workload == "W4" and VARIANT == "gcl":
        return await sleepers_gcl(n)
    if workload == "W4":
        return await asyncio.to_thread(sleepers_pool, n)  # a sync flow: it blocks while it waits
    raise SystemExit(f"prefect: workload {workload} not supported")


async def create_w4_limit() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=W4_LIMIT_NAME, limit=c.W4_LIMIT)
        )


async def main(args: c.Args) -> int:
    global VARIANT
    VARIANT = args.variant
    if args.workload == "W4" and args.variant == "gcl":
        await create_w4_limit()
    return await c.ameasure(
        "prefect",
        "prefect",
        args,
        run,
        notes={"server": "prefect_test_harness (subprocess API server, temporary SQLite DB)"},
    )


if __name__ == "__main__":
    arguments = c.parse_args(variants=("taskrunner", "gcl"))
    with prefect_test_harness(server_startup_timeout=120):
        code = asyncio.run(main(arguments))
    sys.exit(code)
