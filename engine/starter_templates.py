"""The files of ``podium init DIR --template cron|kafka|s3|assets``: per template a DAG file (Python or
YAML), a pytest test that runs it on a real ``Engine``, a sample event and a README.

Every test builds the event a sensor would publish from ``events/sample_event.json`` and publishes it
on ``engine.sink`` with the sensors off, so it needs no broker, bucket or clock: the run that follows
is the one the real source would start. ``{name}`` in a file is replaced by the project's name.
"""

from __future__ import annotations

# -- shared by every generated test -----------------------------------------------------------------

_TEST_HEAD = '''\
"""Runs the DAG on a real Podium engine (its own SQLite state file in pytest's tmp_path).

{how}
Run it with `python -m pytest tests/`.
"""

import json
{imports}from pathlib import Path

import anyio

from engine import DAG, Engine, Run
from engine.loader import load_dags
from sensors import Event, EventBatch

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_EVENT = json.loads((PROJECT / "events" / "sample_event.json").read_text(encoding="utf-8"))


def load_dag(dag_id: str) -> DAG:
    """The DAG as `podium run pipelines/` loads it (every file must load without errors)."""
    loaded = load_dags(PROJECT / "pipelines")
    assert not loaded.errors, "\\n".join(str(e) for e in loaded.errors)
    return next(d for d in loaded.dags if d.dag_id == dag_id)


async def run_event(tmp_path: Path, dag: DAG, event: Event) -> Run:
    """Publish ``event`` as the DAG's first trigger's source would, and wait for its run."""
    async with Engine(tmp_path / "podium.db", dags=[dag], sensors=False) as engine:
        batch = EventBatch(dag.triggers[0].source_key(dag.dag_id, 0), [event])
        await engine.sink.publish(batch)
        assert await batch.stored() == ["ran"]  # the run is committed, as before a source's ack
        [run] = await engine.runs(dag_id=dag.dag_id)
        return await engine.wait_run(run.run_id, timeout=60)
'''

_README = """\
# {name}

A Podium project{what}.

```sh
python -m pytest tests/                # runs the DAG on a real engine with the sample event
podium run pipelines/ --db podium.db   # serves it until Ctrl-C
```

- Served, {serves}.
- `pipelines/` holds the DAG{files}; `podium validate pipelines/` checks it without running it.
- `events/sample_event.json` is an event as {source} delivers it (what tasks see as `ctx.event`,
  and templates as `event`). `podium render {dag_id} --event events/sample_event.json` shows what
  every templated argument renders to for it, without running anything.
- The test publishes that event on `engine.sink` with the sensors off, {test_note}
- `podium runs --db podium.db` and `podium logs RUN TASK --db podium.db` show what ran.
"""


def _readme(**parts: str) -> str:
    return _README.format(name="{name}", **parts)


# -- cron: a Python DAG on a timer ------------------------------------------------------------------

CRON_DAG = '''\
"""A daily DAG: `podium run pipelines/ --db podium.db` runs it at 06:00 Berlin time.

A timer run's logical date is its slot, so `{{ ds }}` is the day it is for. A past day:
`podium backfill daily_report --start 2026-11-01 --end 2026-11-03 --path pipelines --db podium.db`.
"""

from engine import Context, Template, dag, task
from sensors import Cron


@task(retries=2, retry_delay=30)
def extract(day: str, source: str) -> list[dict]:
    # stand-in for a query of one day's rows in the source system
    return [{"day": day, "source": source, "orders": n} for n in (3, 5, 8)]


@task
def summarize(rows: list[dict], ctx: Context) -> dict:
    total = sum(row["orders"] for row in rows)
    ctx.log.info("%d orders on %s", total, rows[0]["day"])
    return {"day": rows[0]["day"], "orders": total}


@dag(triggers=[Cron("0 6 * * *", tz="Europe/Berlin")], max_active_runs=1)
def daily_report(source: str = "shop") -> None:
    summarize(extract(Template("{{ ds }}"), source))
'''

CRON_EVENT = """\
{
  "slot": "2026-11-25T05:00:00+00:00",
  "schedule": "cron '0 6 * * *' in Europe/Berlin"
}
"""

