"""The S3 sources against a real moto S3/SQS server (aiobotocore, no mocks).

The engine side is ``RecordingSink``, an in-memory implementation of Podium's own ``EventSink``
seam that stores batches the way the engine does: one outcome per event, deduplicated by event id,
the cursor committed with the batch. It can fail a store, hold stores back, and refuse to accept.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from aiobotocore.session import get_session

from engine.errors import StoreError
from sensors.base import Event, EventBatch, EventSource
from sensors.s3 import S3Events, source_for
from sensors.s3_poll import S3PollSource
from tests.servers import MotoServer, make_bucket_with_sqs_notifications

pytestmark = pytest.mark.timeout(60)

BODY = b"id,name\n1,x\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RecordingSink:
    """An ``EventSink`` that records what sources publish and stores it like the engine."""

    def __init__(self) -> None:
        self.published: list[EventBatch] = []
        self.failed: list[EventBatch] = []
        self.pending: list[EventBatch] = []  # published while holding, not yet stored
        self.ran: list[Event] = []
        self.cursors: dict[str, Any] = {}
        self.fail_next = 0
        self.holding = False
        self.accepting_checks = 0
        self.waiting_for_accept = False
        self._accepting = True
        self._resumed = anyio.Event()
        self._changed = anyio.Event()

    # -- EventSink
    async def publish(self, batch: EventBatch) -> None:
        self.published.append(batch)
        if self.holding:
            self.pending.append(batch)
        else:
            self._store(batch)
        self._notify()

    @property
    def accepting(self) -> bool:
        self.accepting_checks += 1
        self._notify()
        return self._accepting

    async def wait_accepting(self) -> None:
        self.waiting_for_accept = True
        self._notify()
        while not self._accepting:
            await self._resumed.wait()
        self.waiting_for_accept = False

    async def load_cursor(self, cursor_id: str) -> Any:
        return self.cursors.get(cursor_id)

    # -- test controls
    def pause(self) -> None:
        self._accepting = False

    def resume(self) -> None:
        self._accepting = True
        self._resumed.set()
        self._resumed = anyio.Event()

    def release(self) -> None:
        self.holding = False
        for batch in self.pending:
            self._store(batch)
        self.pending.clear()
        self._notify()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()

    @property
    def ran_keys(self) -> list[str]:
        return sorted(e.params["key"] for e in self.ran if e.params)

    @property
    def published_ids(self) -> Counter[str]:
        return Counter(e.event_id for b in self.published for e in b.events)

    def _store(self, batch: EventBatch) -> None:
        if self.fail_next:
            self.fail_next -= 1
            self.failed.append(batch)
            batch.mark_stored(StoreError("disk I/O error"))
            return
        stored = {e.event_id for e in self.ran}
        outcomes = []
        for event in batch.events:
            if event.error is not None:
                outcomes.append("dead")
            elif event.event_id in stored:
                outcomes.append("deduplicated")
            else:
                outcomes.append("ran")
                stored.add(event.event_id)
                self.ran.append(event)
        if batch.cursor is not None:
            cursor_id, value = batch.cursor
            self.cursors[cursor_id] = orjson.loads(orjson.dumps(value))  # as the store keeps it
        batch.outcomes = outcomes
        batch.mark_stored()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


@asynccontextmanager
async def running(source: EventSource, sink: RecordingSink) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(source.run, sink)
        yield
        tg.cancel_scope.cancel()


async def put_objects(kwargs: Mapping[str, Any], bucket: str, keys: list[str]) -> dict[str, str]:
    """Upload ``keys``; returns each key's ETag (without quotes)."""
    etags = {}
    async with get_session().create_client("s3", **kwargs) as s3:
        for key in keys:
            response = await s3.put_object(Bucket=bucket, Key=key, Body=BODY)
            etags[key] = response["ETag"].strip('"')
    return etags


