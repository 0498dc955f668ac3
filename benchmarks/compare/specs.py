"""What is compared: every row of the table (a tool, or a tool in one configuration), where it runs,
which workloads it runs at which size, and what it persists. Plain data; the driver reads it.

A row's ``sizes`` maps a workload to its size (``None``: the full size of ``FULL_SIZE``), and
``skip`` maps a workload the row cannot express to the reason, shown in the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKLOADS = ("W1", "W2", "W3-seq", "W3-conc", "W4", "events", "dask")
FULL_SIZE = {
    "W1": 1000,
    "W2": 200,
    "W3-seq": 200,
    "W3-conc": 200,
    "W4": 1000,
    "events": 1000,
    "dask": 200,
}
QUICK_SIZE = {"W1": 50, "W2": 20, "W3-seq": 10, "W3-conc": 10, "W4": 100, "events": 50, "dask": 20}
# The dask workload: n trivial tasks (x -> x + 1) on the one LocalCluster the driver starts for each
# round of its rows (dask_rounds.py); only the rows below whose sizes name it run it.
DASK_WORKLOAD = "dask"

EVENTS_ONLY_PODIUM = (
    "measured for Podium only: the other tools' event triggers need more than a per-process "
    "harness (Prefect: deployment triggers served by a worker; Dagster: sensors run by the "
    "daemon; Airflow: asset watchers in the triggerer plus the scheduler). DBOS has an "
    "in-process Kafka consumer (@DBOS.kafka_consumer, confluent-kafka): a possible next row, "
    "not built here"
)


@dataclass(frozen=True)
class Venv:
    """A virtualenv under the cache dir, built from ``requirements/<name>.txt`` (``None``: the
    project's own ``.venv``, which ``make`` builds)."""

    name: str | None
    imports: str = ""  # a module imported once after installing (checks it and warms .pyc)
    dist: str = ""  # the distribution whose version the table shows


PROJECT = Venv(None)


@dataclass(frozen=True)
class Row:
    key: str  # unique, as in --tools and results.json
    label: str  # the table's tool column
    venv: Venv
    adapter: str  # benchmarks/compare/tools/<adapter>.py
    variant: str | None
    persists: str  # the durability column
    concurrency: str  # the concurrency-model column
    sizes: dict[str, int | None] = field(default_factory=dict)  # workloads run, size or full
    skip: dict[str, str] = field(default_factory=dict)  # workloads not run, and why
    timeout_s: float = 900.0  # one measurement process
    notes: tuple[str, ...] = ()
    default: bool = True  # part of a plain `python -m benchmarks.compare`

    def size(self, workload: str, quick: bool) -> int:
        full = self.sizes[workload] or FULL_SIZE[workload]
        return min(full, QUICK_SIZE[workload]) if quick else full


ALL_DAG_WORKLOADS = {"W1": None, "W2": None, "W3-seq": None, "W3-conc": None, "W4": None}
NO_EVENTS = {"events": EVENTS_ONLY_PODIUM}

PREFECT = Venv("prefect", "prefect", "prefect")
DAGSTER = Venv("dagster", "dagster", "dagster")
DBOS = Venv("dbos", "dbos", "dbos")
AIRFLOW = Venv("airflow", "airflow.sdk", "apache-airflow")
PLOT = Venv("plot", "matplotlib", "matplotlib")
PREFECT_DASK = Venv("prefect-dask", "prefect_dask", "prefect")
# The shared cluster's scheduler and workers (not a row's venv): what both sides' tasks need.
DASK_CLUSTER = Venv("dask-cluster", "prefect_dask, aiosqlite, croniter, aiokafka", "distributed")
DASK_CLUSTER_SHAPE = "one LocalCluster, 2 worker processes x 1 thread, loopback"

DAGSTER_NO_CONC = (
    "not expressible: execute_in_process() blocks and runs one run; concurrent runs need a "
    "run queue and daemon (one process per run)"
)
DAGSTER_NO_W4 = (
    "not expressible: the in-process executor runs ops one at a time (1000 x 0.1 s >= 100 s); "
    "Dagster's limits (max_concurrent, tag concurrency limits, pools) act on the multiprocess "
    "executor or the run queue, i.e. one OS process per op"
)
AIRFLOW_NO_CONC = (
    "not expressible: dag.test() runs one DagRun in the calling process; concurrent DagRuns need "
    "the scheduler and an executor"
)
AIRFLOW_NO_W4 = (
    "not expressible: dag.test() runs tasks one at a time (1000 x 0.1 s >= 100 s); pools, "
    "max_active_tasks and parallelism are enforced by the scheduler/executor it bypasses"
)

DASK_ROWS: tuple[Row, ...] = (
    Row(
        key="dask-raw",
        label="Dask itself: client.submit + gather (the floor)",
        venv=PROJECT,
        adapter="dask_raw_w",
        variant=None,
        persists="nothing: results in the workers' memory until gathered",
        concurrency=f"{DASK_CLUSTER_SHAPE}; n futures submitted at once, then gathered",
        sizes={DASK_WORKLOAD: None},
    ),
    Row(
        key="podium-dask",
        label="Podium, Dask(address=...)",
        venv=PROJECT,
        adapter="podium_w",
        variant=None,
        persists="every task's state and result, SQLite WAL, synchronous=NORMAL, group commit; "
        "a try is submitted to Dask only after its `running` row is committed",
        concurrency=f"{DASK_CLUSTER_SHAPE}; one Dask task per try, submitted as it is ready "
        "(default max_tasks=64)",
        sizes={DASK_WORKLOAD: None},
    ),
    Row(
        key="prefect-dask",
        label="Prefect, DaskTaskRunner (prefect-dask 0.3.7)",
        venv=PREFECT_DASK,
        adapter="prefect_dask_w",
        variant=None,
        persists="flow-run states via the API into the server's SQLite DB; task-run states sent "
        "as events from the workers, recorded by the server asynchronously; results in memory",
        concurrency=f"{DASK_CLUSTER_SHAPE}; a sync flow calls task.submit() n times, then "
        ".result() on each future; each task run executes Prefect's task engine on a worker",
        sizes={DASK_WORKLOAD: None},
        timeout_s=1800.0,
    ),
)

ROWS: tuple[Row, ...] = (
    Row(
        key="podium",
        label="Podium",
        venv=PROJECT,
        adapter="podium_w",
        variant=None,
        persists="every task/run state change and result, SQLite WAL, synchronous=NORMAL, "
        "group commit; a task starts only after its `running` row is committed",
        concurrency="coroutines on one event loop; engine-wide max_tasks=64 (W4: 100)",
        sizes=ALL_DAG_WORKLOADS | {"events": None},
    ),
    Row(
        key="floor-batch100",
        label="floor (asyncio+sqlite3, batch 100)",
        venv=PROJECT,
        adapter="floor_w",
        variant="batch100",
        persists="3 state rows per task (+ result), SQLite WAL, synchronous=NORMAL, committed "
        "100 rows at a time + at run end; no write-ahead ordering",
        concurrency="bare asyncio tasks; asyncio.Semaphore(64) (W4: 100)",
        sizes=dict(ALL_DAG_WORKLOADS),
        skip=NO_EVENTS,
    ),
    Row(
        key="floor-pertask",
        label="floor (asyncio+sqlite3, commit per task)",
        venv=PROJECT,
        adapter="floor_w",
        variant="pertask",
        persists="as above, one commit per task + at run end",
        concurrency="bare asyncio tasks; asyncio.Semaphore(64) (W4: 100)",
        sizes=dict(ALL_DAG_WORKLOADS),
        skip=NO_EVENTS,
    ),
    Row(
        key="prefect",
        label="Prefect",
        venv=PREFECT,
        adapter="prefect_w",
        variant="taskrunner",
        persists="flow-run states via the API into the server's SQLite DB (WAL, "
        "synchronous=NORMAL); task-run states sent as events and recorded by the server "
        "asynchronously (not awaited by the task); results in memory (persistence off by default)",
        concurrency="async tasks as coroutines on the flow's loop (asyncio.gather); W4: "
        "ThreadPoolTaskRunner(max_workers=100), an event loop per worker thread",
        sizes=ALL_DAG_WORKLOADS | {"W3-seq": 50, "W3-conc": 20},  # W3-conc at 50: server 503s
        skip=NO_EVENTS,
    ),
    Row(
        key="prefect-gcl",
        label="Prefect, W4 under a global concurrency limit",
        venv=PREFECT,
        adapter="prefect_w",
        variant="gcl",
        persists="as Prefect; plus a lease per slot in the server's DB",
        concurrency="async tasks gathered on the flow's loop; each takes a slot of a server-side "
        "global concurrency limit of 100 (HTTP acquire, retried with backoff when full)",
        sizes={"W4": 200},
        skip={w: "only W4 differs from the Prefect row" for w in ("W1", "W2", "W3-seq", "W3-conc")}
        | NO_EVENTS,
        timeout_s=1200.0,
    ),
    Row(
        key="dagster-memory",
        label="Dagster, in-memory instance",
        venv=DAGSTER,
        adapter="dagster_w",
        variant="memory",
        persists="nothing: DagsterInstance.ephemeral() (run and event log in memory), "
        "outputs in mem_io_manager",
        concurrency="in-process executor: sync ops one at a time",
        sizes={"W1": None, "W2": None, "W3-seq": None},
        skip={"W3-conc": DAGSTER_NO_CONC, "W4": DAGSTER_NO_W4} | NO_EVENTS,
    ),
    Row(
        key="dagster-sqlite",
        label="Dagster, SQLite instance",
        venv=DAGSTER,
        adapter="dagster_w",
        variant="sqlite",
        persists="run, step events and logs in SQLite, WAL, synchronous=FULL "
        "(DagsterInstance.local_temp: run storage + per-run event-log DB); outputs in "
        "mem_io_manager",
        concurrency="in-process executor: sync ops one at a time",
        sizes={"W1": None, "W2": None, "W3-seq": None},
        skip={"W3-conc": DAGSTER_NO_CONC, "W4": DAGSTER_NO_W4} | NO_EVENTS,
    ),
    Row(
        key="dbos",
        label="DBOS Transact",
        venv=DBOS,
        adapter="dbos_w",
        variant="default",
        persists="workflow inputs/status/output and every step's output, checkpointed in the "
        "SQLite system DB (rollback journal, synchronous=FULL: SQLite's defaults) before the "
        "workflow goes on",
        concurrency="async steps as coroutines (asyncio.gather); W4: a DBOS queue with "
        "worker_concurrency=100 (one child workflow per sleeper, polled every 1 s)",
        sizes=dict(ALL_DAG_WORKLOADS),
        skip=NO_EVENTS,
    ),
    Row(
        key="airflow",
        label="Airflow, dag.test()",
        venv=AIRFLOW,
        adapter="airflow_w",
        variant=None,
        persists="DagRun, every task instance state and every XCom (return value) in the "
        "SQLite metadata DB (rollback journal, synchronous=FULL: SQLite's defaults)",
        concurrency="dag.test(): tasks one at a time in the calling process, no scheduler",
        sizes={"W1": 100, "W2": 50, "W3-seq": 20},
        skip={"W3-conc": AIRFLOW_NO_CONC, "W4": AIRFLOW_NO_W4} | NO_EVENTS,
    ),
    *DASK_ROWS,
)

ROWS_BY_KEY = {r.key: r for r in ROWS}
# --tools accepts a row key or a tool name (all its rows): "dagster" = dagster-memory,dagster-sqlite
TOOL_ALIASES = {
    "floor": ("floor-batch100", "floor-pertask"),
    "dagster": ("dagster-memory", "dagster-sqlite"),
    "dask": tuple(r.key for r in DASK_ROWS),
}