CRON_TEST = (
    _TEST_HEAD.replace("{imports}", "from datetime import datetime\n").replace(
        "{how}",
        "The timer is not started: the test publishes the slot of `events/sample_event.json` on\n"
        "`engine.sink` exactly as the timer does at 06:00, so nothing waits for the clock.",
    )
    + """

def test_the_sample_slot_runs_the_report_for_its_day(tmp_path: Path) -> None:
    dag = load_dag("daily_report")
    slot = SAMPLE_EVENT["slot"]
    event = Event(
        "timer",
        f"timer:{dag.dag_id}:{slot}",
        SAMPLE_EVENT,
        logical_date=datetime.fromisoformat(slot).timestamp(),
    )
    run = anyio.run(run_event, tmp_path, dag, event)
    assert run.state.value == "success", run.note
    assert run.tasks["summarize"].result == {"day": "2026-11-25", "orders": 16}
"""
)


# -- kafka: a YAML DAG calling Python, one run per message -----------------------------------------

KAFKA_DAG = """\
# yaml-language-server: $schema=../podium-dag.schema.json
# One run per message on the `orders` topic; the message's JSON object is the run's params.
# Check it: `podium validate pipelines/`. Reference: `podium schema`.
dag_id: orders
description: Records each order message, then announces it
params:
  order_id: {type: integer}
  amount: {type: number, default: 0}
  currency: {type: string, default: EUR}
triggers:
  - kafka: {topic: orders, bootstrap_servers: "127.0.0.1:9092", group_id: podium}
defaults:
  retries: 2
  retry_delay: 5
  timeout: 60
tasks:
  record:
    call: order_steps:record
    args:
      source: "{{ event.topic }}:{{ event.partition }}@{{ event.offset }}"
  announce:
    depends_on: [record]
    shell:
      argv: [echo, "order {{ params.order_id }} recorded ({{ params.amount }} {{ params.currency }})"]
"""

KAFKA_STEPS = '''\
"""The Python function `orders.yaml` calls (`call: order_steps:record`); no DAG here."""

from engine import Context


def record(ctx: Context, source: str) -> dict:
    amount = float(ctx.params["amount"])
    return {
        "order_id": ctx.params["order_id"],
        "amount_cents": round(amount * 100),
        "currency": ctx.params["currency"],
        "source": source,
    }
'''

KAFKA_EVENT = """\
{
  "topic": "orders",
  "partition": 0,
  "offset": 42,
  "key": "1001",
  "timestamp": 1764046800000,
  "headers": {},
  "value": {"order_id": 1001, "amount": 25.5, "currency": "EUR"}
}
"""

KAFKA_TEST = (
    _TEST_HEAD.replace("{imports}", "").replace(
        "{how}",
        "No Kafka broker is needed: the test publishes the message of `events/sample_event.json` on\n"
        "`engine.sink` as the Kafka sensor does after reading it (a JSON object value becomes the\n"
        "run's params).",
    )
    + """

def test_a_message_runs_the_dag_with_its_params(tmp_path: Path) -> None:
    dag = load_dag("orders")
    value = SAMPLE_EVENT["value"]
    where = f"{SAMPLE_EVENT['topic']}:{SAMPLE_EVENT['partition']}:{SAMPLE_EVENT['offset']}"
    event = Event("kafka", f"kafka:{where}", SAMPLE_EVENT, params=value)
    run = anyio.run(run_event, tmp_path, dag, event)
    assert run.state.value == "success", run.note
    assert run.tasks["record"].result == {
        "order_id": 1001,
        "amount_cents": 2550,
        "currency": "EUR",
        "source": "orders:0@42",
    }
    assert run.tasks["announce"].result["stdout"] == "order 1001 recorded (25.5 EUR)"
"""
)


# -- s3: a Python DAG, one run per new object ------------------------------------------------------

