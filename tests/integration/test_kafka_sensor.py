"""The Kafka sensor against a real tansu broker (aiokafka, no mocks).

The engine side is ``RecordingSink``, an in-memory implementation of Podium's own ``EventSink``
seam: a bounded bus drained by one "router" task that stores each batch after an optional delay,
with outcome ``dead`` for events carrying an ``error`` and ``ran`` for the rest. It can fail
stores and stop accepting. Consumers use a short session timeout: tansu holds a JoinGroup for about
half of it (see tests/servers.py).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.backoff import Backoff
from engine.errors import StoreError, TriggerError
from sensors.base import Event, EventBatch
from sensors.kafka import KafkaTopic, source_for
from sensors.kafka_records import event_from_record, next_offsets
from sensors.kafka_source import KafkaSource
from sensors.sources import subscription_of
from tests.servers import (
    KafkaBroker,
    consume_all,
    create_topic,
    produce,
    produce_raw_batch,
    record_batch,
)

pytestmark = pytest.mark.timeout(60)

FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RecordingSink:
    """An ``EventSink`` that records what a source publishes and stores it like the engine."""

    def __init__(self, *, delay: float = 0.0, fail_next: int = 0) -> None:
        self.delay = delay
        self.fail_next = fail_next  # this many batches fail to store (StoreError)
        self.events: list[Event] = []  # stored events, in store order
        self.stored_batches = 0
        self.batch_sizes: list[int] = []
        self.failed_batches = 0
        self.on_failure: Callable[[], None] | None = None
        self.received = 0  # batches taken off the bus (stored, failed or held)
        self._gate = anyio.Event()
        self._gate.set()
        self._accepting = True
        self._resumed = anyio.Event()
        send, receive = anyio.create_memory_object_stream[EventBatch](4)
        self._send: MemoryObjectSendStream[EventBatch] = send
        self._receive: MemoryObjectReceiveStream[EventBatch] = receive

    # -- EventSink
    async def publish(self, batch: EventBatch) -> None:
        await self._send.send(batch)

    @property
    def accepting(self) -> bool:
        return self._accepting

    async def wait_accepting(self) -> None:
        while not self._accepting:
            await self._resumed.wait()

    async def load_cursor(self, cursor_id: str) -> Any:
        return None

    # -- the router
    async def serve(self) -> None:
        async for batch in self._receive:
            self.received += 1
            await self._gate.wait()
            if self.delay:
                await anyio.sleep(self.delay)
            if self.fail_next > 0:
                self.fail_next -= 1
                self.failed_batches += 1
                if self.on_failure is not None:
                    self.on_failure()
                batch.mark_stored(StoreError("disk I/O error"))
                continue
            self.events.extend(batch.events)
            batch.outcomes = ["dead" if e.error else "ran" for e in batch.events]
            self.stored_batches += 1
            self.batch_sizes.append(len(batch.events))
            batch.mark_stored()

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    # -- test controls
    def hold(self) -> None:
        """Hold the next batches unstored until :meth:`release`."""
        self._gate = anyio.Event()

    def release(self) -> None:
        self._gate.set()

    @property
    def in_flight(self) -> bool:
        return self.received > self.stored_batches + self.failed_batches

    def set_accepting(self, accepting: bool) -> None:
        self._accepting = accepting
        if accepting:
            self._resumed.set()
            self._resumed = anyio.Event()

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    def values(self) -> list[Any]:
        return [e.payload["value"] for e in self.events]


@asynccontextmanager
async def running(source: KafkaSource, sink: RecordingSink) -> AsyncIterator[None]:
    """Run ``sink``'s router and ``source`` until the block ends, then cancel both."""
    body_done = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.serve)
            tg.start_soon(source.run, sink)
            try:
                yield
                body_done = True
            finally:
                tg.cancel_scope.cancel()
    finally:
        sink.close()
    # A stray CancelledError escaping the source would cancel the block silently: catch that.
    assert body_done, "the test body was cancelled from inside the task group"


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (checked every 10 ms) or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


