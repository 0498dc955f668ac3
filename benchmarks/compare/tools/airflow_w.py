"""Apache Airflow 3: the workloads as TaskFlow DAGs run with ``dag.test()`` (inside the Airflow venv).

Metadata database: a fresh SQLite file in a temporary ``AIRFLOW_HOME``, created with ``airflow db
migrate`` before anything is timed. ``dag.test()`` is Airflow's in-process runner: no scheduler, no
executor; it creates a DagRun, then loops: ask the DagRun which task instances are schedulable, run
each one in this process (through the in-process Execution API: state to QUEUED/RUNNING/SUCCESS,
the return value pushed to XCom in the metadata DB), until the run is finished. Every state change
and XCom is committed to the metadata DB. Tasks run **one at a time**.

- W1: ``root`` -> n ``leaf`` tasks (``leaf.override(task_id=...)``) -> ``join`` over all n.
- W2: a chain of n ``step`` tasks.
- W3-seq: the 5-task ETL DAG, ``dag.test()`` called n times in a row (n DagRuns).
- W3-conc and W4 are not expressible with ``dag.test()``: it runs one DagRun, one task at a time;
  Airflow's limits (pools, ``max_active_tasks``, ``parallelism``) are applied by the scheduler and
  executor, which ``dag.test()`` bypasses.
Tasks are plain sync functions (Airflow's usual TaskFlow idiom); results travel through XCom.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
DAGS_FILE = """\
# Written by benchmarks/compare/tools/airflow_w.py: the benchmark DAGs, for the DAG bundle.
import sys
sys.path.insert(0, {tools!r})
import airflow_w
globals().update(airflow_w.dags_for({workload!r}, {sizes!r}))
"""


def prepare_home(workload: str, sizes: list[int]) -> None:
    """A fresh AIRFLOW_HOME: settings, a dags folder defining this workload's DAGs, a migrated DB.

    ``dag.test()`` only runs a DAG that its DAG bundle (the dags folder) defines and that is
    serialized to the metadata DB, so the DAGs live in a file of the dags folder too.
    """
    home = Path(tempfile.mkdtemp(prefix="bench-airflow-home-"))
    (home / "dags").mkdir()
    (home / "dags" / "bench_dags.py").write_text(
        DAGS_FILE.format(tools=str(TOOLS_DIR), workload=workload, sizes=sizes)
    )
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    # The metadata DB (untimed), in a child so that this process imports Airflow with these settings.
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    sys.path.insert(0, str(TOOLS_DIR))
    import _common

    _ARGS = _common.parse_args()
    prepare_home(_ARGS.workload, [_ARGS.warmup_n, _ARGS.n])

import datetime as dt  # noqa: E402

import _common as c  # noqa: E402
from airflow.sdk import DAG, task  # noqa: E402

SINK: list[Any] = []  # sink tasks record their result here too (they run in this process)


@task
def root() -> int:
    return c.root_body()


@task
def leaf(x: int) -> int:
    return c.leaf_body(x)


@task
def join(xs: list[int]) -> list[int]:
    out = c.join_body(list(xs))
    SINK.append(out)
    return out


@task
def first() -> int:
    return c.first_body()


@task
def step(x: int, last: bool = False) -> int:
    out = c.step_body(x)
    if last:
        SINK.append(out)
    return out


@task
def extract_crm() -> list[dict[str, Any]]:
    return c.extract_crm_body()


@task
def extract_db() -> list[dict[str, Any]]:
    return c.extract_db_body()


@task
def clean(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return c.clean_body(crm, db)


@task
def enrich(ids: list[int]) -> list[dict[str, Any]]:
    return c.enrich_body(ids)


@task
def load(rows: list[dict[str, Any]]) -> int:
    out = c.load_body(rows)
    SINK.append(out)
    return out


START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fan_out_dag(n: int) -> DAG:
    with DAG(f"fan_out_{n}", schedule=None, start_date=START, catchup=False) as d:
        r = root()
        join([leaf.override(task_id=f"leaf_{i}")(r) for i in range(n)])
    return d


def chain_dag(n: int) -> DAG:
    with DAG(f"chain_{n}", schedule=None, start_date=START, catchup=False) as d:
        x = first()
        for i in range(1, n):
            x = step.override(task_id=f"step_{i}")(x, last=i == n - 1)
    return d


def etl_dag() -> DAG:
    with DAG("etl", schedule=None, start_date=START, catchup=False) as d:
        load(enrich(clean(extract_crm(), extract_db())))
    return d


def dags_for(workload: str, sizes: list[int]) -> dict[str, DAG]:
    """The DAGs one measurement uses, by id (for the dags-folder file and for the runner)."""
    dags = []
    for n in sorted(set(sizes)):
        if workload == "W1":
            dags.append(fan_out_dag(n))
        elif workload == "W2":
            dags.append(chain_dag(n))
    if workload == "W3-seq":
        dags.append(etl_dag())
    return {d.dag_id: d for d in dags}


class Runner:
    def __init__(self, workload: str, sizes: list[int]) -> None:
        self.all = dags_for(workload, sizes)  # built before anything is timed
        self.dags = {n: self.all.get(f"fan_out_{n}") or self.all.get(f"chain_{n}") for n in sizes}

    @staticmethod
    def test(d: DAG) -> Any:
        SINK.clear()
        dr = d.test()
        if str(dr.state) != "success":
            raise RuntimeError(f"{d.dag_id}: DagRun ended {dr.state}")
        return SINK[-1] if SINK else None

    def __call__(self, workload: str, n: int) -> Any:
        if workload in ("W1", "W2"):
            return self.test(self.dags[n])
        if workload == "W3-seq":
            return [self.test(self.all["etl"]) for _ in range(n)]
        raise SystemExit(f"airflow: workload {workload} not supported")


def main(args: c.Args) -> int:
    runner = Runner(args.workload, [args.warmup_n, args.n])
    return c.measure(
        "airflow",
        "apache-airflow",
        args,
        runner,
        notes={"runner": "dag.test()", "metadata_db": "sqlite"},
    )


if __name__ == "__main__":
    sys.exit(main(_ARGS))