S3_DAG = '''\
"""One run per new object under `incoming/` in the `landing` bucket, from the bucket's SQS
notifications (here a local moto server: change `queue_url` and `endpoint_url` for AWS).

The object's bucket, key, size and etag are the run's params.
"""

from engine import Template, dag, task
from sensors import S3Events

QUEUE_URL = "http://127.0.0.1:5000/123456789012/landing"
ENDPOINT_URL = "http://127.0.0.1:5000"


@task(retries=2, retry_delay=10)
def inspect_object(uri: str, key: str, size: int) -> dict:
    # stand-in for reading the object (aiobotocore, pandas.read_csv("s3://..."), ...)
    return {"uri": uri, "kind": key.rsplit(".", 1)[-1], "size": size}


@dag(
    triggers=[
        S3Events(
            bucket="landing", prefix="incoming/", queue_url=QUEUE_URL, endpoint_url=ENDPOINT_URL
        )
    ]
)
def landing_files(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
    inspect_object(Template("s3://{{ params.bucket }}/{{ params.key }}"), key, size)
'''

S3_EVENT = """\
{
  "eventName": "ObjectCreated:Put",
  "bucket": "landing",
  "key": "incoming/2026-11-25/orders.csv",
  "size": 2048,
  "etag": "9b2cf535f27731c974343645a3985328"
}
"""

S3_TEST = (
    _TEST_HEAD.replace("{imports}", "").replace(
        "{how}",
        "No S3 or SQS is needed: the test publishes the object of `events/sample_event.json` on\n"
        "`engine.sink` as the S3 sensor does after reading its notification.",
    )
    + """

def test_a_new_object_runs_the_dag(tmp_path: Path) -> None:
    dag = load_dag("landing_files")
    params = {k: SAMPLE_EVENT[k] for k in ("bucket", "key", "size", "etag")}
    event_id = f"s3:{params['bucket']}/{params['key']}@{params['etag']}"
    run = anyio.run(run_event, tmp_path, dag, Event("s3", event_id, SAMPLE_EVENT, params=params))
    assert run.state.value == "success", run.note
    assert run.tasks["inspect_object"].result == {
        "uri": "s3://landing/incoming/2026-11-25/orders.csv",
        "kind": "csv",
        "size": 2048,
    }
"""
)


# -- assets: a producer and a consumer DAG ----------------------------------------------------------

ASSETS_DAG = '''\
"""A producer DAG writes a data set (an asset); a consumer DAG runs when it has new data.

`write_orders` declares the asset as an outlet and reports where it wrote, with a row count, through
`ctx.asset_event(...)`: the event is committed with the task's success. `revenue` runs on
`OnAssets(ORDERS)`: once per batch of new events (exactly once, also across a kill -9), and its
`ctx.event["events"]` lists the events it consumed.
"""

import json
from pathlib import Path

from engine import Asset, Context, dag, task
from sensors import OnAssets

DATA = Path(__file__).resolve().parent.parent / "data"
ORDERS = Asset("file://data/orders", name="orders of a day")


@task(outlets=[ORDERS])
def write_orders(ctx: Context, data_dir: str, day: str) -> str:
    path = Path(data_dir) / f"orders-{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    orders = [{"id": 1, "cents": 1200}, {"id": 2, "cents": 800}]
    path.write_text(json.dumps(orders))
    ctx.asset_event_sync(ORDERS.uri, metadata={"path": str(path), "rows": len(orders), "day": day})
    return str(path)


@task
def total_revenue(ctx: Context) -> dict:
    latest = ctx.event["events"][-1]["metadata"]  # the newest orders event this run consumed
    orders = json.loads(Path(latest["path"]).read_text())
    return {"day": latest["day"], "cents": sum(o["cents"] for o in orders)}


@dag(description="Writes the orders data set of a day")
def produce_orders(data_dir: str = str(DATA), day: str = "2026-11-25") -> None:
    write_orders(data_dir, day)


@dag(triggers=[OnAssets(ORDERS)], description="Runs when the orders data set has new data")
def revenue() -> None:
    total_revenue()
'''

ASSETS_EVENT = """\
{
  "uri": "file://data/orders",
  "metadata": {"path": "data/orders-2026-11-25.json", "rows": 2, "day": "2026-11-25"}
}
"""

