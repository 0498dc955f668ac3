"""Kafka topics through the whole engine, against a real tansu broker."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from engine import Context, Engine, dag, task
from sensors import KafkaTopic
from tests.servers import KafkaBroker, create_topic, produce

FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}
handled: Counter[int] = Counter()


@task
async def handle(ctx: Context, n: int) -> int:
    handled[n] += 1
    return n


def orders_dag(bootstrap: str, topic: str, dag_id: str) -> Any:
    trigger = KafkaTopic(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", client_options=FAST_GROUP
    )

    @dag(dag_id=dag_id, triggers=[trigger])
    def on_message(n: int = -1) -> None:
        handle(n)

    return on_message


async def wait_until_ran(
    podium: Engine, count: int, tasks_ran: Callable[[], bool], timeout: float = 120
) -> None:
    """Until ``count`` events made runs, ``tasks_ran()`` holds and no run is unfinished.

    The engine counts an event before its run is active, so ``pending_runs`` can read 0 while
    the runs are being stored: the tasks having run is what shows they were activated.
    """
    with anyio.fail_after(timeout):
        while podium.sink.counts["ran"] < count or not tasks_ran() or podium.pending_runs:
            await anyio.sleep(0.05)


def handled_at_least(count: int) -> Callable[[], bool]:
    return lambda: handled.total() >= count


async def test_ten_thousand_messages_make_exactly_ten_thousand_runs(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    handled.clear()
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_broker.bootstrap, topic, partitions=3)
    values: list[Any] = [{"n": i} for i in range(10_000)]
    values.insert(5_000, b"{definitely not json")
    await produce(kafka_broker.bootstrap, topic, values)
    on_message = orders_dag(kafka_broker.bootstrap, topic, "ten_k")
    async with Engine(tmp_path / "k.db", dags=[on_message], max_tasks=128) as podium:
        await wait_until_ran(podium, 10_000, handled_at_least(10_000))
        await anyio.sleep(1.5)  # a little longer: nothing more may arrive
        counts = dict(podium.sink.counts)
        runs = await podium.runs(dag_id="ten_k", limit=20_000)
        dead = await podium.events(outcome="dead")
    assert counts["ran"] == 10_000 and counts["dead"] == 1
    assert len(runs) == 10_000 and {r.state for r in runs} == {"success"}
    assert len({r.key for r in runs}) == 10_000
    assert all(r.key.startswith(f"kafka:{topic}:") for r in runs)
    assert sorted(handled) == list(range(10_000)) and set(handled.values()) == {1}
    assert [d["error"].split(":")[0] for d in dead] == ["invalid JSON at kafka"]


async def test_engine_recovers_when_the_broker_goes_away_and_comes_back(
    tmp_path: Path, kafka_broker_private: KafkaBroker
) -> None:
    handled.clear()
    broker = kafka_broker_private
    topic = "restarts"
    await create_topic(broker.bootstrap, topic, partitions=1)
    await produce(broker.bootstrap, topic, [{"n": i} for i in range(20)])
    on_message = orders_dag(broker.bootstrap, topic, "survivor")
    async with Engine(tmp_path / "r.db", dags=[on_message]) as podium:
        await wait_until_ran(podium, 20, handled_at_least(20))
        await broker.astop()
        await anyio.sleep(1.0)  # the sensor loses its broker and keeps trying
        await broker.astart()
        # tansu keeps nothing across a restart, so its offsets start again at 0; the first 20
        # messages after the restart reuse the old event ids. If the consumer fetches before they
        # arrive, its offset 20 is out of range, it resets to 0 and they are (correctly)
        # deduplicated; if it fetches after, offset 20 is valid and it never reads them. Which
        # comes first is timing: both are right, and neither starts a second run. (The consumer's
        # metadata requests may have created the topic again already.)
        await create_topic(broker.bootstrap, topic, partitions=1, exist_ok=True)
        await produce(broker.bootstrap, topic, [{"n": 100 + i} for i in range(30)])
        await wait_until_ran(podium, 30, handled_at_least(30), timeout=60)
        counts = dict(podium.sink.counts)
    assert counts["ran"] == 30 and counts["deduplicated"] in (0, 20)
    assert sorted(handled) == [*range(20), *range(120, 130)]


async def test_s3_notification_records_on_a_kafka_topic_start_runs(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    from sensors import S3Events

    keys: list[str] = []

    @task
    async def on_object(key: str) -> None:
        keys.append(key)

    trigger = S3Events(
        bucket="landing",
        prefix="crm/",
        kafka_topic=f"s3-{uuid.uuid4().hex[:8]}",
        bootstrap_servers=kafka_broker.bootstrap,
        group_id="s3-records",
    )

    @dag(dag_id="s3_via_kafka", triggers=[trigger])
    def s3_via_kafka(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
        on_object(key)

    def record(key: str, etag: str) -> dict[str, Any]:
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "landing"}, "object": {"key": key, "size": 3, "eTag": etag}},
        }

    assert trigger.kafka_topic is not None
    await create_topic(kafka_broker.bootstrap, trigger.kafka_topic, partitions=1)
    await produce(
        kafka_broker.bootstrap,
        trigger.kafka_topic,
        [
            {"Records": [record("crm/new+file+%C3%BC.csv", "e1"), record("other/x.csv", "e2")]},
            {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"},
            b"not json",
            {"Records": [record("crm/a.csv", "e3")]},
        ],
    )
    async with Engine(tmp_path / "s3k.db", dags=[s3_via_kafka]) as podium:
        await wait_until_ran(podium, 2, lambda: len(keys) >= 2, timeout=60)
        counts = dict(podium.sink.counts)
    assert sorted(keys) == ["crm/a.csv", "crm/new file ü.csv"]
    # other/x.csv is outside the trigger's prefix: the decoder drops it (no event, nothing filtered)
    assert counts["ran"] == 2 and counts["filtered"] == 0 and counts["dead"] == 1


def s3_record(bucket: str, key: str, etag: str) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3, "eTag": etag}},
    }


async def test_s3_records_on_kafka_go_through_each_triggers_key_filter(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    """Two S3Events triggers share one consumer of a topic: a record reaches the DAG whose bucket,
    prefix and suffix it matches; records no trigger wants never become events."""
    from sensors import S3Events

    keys: dict[str, list[str]] = {"crm_csv": [], "erp": []}

    @task
    async def on_object(ctx: Context, key: str) -> None:
        keys[ctx.dag_id].append(key)

    topic = f"s3-shared-{uuid.uuid4().hex[:8]}"
    common: dict[str, Any] = {
        "kafka_topic": topic,
        "bootstrap_servers": kafka_broker.bootstrap,
        "group_id": f"g-{topic}",
    }
    crm_csv = S3Events(bucket="landing", prefix="crm/", suffix=".csv", **common)
    erp = S3Events(bucket="landing", prefix="erp/", **common)
    assert crm_csv.source_key("crm_csv", 0) == erp.source_key("erp", 0)  # one consumer for both

    @dag(dag_id="crm_csv", triggers=[crm_csv])
    def crm_csv_dag(key: str = "") -> None:
        on_object(key)

    @dag(dag_id="erp", triggers=[erp])
    def erp_dag(key: str = "") -> None:
        on_object(key)

    await create_topic(kafka_broker.bootstrap, topic, partitions=1)
    await produce(
        kafka_broker.bootstrap,
        topic,
        [
            {
                "Records": [
                    s3_record("landing", "crm/a.csv", "e1"),
                    s3_record("landing", "crm/b.json", "e2"),  # suffix of neither
                    s3_record("landing", "other/c.csv", "e3"),  # prefix of neither
                    s3_record("elsewhere", "crm/d.csv", "e4"),  # another bucket
                ]
            },
            {"Records": [s3_record("landing", "erp/e.xml", "e5")]},
        ],
    )
    async with Engine(tmp_path / "s3shared.db", dags=[crm_csv_dag, erp_dag]) as podium:
        await wait_until_ran(podium, 2, lambda: sum(map(len, keys.values())) >= 2, timeout=60)
        events = await podium.events(limit=100)
    assert keys == {"crm_csv": ["crm/a.csv"], "erp": ["erp/e.xml"]}
    assert sorted((e["event_id"], e["dag_id"], e["outcome"]) for e in events) == [
        ("s3:landing/crm/a.csv@e1", "crm_csv", "ran"),
        ("s3:landing/crm/a.csv@e1", "erp", "filtered"),
        ("s3:landing/erp/e.xml@e5", "crm_csv", "filtered"),
        ("s3:landing/erp/e.xml@e5", "erp", "ran"),
    ]
