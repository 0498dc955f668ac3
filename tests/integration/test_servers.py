"""Smoke tests of the real test servers (tansu Kafka broker, moto S3/SQS) and tests/servers.py."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections import Counter

import orjson
import pytest
from aiobotocore.session import get_session
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.servers import (
    KafkaBroker,
    MotoServer,
    ServerStartError,
    consume_all,
    create_topic,
    kafka_ping,
    make_bucket_with_sqs_notifications,
    produce,
    receive_sqs_json,
    s3_event_keys,
)

pytestmark = pytest.mark.timeout(60)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


# -------------------------------------------------------------------------------------------- Kafka


async def test_produce_and_consume_100_json_messages(kafka_broker: KafkaBroker) -> None:
    topic = unique("smoke")
    await create_topic(kafka_broker.bootstrap, topic, partitions=3)
    sent = [{"n": i, "text": f"message {i}", "ü": True} for i in range(100)]

    acks = await produce(kafka_broker.bootstrap, topic, sent)

    assert len(acks) == 100
    assert {ack.partition for ack in acks} <= {0, 1, 2}
    records = await consume_all(kafka_broker.bootstrap, topic, 100, timeout=20, settle=0.5)
    assert len(records) == 100  # exactly: settle would have caught extras
    assert sorted((orjson.loads(r.value) for r in records), key=lambda v: v["n"]) == sent
    # Offsets are dense per partition (counting by consuming, not by tansu's end offsets).
    per_partition = Counter(r.partition for r in records)
    for partition, count in per_partition.items():
        offsets = sorted(r.offset for r in records if r.partition == partition)
        assert offsets == list(range(count))


async def test_keyed_and_explicit_partition_produce(kafka_broker: KafkaBroker) -> None:
    topic = unique("keys")
    await create_topic(kafka_broker.bootstrap, topic, partitions=3)

    keyed = await produce(kafka_broker.bootstrap, topic, ["a", "b", "c"], key="customer-1")
    pinned = await produce(kafka_broker.bootstrap, topic, [b"raw"], partition=2)

    assert len({ack.partition for ack in keyed}) == 1
    assert pinned[0].partition == 2
    records = await consume_all(kafka_broker.bootstrap, topic, 4, timeout=20)
    assert sorted(r.value for r in records) == [b"a", b"b", b"c", b"raw"]
    assert {r.key for r in records if r.value != b"raw"} == {b"customer-1"}


async def test_broker_stop_and_restart_on_same_port(kafka_broker_private: KafkaBroker) -> None:
    broker = kafka_broker_private
    port, old_pid = broker.port, broker.pid
    assert old_pid is not None
    topic = unique("restart")
    await create_topic(broker.bootstrap, topic, partitions=2)
    await produce(broker.bootstrap, topic, [{"before": i} for i in range(5)])
    assert len(await consume_all(broker.bootstrap, topic, 5, timeout=20)) == 5

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"connected before the stop")

        await broker.astop()
        assert not broker.is_running
        assert not pid_alive(old_pid)
        assert not port_accepts(port)

        await broker.astart()
        assert broker.port == port and broker.pid != old_pid

        # Memory-only: the topic and its messages are gone after the restart.
        assert topic not in await list_topics(broker.bootstrap)
        await create_topic(broker.bootstrap, topic, partitions=2)
        # A client that was connected before the stop reconnects by itself.
        ack = await asyncio.wait_for(producer.send_and_wait(topic, b"after", partition=0), 20)
        assert ack.offset == 0
    finally:
        await producer.stop()
    records = await consume_all(broker.bootstrap, topic, 1, timeout=20, settle=0.3)
    assert [r.value for r in records] == [b"after"]


def test_sync_restart_and_kill(kafka_broker_private: KafkaBroker) -> None:
    broker = kafka_broker_private
    port = broker.port
    broker.restart()
    kafka_ping("127.0.0.1", port)
    old_pid = broker.pid
    assert old_pid is not None
    broker.kill()
    assert not pid_alive(old_pid)
    broker.start()
    assert broker.port == port
    kafka_ping("127.0.0.1", port)


def test_external_broker_mode(kafka_broker_private: KafkaBroker) -> None:
    external = KafkaBroker(external=kafka_broker_private.bootstrap, startup_timeout=5).start()
    assert not external.managed
    assert external.bootstrap == kafka_broker_private.bootstrap
    with pytest.raises(RuntimeError, match="external"):
        external.stop()
    external.close()  # no-op for an external broker
    assert kafka_broker_private.is_running


def test_port_in_use_is_refused(kafka_broker_private: KafkaBroker) -> None:
    intruder = KafkaBroker(port=kafka_broker_private.port, startup_timeout=5)
    with pytest.raises(ServerStartError, match="in use"):
        intruder.start()
    assert not intruder.is_running
    intruder.close()


def test_start_failure_reports_command_output() -> None:
    # Any binary that exits at once will do: Python cannot open a script called "broker".
    broker = KafkaBroker(binary=sys.executable, startup_timeout=10)
    with pytest.raises(ServerStartError, match=r"(?s)exit code 2.*broker"):
        broker.start()
    assert not broker.is_running
    broker.close()


# ------------------------------------------------------------------------------------- S3 and SQS

# What moto 5 sends (seen with moto 5.2): right after put_bucket_notification_configuration one
# {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": ..., "Bucket": ...} message (as AWS).
# Then one message per object: {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
# "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name", "arn"}, "object": {"key", "size",
# "eTag"}, ...}}]} (no sequencer/userIdentity/requestParameters). Keys are encoded with quote_plus
# including "/": "crm/new file ü.csv" arrives as "crm%2Fnew+file+%C3%BC.csv" and "a+b" as "a%2Bb".


async def test_s3_event_notifications_reach_sqs(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue = unique("landing"), unique("events")
    queue_url = await make_bucket_with_sqs_notifications(kwargs, bucket, queue, prefix="crm/")

    (test_event,) = await receive_sqs_json(kwargs, queue_url, 1, timeout=10)
    assert test_event["Event"] == "s3:TestEvent"
    assert test_event["Bucket"] == bucket
    assert s3_event_keys(test_event) == []

    keys = ["crm/new file ü.csv", "crm/a+b=c&d.csv", "crm/plain.csv"]
    session = get_session()
    async with session.create_client("s3", **kwargs) as s3:
        for key in [*keys, "other/not-notified.csv"]:
            await s3.put_object(Bucket=bucket, Key=key, Body=b"id,name\n1,x\n")
        obj = await s3.get_object(Bucket=bucket, Key=keys[0])
        async with obj["Body"] as body:
            assert await body.read() == b"id,name\n1,x\n"

    bodies = await receive_sqs_json(kwargs, queue_url, 3, timeout=10)
    events = [event for body in bodies for event in s3_event_keys(body)]
    assert sorted(events) == sorted(("ObjectCreated:Put", bucket, key) for key in keys)
    raw_keys = {record["s3"]["object"]["key"] for body in bodies for record in body["Records"]}
    assert "crm/new file ü.csv" not in raw_keys  # moto sends keys URL-encoded
    for body in bodies:
        assert body["Records"][0]["s3"]["object"]["size"] == len(b"id,name\n1,x\n")
    # The prefix filter held back "other/...": nothing more arrives.
    with pytest.raises(TimeoutError):
        await receive_sqs_json(kwargs, queue_url, 1, timeout=1)


def test_moto_credentials_env(moto_server: MotoServer) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_ENDPOINT_URL" not in moto_server.aws_client_kwargs()
    assert moto_server.aws_client_kwargs() == {
        "endpoint_url": moto_server.endpoint_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


async def test_private_moto_server_reset_and_stop() -> None:
    with MotoServer() as server:
        pid = server.pid
        assert pid is not None
        kwargs = server.aws_client_kwargs()
        async with get_session().create_client("s3", **kwargs) as s3:
            await s3.create_bucket(Bucket="reset-me")
            assert [b["Name"] for b in (await s3.list_buckets())["Buckets"]] == ["reset-me"]
            server.reset()
            assert (await s3.list_buckets())["Buckets"] == []
    assert not server.is_running
    assert not pid_alive(pid)