ASSETS_TEST = (
    _TEST_HEAD.replace("{imports}", "").replace(
        "{how}",
        "The consumer (`revenue`) runs on the producer's asset events: the first test runs both on\n"
        "one engine; the second asks the engine why the consumer has not run before any event.",
    )
    + """

async def produce_then_consume(tmp_path: Path) -> Run:
    producer, consumer = load_dag("produce_orders"), load_dag("revenue")
    params = {"data_dir": str(tmp_path / "data"), "day": "2026-11-24"}
    async with Engine(tmp_path / "podium.db", dags=[producer, consumer]) as engine:
        produced = await (await engine.trigger("produce_orders", params=params)).wait()
        assert produced.state.value == "success", produced.note
        with anyio.fail_after(60):
            while not (runs := await engine.runs(dag_id="revenue")):
                await anyio.sleep(0.05)  # the consumer's run starts once the event is committed
        return await engine.wait_run(runs[0].run_id, timeout=60)


def test_the_consumer_runs_on_the_producers_asset_event(tmp_path: Path) -> None:
    run = anyio.run(produce_then_consume, tmp_path)
    assert run.state.value == "success", run.note
    assert run.tasks["total_revenue"].result == {"day": "2026-11-24", "cents": 2000}
    assert [e["uri"] for e in run.event["events"]] == [SAMPLE_EVENT["uri"]]


def test_before_any_event_the_engine_says_what_the_consumer_waits_for(tmp_path: Path) -> None:
    async def why() -> dict:
        dags = [load_dag("produce_orders"), load_dag("revenue")]
        async with Engine(tmp_path / "podium.db", dags=dags) as engine:
            return await engine.asset_condition("revenue")

    condition = anyio.run(why)
    assert condition["met"] is False
    assert SAMPLE_EVENT["uri"] in condition["missing"]
"""
)


TEMPLATES: dict[str, dict[str, str]] = {
    "cron": {
        "README.md": _readme(
            what=": `daily_report`, a Python DAG that runs every day at 06:00 (Europe/Berlin)",
            serves="the timer starts a run each day at 06:00",
            files=" (`daily_report.py`)",
            source="the timer",
            dag_id="daily_report",
            test_note="so nothing waits for 06:00.",
        ),
        "pipelines/daily_report.py": CRON_DAG,
        "tests/test_daily_report.py": CRON_TEST,
        "events/sample_event.json": CRON_EVENT,
    },
    "kafka": {
        "README.md": _readme(
            what=": `orders`, a YAML DAG with one run per message on the Kafka topic `orders`",
            serves="it consumes `orders` on 127.0.0.1:9092 (group `podium`)",
            files=" (`orders.yaml`, calling `order_steps.py`)",
            source="the Kafka sensor",
            dag_id="orders",
            test_note="so it needs no Kafka broker.",
        ),
        "pipelines/orders.yaml": KAFKA_DAG,
        "pipelines/order_steps.py": KAFKA_STEPS,
        "tests/test_orders.py": KAFKA_TEST,
        "events/sample_event.json": KAFKA_EVENT,
    },
    "s3": {
        "README.md": _readme(
            what=": `landing_files`, a Python DAG with one run per new object in an S3 bucket",
            serves="it reads the bucket's SQS notifications (`QUEUE_URL` in the DAG file)",
            files=" (`landing_files.py`)",
            source="the S3 sensor",
            dag_id="landing_files",
            test_note="so it needs no S3 or SQS.",
        ),
        "pipelines/landing_files.py": S3_DAG,
        "tests/test_landing_files.py": S3_TEST,
        "events/sample_event.json": S3_EVENT,
    },
    "assets": {
        "README.md": _readme(
            what=": `produce_orders` writes a data set (an asset) and `revenue` runs on its new "
            "data (`OnAssets`)",
            serves="`revenue` runs on each new event of the orders asset (trigger the producer with "
            "`podium trigger produce_orders --db podium.db` in another terminal)",
            files="s (`orders_assets.py`)",
            source="the engine",
            dag_id="revenue",
            test_note="and also runs the producer and the consumer together.",
        ),
        "pipelines/orders_assets.py": ASSETS_DAG,
        "tests/test_orders_assets.py": ASSETS_TEST,
        "events/sample_event.json": ASSETS_EVENT,
    },
}