async def handled(source: KafkaSource, messages: int) -> None:
    """Wait until ``source`` has handled ``messages`` messages, their commit included (the poll
    after a batch comes after its commit)."""
    await eventually(lambda: source.stats.messages >= messages, f"{messages} messages handled")
    polls = source.stats.polls
    await eventually(lambda: source.stats.polls > polls, "the next poll")


def make_source(topic: KafkaTopic, **kwargs: Any) -> KafkaSource:
    options: dict[str, Any] = {
        "poll_interval": 0.2,
        "commit_timeout": 3.0,
        "start_timeout": 15.0,
        "close_timeout": 3.0,
        "backoff": Backoff(0.1, 1.0),
    }
    return KafkaSource(topic, **(options | kwargs))


def kafka_topic(bootstrap: str, name: str, group: str, **kwargs: Any) -> KafkaTopic:
    return KafkaTopic(
        name, bootstrap_servers=bootstrap, group_id=group, client_options=FAST_GROUP, **kwargs
    )


async def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int | None]:
    """What the broker holds as ``group``'s committed offsets (no group join: nothing assigned)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


def offsets_by_partition(events: list[Event]) -> dict[int, list[int]]:
    """Offsets in arrival order, per partition."""
    seen: dict[int, list[int]] = defaultdict(list)
    for event in events:
        seen[event.payload["partition"]].append(event.payload["offset"])
    return dict(seen)


# ------------------------------------------------------------------------------ pure parts


def record(value: bytes | None, offset: int = 42, **kwargs: Any) -> ConsumerRecord[bytes, bytes]:
    fields: dict[str, Any] = {
        "topic": "orders",
        "partition": 0,
        "offset": offset,
        "timestamp": 1_700_000_000_000,
        "timestamp_type": 0,
        "key": b"customer-1",
        "value": value,
        "checksum": None,
        "serialized_key_size": 10,
        "serialized_value_size": len(value or b""),
        "headers": [("trace", b"abc"), ("bin", b"\xff")],
    }
    return ConsumerRecord(**(fields | kwargs))


def test_messages_become_events() -> None:
    ok = event_from_record(record(b'{"amount": 12.5, "id": "a"}'), "json")
    assert ok.event_id == "kafka:orders:0:42" and ok.source == "kafka" and ok.error is None
    assert ok.params == {"amount": 12.5, "id": "a"}
    assert ok.payload == {
        "topic": "orders",
        "partition": 0,
        "offset": 42,
        "key": "customer-1",
        "timestamp": 1_700_000_000_000,
        "headers": {"trace": "abc", "bin": "\ufffd"},
        "value": {"amount": 12.5, "id": "a"},
    }
    assert ok.raw == b'{"amount": 12.5, "id": "a"}'
    assert event_from_record(record(b"[1, 2]"), "json").params == {"value": [1, 2]}
    assert event_from_record(record(b'"hi"'), "json").params == {"value": "hi"}
    tombstone = event_from_record(record(None, key=None), "json")
    assert tombstone.params == {"value": None} and tombstone.error is None
    assert tombstone.payload["key"] is None

    bad = event_from_record(record(b"{not json", offset=7), "json")
    assert bad.error is not None and bad.error.startswith("invalid JSON at kafka:orders:0:7: ")
    assert bad.raw == b"{not json" and bad.params is None
    assert event_from_record(record(b"\xff\xfe"), "json").error is not None  # not UTF-8

    raw = event_from_record(record(b"caf\xc3\xa9 \xff"), "raw")
    assert raw.params == {"value": "café \ufffd"} and raw.raw == b"caf\xc3\xa9 \xff"
    assert raw.error is None

    assert next_offsets([record(b"1", 3), record(b"1", 4), record(b"1", 9, partition=2)]) == {
        ("orders", 0): 5,
        ("orders", 2): 10,
    }
    assert [Backoff(0.2, 5.0).delay(n) for n in range(1, 9)] == [
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
        5.0,
        5.0,
        5.0,
    ]


def test_topic_declaration() -> None:
    topic = KafkaTopic("orders", bootstrap_servers="b:9092", group_id="g")
    assert topic.subscription == "kafka:b:9092:g:orders"
    assert topic.subscription == subscription_of(topic, dag_id="d", index=0)
    options = KafkaTopic(
        "orders", client_options={"sasl_plain_password": "s3cret", "session_timeout_ms": 6000}
    )
    assert "s3cret" not in repr(options)
    assert options.consumer_options()["enable_auto_commit"] is False
    assert options.consumer_options()["auto_offset_reset"] == "earliest"
    assert options.producer_options() == {
        "sasl_plain_password": "s3cret",
        "bootstrap_servers": "127.0.0.1:9092",
        "acks": "all",
    }
    with pytest.raises(TriggerError, match="enable_auto_commit"):
        KafkaTopic("orders", client_options={"enable_auto_commit": True})
    with pytest.raises(TriggerError, match="unknown aiokafka consumer option"):
        KafkaTopic("orders", client_options={"session_timeout": 3})
    with pytest.raises(TriggerError, match="value_format"):
        KafkaTopic("orders", value_format="xml")  # type: ignore[arg-type]

    shared = source_for(topic, KafkaTopic("orders", bootstrap_servers="b:9092", group_id="g"))
    assert shared.subscription == topic.subscription
    raw = KafkaTopic("orders", bootstrap_servers="b:9092", group_id="g", value_format="raw")
    with pytest.raises(TriggerError, match="differ in value_format"):
        source_for(topic, raw)


# ------------------------------------------------------------------------------ against tansu


async def test_thousand_messages_over_three_partitions(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("orders"), unique("g")
    await create_topic(bootstrap, name, partitions=3)
    await produce(bootstrap, name, [{"n": i} for i in range(1000)])
    source = make_source(kafka_topic(bootstrap, name, group), max_records=100)
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: len(sink.events) >= 1000, "1000 events")
        await handled(source, 1000)
        polls = source.stats.polls
        await eventually(lambda: source.stats.polls >= polls + 3, "three more polls")

    assert len(sink.events) == 1000 and len(set(sink.ids)) == 1000  # exactly once, no redelivery
    assert sorted(v["n"] for v in sink.values()) == list(range(1000))
    assert all(e.params == e.payload["value"] for e in sink.events)
    per_partition = offsets_by_partition(sink.events)
    assert set(per_partition) == {0, 1, 2}
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))  # in order, none skipped
    assert max(sink.batch_sizes) <= 100 and len(sink.batch_sizes) >= 10  # max_records=100
    committed = await committed_offsets(bootstrap, group, name, 3)
    assert committed == {p: len(offsets) for p, offsets in per_partition.items()}


async def test_restart_mid_stream_loses_nothing(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("restart"), unique("g")
    await create_topic(bootstrap, name, partitions=2)
    await produce(bootstrap, name, [{"n": i} for i in range(400)])
    topic = kafka_topic(bootstrap, name, group)

    first = RecordingSink(delay=0.05)  # slow stores: a batch is in flight when we stop
    async with running(make_source(topic, max_records=40), first):
        await eventually(lambda: first.stored_batches >= 3, "three stored batches")
    committed = await committed_offsets(bootstrap, group, name, 2)
    assert 0 < sum(o or 0 for o in committed.values()) < 400

    # This consumer's JoinGroup waits a session timeout for the first one to expire: aiokafka sends
    # no LeaveGroup for generation 0, which is where tansu numbers its first generation.
    second = RecordingSink()
    async with running(make_source(topic, max_records=40), second):
        await eventually(
            lambda: len(set(first.ids) | set(second.ids)) >= 400, "every message in either run"
        )

    assert len(set(first.ids) | set(second.ids)) == 400
    before, after = offsets_by_partition(first.events), offsets_by_partition(second.events)
    for partition, offsets in after.items():
        start = committed[partition] or 0
        # The second consumer starts exactly at the committed offset and reads on in order...
        assert offsets == list(range(start, start + len(offsets)))
        # ...and everything below it was stored by the first one,
        assert set(before.get(partition, [])) >= set(range(start))
    # so only what the first one stored without committing is delivered twice,
    first_ids = set(first.ids)
    for event in second.events:
        if event.event_id in first_ids:
            assert event.payload["offset"] >= (committed[event.payload["partition"]] or 0)
    # and nothing is delivered twice within one run.
    assert max(Counter(second.ids).values()) == 1 and max(Counter(first.ids).values()) == 1


async def test_malformed_message_is_dead_lettered_and_does_not_block(
    kafka_broker: KafkaBroker,
) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("mixed"), unique("g")
    dead_letters = f"{name}.dead"
    await create_topic(bootstrap, name, partitions=1)
    await create_topic(bootstrap, dead_letters, partitions=1)
    values: list[Any] = [{"n": 0}, b"{not json", [1, 2], {"n": 3}, '"quoted"', {"n": 5}]
    await produce(bootstrap, name, values, key="k", headers=[("origin", b"test")])
    source = make_source(kafka_topic(bootstrap, name, group, dead_letter_topic=dead_letters))
    sink = RecordingSink()

    async with running(source, sink):
        await handled(source, 6)

    assert [e.payload["offset"] for e in sink.events] == list(range(6))
    errors = [e for e in sink.events if e.error]
    assert len(errors) == 1
    (bad,) = errors
    assert bad.event_id == f"kafka:{name}:0:1"
    assert bad.error is not None and bad.error.startswith(f"invalid JSON at kafka:{name}:0:1: ")
    assert bad.raw == b"{not json"
    assert [e.params for e in sink.events if not e.error] == [
        {"n": 0},
        {"value": [1, 2]},
        {"n": 3},
        {"value": "quoted"},
        {"n": 5},
    ]
    assert source.stats.dead_lettered == len(errors)
    letters = await consume_all(bootstrap, dead_letters, len(errors), timeout=10, settle=0.3)
    assert [r.value for r in letters] == [b"{not json"] * len(errors)
    assert letters[0].key == b"k"
    headers = dict(letters[0].headers)
    assert headers["origin"] == b"test"
    assert headers["podium.topic"] == name.encode()
    assert headers["podium.partition"] == b"0" and headers["podium.offset"] == b"1"
    assert headers["podium.error"].decode() == bad.error
    assert await committed_offsets(bootstrap, group, name, 1) == {0: 6}  # not blocked


async def test_an_undecodable_batch_is_one_dead_event_and_nothing_else_is_lost(
    kafka_broker: KafkaBroker,
) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("undecodable"), unique("g")
    await create_topic(bootstrap, name, partitions=3)
    for partition in (1, 2):
        await produce(bootstrap, name, [{"n": n} for n in range(100)], partition=partition)
    await produce(bootstrap, name, [{"n": n} for n in range(50)], partition=0)
    not_lz4 = record_batch([b"{}"] * 4, key=b"k", claimed_codec="lz4")  # offsets 50-53
    assert await produce_raw_batch(bootstrap, name, 0, not_lz4) == 50
    await produce(bootstrap, name, [{"n": n} for n in range(54, 104)], partition=0)
    source = make_source(kafka_topic(bootstrap, name, group))
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: len(sink.events) >= 301, "301 events")
        await handled(source, 300)
        polls = source.stats.polls
        await eventually(lambda: source.stats.polls >= polls + 3, "three more polls")

    # every message exactly once and in order, the batch as one dead event at its first offset
    assert len(set(sink.ids)) == len(sink.ids) == 301
    per_partition = offsets_by_partition(sink.events)
    assert per_partition == {0: [*range(51), *range(54, 104)], 1: [*range(100)], 2: [*range(100)]}
    (dead,) = [e for e in sink.events if e.error]
    assert dead.event_id == f"kafka:{name}:0:50" and dead.payload["last_offset"] == 53
    assert dead.error is not None
    assert dead.error.startswith(f"undecodable record batch at kafka:{name}:0:50 (offsets 50-53): ")
    assert source.stats.undecodable_batches == 1 and source.stats.reconnects == 0
    assert await committed_offsets(bootstrap, group, name, 3) == {0: 104, 1: 100, 2: 100}


async def test_backpressure_pauses_the_consumer(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("bp"), unique("g")
    await create_topic(bootstrap, name, partitions=2)
    await produce(bootstrap, name, [{"n": i} for i in range(50)])
    source = make_source(kafka_topic(bootstrap, name, group), poll_interval=0.1)
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: len(sink.events) >= 50, "the first 50 events")
        sink.set_accepting(False)
        await eventually(lambda: source.stats.paused, "the consumer to pause")
        await produce(bootstrap, name, [{"n": i} for i in range(50, 100)])
        polls = source.stats.polls
        await eventually(lambda: source.stats.polls >= polls + 5, "five polls while paused")
        assert len(sink.events) == 50  # nothing new while the engine is not accepting

        sink.set_accepting(True)
        await eventually(lambda: len(sink.events) >= 100, "the rest after resuming")
        assert not source.stats.paused

    assert sorted(v["n"] for v in sink.values()) == list(range(100))


async def test_store_failures_are_retried_before_committing(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("store"), unique("g")
    await create_topic(bootstrap, name, partitions=1)
    await produce(bootstrap, name, [{"n": i} for i in range(20)])
    source = make_source(kafka_topic(bootstrap, name, group))
    sink = RecordingSink(fail_next=2)
    commits_at_failure: list[int] = []
    sink.on_failure = lambda: commits_at_failure.append(source.stats.commits)

    async with running(source, sink):
        await handled(source, 20)

    assert sink.failed_batches == 2 and source.stats.store_retries == 2
    assert commits_at_failure == [0, 0]  # nothing committed while the store failed
    assert sorted(v["n"] for v in sink.values()) == list(range(20))
    assert await committed_offsets(bootstrap, group, name, 1) == {0: 20}


async def test_recovers_from_a_broker_restart(kafka_broker_private: KafkaBroker) -> None:
    broker = kafka_broker_private
    name, group = unique("flaky"), unique("g")
    await create_topic(broker.bootstrap, name, partitions=2)
    await produce(broker.bootstrap, name, [{"before": i} for i in range(30)])
    source = make_source(kafka_topic(broker.bootstrap, name, group))
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: len(sink.events) >= 30, "the events before the restart")
        sink.hold()
        await produce(broker.bootstrap, name, [{"held": i} for i in range(10)])
        await eventually(lambda: sink.in_flight, "a batch being stored")
        await broker.astop()
        sink.release()  # stored while the broker is down: its commit cannot go through
        await eventually(lambda: source.stats.reconnects >= 1, "a reconnect")
        await broker.astart()
        # tansu is memory-only: the topic (and the committed offsets) are gone.
        await create_topic(broker.bootstrap, name, partitions=2, exist_ok=True)
        await produce(broker.bootstrap, name, [{"after": i} for i in range(30)])
        await eventually(
            lambda: {v.get("after") for v in sink.values()} >= set(range(30)),
            "the events produced after the restart",
            timeout=30,
        )

    assert {v["before"] for v in sink.values() if "before" in v} == set(range(30))
    assert {v["held"] for v in sink.values() if "held" in v} == set(range(10))


async def test_starts_while_the_broker_is_down(kafka_broker_private: KafkaBroker) -> None:
    broker = kafka_broker_private
    name, group = unique("late"), unique("g")
    await broker.astop()
    source = make_source(kafka_topic(broker.bootstrap, name, group))
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: source.stats.reconnects >= 3, "failed connection attempts")
        await broker.astart()
        await create_topic(broker.bootstrap, name, partitions=1)
        await produce(broker.bootstrap, name, [{"n": i} for i in range(10)])
        await eventually(lambda: len(sink.events) >= 10, "the events once the broker is up")

    assert sorted(v["n"] for v in sink.values()) == list(range(10))


async def test_cancel_while_the_broker_is_down_is_prompt(
    kafka_broker_private: KafkaBroker,
) -> None:
    broker = kafka_broker_private
    name, group = unique("down"), unique("g")
    await create_topic(broker.bootstrap, name, partitions=1)
    await produce(broker.bootstrap, name, [{"n": 0}])
    source = make_source(kafka_topic(broker.bootstrap, name, group), close_timeout=1.0)
    sink = RecordingSink()

    async with running(source, sink):
        await eventually(lambda: len(sink.events) >= 1, "the first event")
        await broker.astop()
        polls = source.stats.polls
        await eventually(lambda: source.stats.polls >= polls + 3, "polls against a dead broker")
        started = time.monotonic()
    # The final commit and each client's close are bounded (3 s + 2 x 1 s); without the bounds
    # this would hang for aiokafka's 40 s request timeout. Generous slack for a busy machine.
    bound = source.commit_timeout + 2 * source.close_timeout
    assert time.monotonic() - started < bound + 10


async def test_a_decoder_may_give_zero_or_several_events(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("fanout"), unique("g")
    await create_topic(bootstrap, name, partitions=1)
    await produce(bootstrap, name, [{"copies": n} for n in (2, 0, 1, 3)])

    def fan_out(message: Any) -> list[Event]:
        copies = orjson.loads(message.value)["copies"]
        base = f"kafka:{message.topic}:{message.partition}:{message.offset}"
        return [Event("custom", f"{base}#{i}", {"i": i}) for i in range(copies)]

    source = make_source(kafka_topic(bootstrap, name, group), decode=fan_out, subscription="x")
    sink = RecordingSink()
    async with running(source, sink):
        await handled(source, 4)
    assert [e.event_id.rsplit(":", 1)[1] for e in sink.events] == [
        "0#0",
        "0#1",
        "2#0",
        "3#0",
        "3#1",
        "3#2",
    ]
    assert await committed_offsets(bootstrap, group, name, 1) == {0: 4}  # message 1 too


async def test_two_sources_in_one_group_share_the_partitions(kafka_broker: KafkaBroker) -> None:
    bootstrap, name, group = kafka_broker.bootstrap, unique("shared"), unique("g")
    await create_topic(bootstrap, name, partitions=4)
    await produce(bootstrap, name, [{"first": i} for i in range(100)])
    topic = kafka_topic(bootstrap, name, group)
    one, two = make_source(topic, max_records=10), make_source(topic, max_records=10)
    sink_one, sink_two = RecordingSink(), RecordingSink()

    def split() -> bool:
        mine, theirs = set(one.stats.partitions), set(two.stats.partitions)
        return bool(mine) and bool(theirs) and mine | theirs == {0, 1, 2, 3}

    async with running(one, sink_one):
        await handled(one, 100)
        async with running(two, sink_two):
            await eventually(split, "the partitions to be split between the two")
            assert not set(one.stats.partitions) & set(two.stats.partitions)
            await produce(bootstrap, name, [{"second": i} for i in range(100)])
            await eventually(
                lambda: len(sink_one.events) + len(sink_two.events) >= 200, "the next 100"
            )
            theirs = set(two.stats.partitions)

    # What the first consumer committed before the rebalance is not delivered again,
    assert not any("first" in v for v in sink_two.values())
    assert sorted(v["first"] for v in sink_one.values() if "first" in v) == list(range(100))
    # and the new messages went to the owner of their partition, each exactly once.
    second = [e for e in sink_one.events + sink_two.events if "second" in e.payload["value"]]
    assert sorted(e.payload["value"]["second"] for e in second) == list(range(100))
    assert {e.payload["partition"] for e in sink_two.events} <= theirs
