"""Running a workload on Podium: the workload's graph as a ``@dag``, one fresh ``Engine`` per measurement.

The timed span is from the first ``trigger`` to the last ``run.wait()`` returning (the finished run read
back from the state file). Opening and closing the engine are timed separately (``open_s``/``close_s``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from engine import DAG, Engine, Run, TaskDef, dag, task
from engine.store import Durability

from .workloads import Node, Outcome, Ref, Workload


def build_dag(wl: Workload) -> DAG:
    """The workload's graph as a Podium DAG (built once per workload object, then cached on it)."""
    cached = wl.cache.get("podium_dag")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    defs: dict[Any, TaskDef[Any, Any]] = {}

    def body() -> None:
        refs: dict[str, Any] = {}
        for node in wl.nodes:
            base = defs.get(node.fn)
            if base is None:
                base = defs[node.fn] = task(node.fn)
            named = base.override(task_id=node.task_id)
            call = named.map if node.mapped else named
            refs[node.task_id] = call(*_bind(node, refs))

    body.__name__ = wl.dag_id
    built = dag(dag_id=wl.dag_id)(body)
    wl.cache["podium_dag"] = built
    return built


def _bind(node: Node, refs: dict[str, Any]) -> list[Any]:
    def sub(value: Any) -> Any:
        if isinstance(value, Ref):
            return refs[value.task_id]
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return [sub(a) for a in node.args]


async def measure(
    wl: Workload,
    db_path: str | os.PathLike[str],
    *,
    durability: Durability = "normal",
    max_tasks: int | None = None,
) -> Outcome:
    """One measurement: a fresh engine on ``db_path`` with ``max_tasks=wl.limit``, ``wl.runs`` runs."""
    the_dag = build_dag(wl)
    if wl.probe is not None:
        wl.probe.reset()
    t_open = time.perf_counter()
    eng = Engine(db_path, dags=[the_dag], max_tasks=max_tasks or wl.limit, durability=durability)
    async with eng:
        open_s = time.perf_counter() - t_open
        writer = eng.store.writer
        commits, rows = writer.commits, writer.rows_written

        async def one_run() -> Run:
            run = await eng.trigger(wl.dag_id)
            return await run.wait()

        t0 = time.perf_counter()
        if wl.mode == "concurrent":
            runs = list(await asyncio.gather(*(one_run() for _ in range(wl.runs))))
        else:
            runs = [await one_run() for _ in range(wl.runs)]
        wall = time.perf_counter() - t0
        extra: dict[str, Any] = {
            "commits": writer.commits - commits,
            "rows_written": writer.rows_written - rows,
            "open_s": open_s,
        }
        t_close = time.perf_counter()
    extra["close_s"] = time.perf_counter() - t_close
    if wl.probe is not None:
        extra["peak_live"] = wl.probe.peak
    return Outcome(
        wall=wall,
        run_states=[r.state.value for r in runs],
        sink_results=[r.tasks[wl.sink].result if wl.sink else None for r in runs],
        extra=extra,
    )
