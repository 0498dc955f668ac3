"""DBOS Transact: the workloads as async workflows of steps (run inside the DBOS venv).

System database: SQLite (``system_database_url="sqlite:///<fresh temp dir>/dbos.sqlite"``), created
and migrated by ``DBOS.launch()`` before the warm-up (untimed). DBOS checkpoints every workflow's
start (inputs) and end (output) and every step's output in it before the workflow moves on, so a
restarted process resumes each unfinished workflow from its last completed step.

- W1: one workflow: step ``root`` -> ``asyncio.gather`` of n ``leaf`` steps -> step ``join``.
- W2: one workflow awaiting n ``step`` steps one after another.
- W3-seq / W3-conc: a workflow ``etl`` (``extract_crm`` and ``extract_db`` gathered -> ``clean`` ->
  ``enrich`` -> ``load``, all steps) called n times in a row / started n times at once
  (``DBOS.start_workflow_async`` then all handles awaited).
- W4: one workflow enqueues n ``sleeper`` workflows (each a single step sleeping 0.1 s) on a DBOS
  queue registered with ``worker_concurrency=100`` and awaits all their handles: the queue is the
  limit. The queue's ``polling_interval_sec`` (how often this worker looks for work it may dequeue;
  default 1 s) is set with the variant: ``default`` = 1 s, ``poll10ms`` = 0.01 s.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

import _common as c
from dbos import DBOS, DBOSConfig

_TMP = tempfile.mkdtemp(prefix="bench-dbos-")


@DBOS.step()
async def root() -> int:
    return c.root_body()


@DBOS.step()
async def leaf(x: int) -> int:
    return c.leaf_body(x)


@DBOS.step()
async def join(xs: list[int]) -> list[int]:
    return c.join_body(xs)


@DBOS.step()
async def first() -> int:
    return c.first_body()


@DBOS.step()
async def step(x: int) -> int:
    return c.step_body(x)


@DBOS.step()
async def extract_crm() -> list[dict[str, Any]]:
    return c.extract_crm_body()


@DBOS.step()
async def extract_db() -> list[dict[str, Any]]:
    return c.extract_db_body()


@DBOS.step()
async def clean(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return c.clean_body(crm, db)


@DBOS.step()
async def enrich(ids: list[int]) -> list[dict[str, Any]]:
    return c.enrich_body(ids)


@DBOS.step()
async def load(rows: list[dict[str, Any]]) -> int:
    return c.load_body(rows)


@DBOS.step()
async def nap() -> None:
    c.PROBE.enter()
    try:
        await asyncio.sleep(c.W4_SLEEP_S)
    finally:
        c.PROBE.exit()


@DBOS.workflow()
async def fan_out(n: int) -> list[int]:
    r = await root()
    xs = await asyncio.gather(*(leaf(r) for _ in range(n)))
    return await join(list(xs))


@DBOS.workflow()
async def chain(n: int) -> int:
    x = await first()
    for _ in range(n - 1):
        x = await step(x)
    return x


@DBOS.workflow()
async def etl() -> int:
    crm, db = await asyncio.gather(extract_crm(), extract_db())
    return await load(await enrich(await clean(crm, db)))


@DBOS.workflow()
async def sleeper() -> None:
    await nap()


@DBOS.workflow()
async def sleepers(n: int) -> None:
    queue = await DBOS.retrieve_queue_async("bench-w4")
    handles = [await queue.enqueue_async(sleeper) for _ in range(n)]
    for h in handles:
        await h.get_result()


async def run(workload: str, n: int) -> Any:
    if workload == "W1":
        return await fan_out(n)
    if workload == "W2":
        return await chain(n)
    if workload == "W3-seq":
        return [await etl() for _ in range(n)]
    if workload == "W3-conc":
        handles = [await DBOS.start_workflow_async(etl) for _ in range(n)]
        return [await h.get_result() for h in handles]
    if workload == "W4":
        return await sleepers(n)
    raise SystemExit(f"dbos: workload {workload} not supported")


async def main(args: c.Args) -> int:
    config: DBOSConfig = {
        "name": "podium-bench",
        "system_database_url": f"sqlite:///{os.path.join(_TMP, 'dbos.sqlite')}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    poll = 0.01 if args.variant == "poll10ms" else 1.0
    await DBOS.register_queue_async(
        "bench-w4", worker_concurrency=c.W4_LIMIT, polling_interval_sec=poll
    )
    try:
        return await c.ameasure(
            "dbos",
            "dbos",
            args,
            run,
            notes={"system_db": "sqlite", "queue_polling_interval_s": poll},
        )
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(c.parse_args(variants=("default", "poll10ms")))))
