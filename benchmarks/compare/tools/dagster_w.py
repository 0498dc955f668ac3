"""Dagster: the workloads as jobs of ops, run with ``execute_in_process`` (inside the Dagster venv).

Variants (the instance that records the run, its step events and logs):
- ``memory``: ``DagsterInstance.ephemeral()``, what ``execute_in_process()`` uses by default:
  in-memory run and event-log storage, nothing on disk.
- ``sqlite``: ``DagsterInstance.local_temp()`` on a fresh temporary directory: SQLite run storage,
  SQLite event-log storage (Dagster's default local setup), written while the run executes.
Both use the default ``mem_io_manager`` of ``execute_in_process`` (op outputs stay in memory).

``execute_in_process`` runs the in-process executor: ops run one at a time in this process (plain
sync ops, Dagster's usual idiom). The jobs are built once, before the warm-up (untimed); the timed
span is the ``execute_in_process`` call(s), execution-plan building included.

- W1: ``root`` -> n aliased ``leaf`` ops (``leaf_0``...) -> ``join`` (fan-in of all n outputs).
- W2: a chain of n aliased ``step`` ops.
- W3-seq: the 5-op ETL job executed n times in a row.
- W3-conc and W4 are not expressible here: ``execute_in_process`` is blocking and serial, and
  Dagster's limits (``max_concurrent``, tag concurrency limits, op pools) apply to the multiprocess
  executor or to runs launched through a daemon/run queue, i.e. one process per op or per run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

_HOME = tempfile.mkdtemp(prefix="bench-dagster-home-")
os.environ.setdefault("DAGSTER_HOME", _HOME)
with open(os.path.join(_HOME, "dagster.yaml"), "w") as fh:
    fh.write("telemetry:\n  enabled: false\n")

import _common as c  # noqa: E402
from dagster import DagsterInstance, In, Nothing, graph, job, op  # noqa: E402, F401


@op
def root() -> int:
    return c.root_body()


@op
def leaf(x: int) -> int:
    return c.leaf_body(x)


@op
def join(xs: list[int]) -> list[int]:
    return c.join_body(xs)


@op
def first() -> int:
    return c.first_body()


@op
def step(x: int) -> int:
    return c.step_body(x)


@op
def extract_crm() -> list[dict[str, Any]]:
    return c.extract_crm_body()


@op
def extract_db() -> list[dict[str, Any]]:
    return c.extract_db_body()


@op
def clean(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return c.clean_body(crm, db)


@op
def enrich(ids: list[int]) -> list[dict[str, Any]]:
    return c.enrich_body(ids)


@op
def load(rows: list[dict[str, Any]]) -> int:
    return c.load_body(rows)


@job
def etl() -> None:
    load(enrich(clean(extract_crm(), extract_db())))


def fan_out_job(n: int) -> Any:
    @job(name=f"fan_out_{n}")
    def fan_out() -> None:
        r = root()
        join([leaf.alias(f"leaf_{i}")(r) for i in range(n)])

    return fan_out


def chain_job(n: int) -> Any:
    @job(name=f"chain_{n}")
    def chain() -> None:
        x = first()
        for i in range(1, n):
            x = step.alias(f"step_{i}")(x)

    return chain


class Runner:
    def __init__(self, variant: str, sizes: list[int], workload: str) -> None:
        self.variant = variant
        self.jobs: dict[int, Any] = {}
        for n in sizes:  # built before anything is timed
            if workload == "W1":
                self.jobs[n] = fan_out_job(n)
            elif workload == "W2":
                self.jobs[n] = chain_job(n)
        self.instance = self._instance()

    def _instance(self) -> DagsterInstance:
        if self.variant == "memory":
            return DagsterInstance.ephemeral()
        self.tmp = tempfile.mkdtemp(prefix="bench-dagster-")
        return DagsterInstance.local_temp(self.tmp)

    def execute(self, the_job: Any, sink: str) -> Any:
        result = the_job.execute_in_process(instance=self.instance)
        if not result.success:
            raise RuntimeError(f"{the_job.name} failed")
        return result.output_for_node(sink)

    def __call__(self, workload: str, n: int) -> Any:
        if workload == "W1":
            return self.execute(self.jobs[n], "join")
        if workload == "W2":
            return self.execute(self.jobs[n], f"step_{n - 1}" if n > 1 else "first")
        if workload == "W3-seq":
            return [self.execute(etl, "load") for _ in range(n)]
        raise SystemExit(f"dagster: workload {workload} not supported")


def main() -> int:
    args = c.parse_args(variants=("memory", "sqlite"))
    runner = Runner(args.variant, [args.warmup_n, args.n], args.workload)
    try:
        return c.measure(
            "dagster",
            "dagster",
            args,
            runner,
            notes={"instance": type(runner.instance._run_storage).__name__},
        )
    finally:
        runner.instance.dispose()
        shutil.rmtree(_HOME, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
