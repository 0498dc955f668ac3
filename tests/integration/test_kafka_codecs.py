"""Compressed and undecodable Kafka record batches through the whole engine, against real tansu.

The compressed batches come from aiokafka's producer with each ``compression_type`` (no other Kafka
client installs here); ``stored_batches`` reads the broker's raw batches back to prove each codec was
really used. The undecodable ones are written by a raw ProduceRequest: a batch whose attributes
claim lz4 over an uncompressed payload (its CRC is valid, so the consumer tries to decompress it),
and a batch whose CRC does not match. tansu refuses batches with an unknown codec id (5-7) itself,
so that case cannot reach a consumer through it.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine import Context, Engine, dag, task
from engine.web import serve
from sensors import KafkaTopic
from tests.servers import (
    CODECS,
    KafkaBroker,
    create_topic,
    produce,
    produce_raw_batch,
    record_batch,
    stored_batches,
)

pytestmark = pytest.mark.timeout(120)

FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}
seen: list[dict[str, Any]] = []


@task
async def remember(ctx: Context) -> None:
    seen.append(dict(ctx.event))


def topic_dag(bootstrap: str, topic: str, dag_id: str) -> Any:
    trigger = KafkaTopic(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", client_options=FAST_GROUP
    )

    @dag(dag_id=dag_id, triggers=[trigger])
    def on_message(codec: str = "", n: int = -1) -> None:
        remember()

    return on_message


async def wait_for_events(podium: Engine, ran: int, dead: int = 0, timeout: float = 60) -> None:
    """Until the engine has counted ``ran`` and ``dead`` events and finished every run (the task
    having run shows the run was activated: an event is counted before that)."""
    counts = podium.sink.counts
    with anyio.fail_after(timeout):
        while (
            counts["ran"] < ran or counts["dead"] < dead or len(seen) < ran or podium.pending_runs
        ):
            await anyio.sleep(0.05)
    assert (counts["ran"], counts["dead"]) == (ran, dead)


async def produce_compressed(
    bootstrap: str, topic: str, partition: int, codec: str, count: int
) -> None:
    """``count`` keyed messages with headers in as few batches as aiokafka makes, compressed with
    ``codec``: values are long and alike, so that compressing pays (else aiokafka sends them plain)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=100,
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                orjson.dumps({"codec": codec, "n": n, "note": "compress me " * 20}),
                key=f"{codec}-{n}".encode(),
                partition=partition,
                headers=[("codec", codec.encode()), ("n", str(n).encode())],
            )
            for n in range(count)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


@asynccontextmanager
async def engine_and_web(db: Path, on_message: Any) -> AsyncIterator[tuple[Engine, Any]]:
    async with Engine(db, dags=[on_message]) as podium, anyio.create_task_group() as tg:
        port = await tg.start(functools.partial(serve, podium, "127.0.0.1", 0, "t0ken"))
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield podium, http
        tg.cancel_scope.cancel()


async def test_every_codec_with_keys_and_headers_makes_runs(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    seen.clear()
    bootstrap, topic, per_codec = kafka_broker.bootstrap, f"codecs-{uuid.uuid4().hex[:8]}", 40
    await create_topic(bootstrap, topic, partitions=2)
    for i, codec in enumerate(CODECS):
        await produce_compressed(bootstrap, topic, i % 2, codec, per_codec)
    batches = [
        *await stored_batches(bootstrap, topic, 0),
        *await stored_batches(bootstrap, topic, 1),
    ]
    assert {codec for _base, _next, codec in batches} == set(CODECS.values())
    assert sum(next_ - base for base, next_, _codec in batches) == per_codec * len(CODECS)

    on_message = topic_dag(bootstrap, topic, "codecs")
    async with Engine(tmp_path / "c.db", dags=[on_message]) as podium:
        await wait_for_events(podium, ran=per_codec * len(CODECS))
        runs = await podium.runs(dag_id="codecs", limit=1000)

    assert {r.state for r in runs} == {"success"}
    assert sorted((r.params["codec"], r.params["n"]) for r in runs) == sorted(
        (codec, n) for codec in CODECS for n in range(per_codec)
    )
    assert len(seen) == per_codec * len(CODECS)
    for event in seen:
        codec, n = event["value"]["codec"], event["value"]["n"]
        assert event["key"] == f"{codec}-{n}"
        assert event["headers"] == {"codec": codec, "n": str(n)}


async def test_an_undecodable_batch_is_dead_and_every_partition_goes_on(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    seen.clear()
    bootstrap, topic = kafka_broker.bootstrap, f"corrupt-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=2)
    # partition 0: 5 good, a "lz4" batch that is not lz4 (3 messages), a batch with a bad CRC
    # (2), then 5 good ones compressed with gzip; partition 1: 10 good ones.
    await produce(bootstrap, topic, [{"n": n} for n in range(5)], partition=0)
    not_lz4 = record_batch([b'{"n": 5}', b'{"n": 6}', b'{"n": 7}'], claimed_codec="lz4")
    assert await produce_raw_batch(bootstrap, topic, 0, not_lz4) == 5
    bad_crc = record_batch([b'{"n": 8}', b'{"n": 9}'], corrupt_crc=True)
    assert await produce_raw_batch(bootstrap, topic, 0, bad_crc) == 8
    await produce_compressed(bootstrap, topic, 0, "gzip", 5)
    await produce(bootstrap, topic, [{"n": 100 + n} for n in range(10)], partition=1)

    on_message = topic_dag(bootstrap, topic, "corrupt")
    async with engine_and_web(tmp_path / "x.db", on_message) as (podium, http):
        await wait_for_events(podium, ran=20, dead=2)
        dead = await podium.events(outcome="dead")
        runs = await podium.runs(dag_id="corrupt", limit=100)
        async with http.get("/events", params={"outcome": "dead"}) as resp:
            assert resp.status == 200
            page = await resp.text()
        async with http.get("/metrics") as resp:
            metrics = await resp.text()

    assert sorted(r.key for r in runs) == sorted(
        [f"kafka:{topic}:0:{o}" for o in [*range(5), *range(10, 15)]]
        + [f"kafka:{topic}:1:{o}" for o in range(10)]
    )
    assert {r.state for r in runs} == {"success"}
    by_id = {d["event_id"]: d for d in dead}
    assert sorted(by_id) == [f"kafka:{topic}:0:5", f"kafka:{topic}:0:8"]
    lz4_error = by_id[f"kafka:{topic}:0:5"]["error"]
    assert lz4_error.startswith(f"undecodable record batch at kafka:{topic}:0:5 (offsets 5-7): ")
    assert "DecompressionError" in lz4_error and "lz4" in lz4_error
    crc_error = by_id[f"kafka:{topic}:0:8"]["error"]
    assert crc_error.startswith(f"undecodable record batch at kafka:{topic}:0:8 (offsets 8-9): ")
    assert "CorruptRecordException" in crc_error and "CRC" in crc_error
    for event_id in by_id:
        assert event_id in page
    assert "undecodable record batch at" in page
    assert 'podium_events_total{outcome="dead"} 2' in metrics
    # the consumer went past both batches: its group committed the end of partition 0
    assert await committed(bootstrap, f"g-{topic}", TopicPartition(topic, 0)) == 15