async def queue_counts(kwargs: Mapping[str, Any], queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    async with get_session().create_client("sqs", **kwargs) as sqs:
        response = await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    attrs = response["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


async def wait_queue_empty(kwargs: Mapping[str, Any], queue_url: str, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while await queue_counts(kwargs, queue_url) != (0, 0):
            await anyio.sleep(0.05)


async def sqs_setup(moto: MotoServer, **trigger_options: Any) -> tuple[str, str, S3Events]:
    """A bucket notifying every created object (any prefix) to a new queue, and a trigger on it."""
    bucket, queue = unique("landing"), unique("events")
    queue_url = await make_bucket_with_sqs_notifications(moto.aws_client_kwargs(), bucket, queue)
    trigger = S3Events(
        bucket=bucket,
        prefix="crm/",
        queue_url=queue_url,
        endpoint_url=moto.endpoint_url,
        wait_time=1,
        **trigger_options,
    )
    return bucket, queue_url, trigger


# ------------------------------------------------------------------------------------------- SQS

CRM_KEYS = ["crm/new file ü.csv", "crm/a+b=c&d.csv", "crm/日本/データ.csv", "crm/plain.csv"]


async def test_sqs_one_event_per_object_under_the_prefix(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue_url, trigger = await sqs_setup(moto_server)
    etags = await put_objects(kwargs, bucket, [*CRM_KEYS, "other/not-mine.csv"])
    async with get_session().create_client("sqs", **kwargs) as sqs:
        garbage = await sqs.send_message(QueueUrl=queue_url, MessageBody="not a notification")
    sink = RecordingSink()
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: len(sink.ran) == len(CRM_KEYS) + 1)
        # the test event gave no event and was deleted too, and the garbage message was deleted
        # once its dead event was stored
        await wait_queue_empty(kwargs, queue_url)
    (dead,) = [e for b in sink.published for e in b.events if e.error is not None]
    assert dead.event_id == f"sqs:{garbage['MessageId']}"
    assert dead.raw == b"not a notification"
    # the other prefix's object is delivered too: the engine's router records it as `filtered`
    # for this trigger (S3Events.matches), so no consumed event goes unrecorded
    (other,) = [e for e in sink.ran if e.params and e.params["key"] == "other/not-mine.csv"]
    assert not trigger.matches(other.payload)
    sink.ran.remove(other)
    assert sink.ran_keys == sorted(CRM_KEYS)
    for event in sink.ran:
        assert event.params is not None
        key = event.params["key"]
        assert event.params == {"bucket": bucket, "key": key, "size": len(BODY), "etag": etags[key]}
        assert event.event_id == f"s3:{bucket}/{key}@{etags[key]}"  # moto sends no sequencer
        assert event.payload["eventName"] == "ObjectCreated:Put"
        assert event.source == "s3"
    expected = Counter(e.event_id for e in [*sink.ran, other, dead])
    assert sink.published_ids == expected  # nothing else, no repeats
    assert all(b.subscription == trigger.subscription for b in sink.published)


async def test_sqs_failed_store_leaves_messages_for_redelivery(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue_url, trigger = await sqs_setup(moto_server, visibility_timeout=1)
    keys = ["crm/first.csv", "crm/second one.csv"]
    await put_objects(kwargs, bucket, keys)
    sink = RecordingSink()
    sink.fail_next = 1
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: len(sink.ran) == len(keys))
        await wait_queue_empty(kwargs, queue_url)
    (failed,) = sink.failed
    assert failed.events, "the failed batch carried events"
    for event in failed.events:  # not deleted: SQS delivered the same notification again
        assert sink.published_ids[event.event_id] == 2
    assert sink.ran_keys == sorted(keys)


async def test_sqs_messages_stay_invisible_while_stored(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue_url, trigger = await sqs_setup(moto_server, visibility_timeout=1)
    await put_objects(kwargs, bucket, ["crm/slow.csv"])
    sink = RecordingSink()
    sink.holding = True
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: bool(sink.pending))
        in_flight = (await queue_counts(kwargs, queue_url))[1]
        assert in_flight >= 1
        # Three visibility timeouts pass while the store is slow: the message is renewed, not
        # redelivered (a redelivery would be received and published a second time).
        with anyio.move_on_after(3):
            while True:
                assert await queue_counts(kwargs, queue_url) == (0, in_flight)
                assert len(sink.published) == 1
                await anyio.sleep(0.1)
        sink.release()
        await wait_queue_empty(kwargs, queue_url)
    assert sink.ran_keys == ["crm/slow.csv"]
    assert len(sink.published) == 1


async def test_sqs_no_receive_while_not_accepting(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue_url, trigger = await sqs_setup(moto_server)
    await put_objects(kwargs, bucket, ["crm/a.csv", "crm/b.csv"])
    sink = RecordingSink()
    sink.pause()
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: sink.waiting_for_accept)
        # nothing received: the test event and both notifications are still visible
        assert await queue_counts(kwargs, queue_url) == (3, 0)
        assert sink.published == []
        sink.resume()
        await sink.wait_until(lambda: len(sink.ran) == 2)
        await wait_queue_empty(kwargs, queue_url)
    assert sink.ran_keys == ["crm/a.csv", "crm/b.csv"]


async def test_sqs_source_outlives_errors(
    moto_server: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket, queue = unique("landing"), unique("later")
    queue_url = f"{moto_server.endpoint_url}/123456789012/{queue}"  # moto's URL, not created yet
    trigger = S3Events(
        bucket=bucket, queue_url=queue_url, endpoint_url=moto_server.endpoint_url, wait_time=1
    )
    sink = RecordingSink()
    async with running(source_for(trigger), sink):
        with anyio.fail_after(10):
            while not any("reconnecting" in r.getMessage() for r in caplog.records):
                await anyio.sleep(0.05)
        created = await make_bucket_with_sqs_notifications(kwargs, bucket, queue)
        assert created == queue_url
        await put_objects(kwargs, bucket, ["late.csv"])
        await sink.wait_until(lambda: len(sink.ran) == 1)
    assert sink.ran_keys == ["late.csv"]


# --------------------------------------------------------------------------------------- polling


async def make_bucket(kwargs: Mapping[str, Any]) -> str:
    bucket = unique("polled")
    async with get_session().create_client("s3", **kwargs) as s3:
        await s3.create_bucket(Bucket=bucket)
    return bucket


async def polls_pass(sink: RecordingSink, source: EventSource, polls: int = 2) -> None:
    """Run ``source`` until it has finished ``polls`` full polls (each begins with an accepting
    check) and stop it."""
    async with running(source, sink):
        checks = sink.accepting_checks
        await sink.wait_until(lambda: sink.accepting_checks >= checks + polls + 1)


@pytest.mark.parametrize("lookback", [0.0, 60.0])
async def test_polling_resumes_without_repeats_or_gaps(
    moto_server: MotoServer, lookback: float
) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket = await make_bucket(kwargs)
    before = ["crm/a.csv", "crm/new file ü.csv", "crm/sub/b.csv", "crm/日本.csv"]
    etags = await put_objects(kwargs, bucket, [*before, "other/x.csv", "crm/skip.json"])

    def poller() -> S3PollSource:
        # small pages and batches so that pagination and chunked cursor commits are exercised
        return S3PollSource(
            bucket,
            prefix="crm/",
            suffix=".csv",
            endpoint_url=moto_server.endpoint_url,
            poll_interval=0.05,
            start="existing",
            lookback=lookback,
            page_size=2,
            max_batch=3,
        )

    sink = RecordingSink()
    async with running(poller(), sink):
        await sink.wait_until(lambda: len(sink.ran) == len(before))
    assert sink.ran_keys == sorted(before)
    assert len(sink.published) == 2  # 4 objects in batches of at most 3
    event = next(e for e in sink.ran if e.params and e.params["key"] == "crm/new file ü.csv")
    assert event.event_id == f"s3:{bucket}/crm/new file ü.csv@{etags['crm/new file ü.csv']}"
    assert event.params == {
        "bucket": bucket,
        "key": "crm/new file ü.csv",
        "size": len(BODY),
        "etag": etags["crm/new file ü.csv"],
    }

    # a new instance resumes from the committed cursor: nothing again
    await polls_pass(sink, poller())
    assert len(sink.ran) == len(before)

    # objects written after the restart (very likely in the same second as the first ones, the
    # boundary the cursor remembers keys for) are all emitted, once
    after = ["crm/c.csv", "crm/d e.csv"]
    await put_objects(kwargs, bucket, after)
    async with running(poller(), sink):
        await sink.wait_until(lambda: len(sink.ran) == len(before) + len(after))
    await polls_pass(sink, poller())
    assert sink.ran_keys == sorted(before + after)
    assert set(sink.published_ids.values()) == {1}  # not even a deduplicated repeat


async def test_polling_new_only_by_default(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket = await make_bucket(kwargs)
    await put_objects(kwargs, bucket, ["crm/old.csv"])
    trigger = S3Events(
        bucket=bucket, prefix="crm/", endpoint_url=moto_server.endpoint_url, poll_interval=0.05
    )
    sink = RecordingSink()
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: trigger.subscription in sink.cursors)  # the baseline
        assert sink.ran == []
        await put_objects(kwargs, bucket, ["crm/new.csv"])
        await sink.wait_until(lambda: len(sink.ran) == 1)
    assert sink.ran_keys == ["crm/new.csv"]
    await polls_pass(sink, source_for(trigger))
    assert sink.ran_keys == ["crm/new.csv"]


async def test_polling_failed_store_is_emitted_again(moto_server: MotoServer) -> None:
    kwargs = moto_server.aws_client_kwargs()
    bucket = await make_bucket(kwargs)
    await put_objects(kwargs, bucket, ["crm/a.csv", "crm/b.csv"])
    trigger = S3Events(
        bucket=bucket,
        endpoint_url=moto_server.endpoint_url,
        poll_interval=0.05,
        start="existing",
    )
    sink = RecordingSink()
    sink.fail_next = 1
    async with running(source_for(trigger), sink):
        await sink.wait_until(lambda: len(sink.ran) == 2)
    assert len(sink.failed) == 1
    assert sink.ran_keys == ["crm/a.csv", "crm/b.csv"]
    assert set(sink.published_ids.values()) == {2}  # once failed, once stored
