"""S3 object-created triggers: notifications via SQS (or Kafka), or polling a bucket.

``S3Events`` declares the trigger; the mode follows from its fields:

- ``queue_url=``: S3 event notifications delivered to an SQS queue (:class:`S3SqsSource`);
- ``kafka_topic=``: S3 notification records arriving on a Kafka topic, consumed by the Kafka sensor,
  which turns each message into events with :meth:`S3Events.events_from_message`
  (:func:`records_on_kafka_source`);
- neither: the bucket is listed every ``poll_interval`` seconds (:class:`S3PollSource`).

Either way a source acknowledges (deletes the SQS messages, advances its cursor) only after the
engine has stored the events' outcomes, so a crash loses nothing and a redelivery runs nothing twice.
Parsing and the poll cursor are pure and live in ``sensors.s3_records``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args

import aiohttp
import anyio
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from engine.backoff import Backoff
from engine.errors import TriggerError, describe_exception

from .base import Event, EventBatch, EventFilter, EventSink, EventSource, ParamsMapper, Trigger
from .kafka import KafkaTopic, consumer_in_words
from .kafka_records import KafkaRecord, kafka_event_id
from .kafka_source import KafkaSource
from .s3_records import (
    KeyFilter,
    ListedObject,
    PollCursor,
    event_from_listing,
    events_from_notification,
    listed_object,
)

if TYPE_CHECKING:
    from engine.clock import Clock

log = logging.getLogger("podium.sensors.s3")

Start = Literal["new", "existing"]
Mode = Literal["sqs", "kafka", "poll"]

#: Errors of the AWS SDK and the network that a source outlives by reconnecting.
AWS_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    ClientError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)

_STARTS: tuple[str, ...] = get_args(Start)
_DEFAULT_VISIBILITY = 60
_RECONNECT = Backoff(0.5, cap=30.0)
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class S3Events:
    """Start one run per object created under ``bucket``/``prefix`` (and ending in ``suffix``).

    Run params are ``{"bucket", "key", "size", "etag"}`` (keys decoded); ``ctx.event`` is the S3
    record (or listing entry) with those four added. Events come from

    - S3 event notifications on the SQS queue ``queue_url``: messages are received
      (``wait_time`` s long polls), kept invisible while their runs are stored (renewing
      ``visibility_timeout``, default 60 s), then deleted; or
    - S3 notification records on the Kafka topic ``kafka_topic`` (``bootstrap_servers``,
      ``group_id``), read by the Kafka sensor; or
    - a ListObjectsV2 poll of the bucket every ``poll_interval`` seconds. ``start="new"`` (default)
      emits only objects that appear after the trigger first ran; ``"existing"`` also emits what is
      already there. ``lookback`` (seconds) must exceed the longest upload; see
      ``sensors.s3_records`` for why and for the cursor that resumes after a restart.

    ``endpoint_url``, ``region_name`` and ``client_options`` (extra ``create_client`` arguments:
    credentials, ``config``) address S3/SQS; credentials otherwise come from the environment.
    Triggers with equal :attr:`subscription` share one source.
    """

    bucket: str
    _: KW_ONLY
    prefix: str = ""
    suffix: str = ""
    queue_url: str | None = None
    kafka_topic: str | None = None
    bootstrap_servers: str | None = None
    group_id: str | None = None
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    poll_interval: float = 30.0
    start: Start = "new"
    lookback: float = 60.0
    visibility_timeout: int | None = None
    wait_time: int = 20
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    filter: EventFilter | None = None
    params: ParamsMapper | None = None

    def __post_init__(self) -> None:
        where = f"S3Events(bucket={self.bucket!r})"
        if not isinstance(self.bucket, str) or not self.bucket:
            raise TriggerError(f"S3Events: bucket must be a non-empty string, got {self.bucket!r}")
        if self.queue_url is not None and self.kafka_topic is not None:
            raise TriggerError(
                f"{where}: give queue_url (notifications via SQS) or kafka_topic (notifications "
                "via Kafka), not both"
            )
        if self.kafka_topic is None and (self.bootstrap_servers or self.group_id):
            raise TriggerError(f"{where}: bootstrap_servers and group_id need kafka_topic")
        if self.queue_url is None and self.visibility_timeout is not None:
            raise TriggerError(f"{where}: visibility_timeout applies to queue_url (SQS) only")
        if self.start not in _STARTS:
            raise TriggerError(f"{where}: start must be one of {_STARTS}, got {self.start!r}")
        if self.mode != "poll" and self.start != "new":
            raise TriggerError(
                f"{where}: start={self.start!r} applies to polling only; notifications only "
                "report objects created after they were configured"
            )
        if not (math.isfinite(self.poll_interval) and self.poll_interval > 0):
            raise TriggerError(f"{where}: poll_interval must be > 0, got {self.poll_interval!r}")
        if not (math.isfinite(self.lookback) and self.lookback >= 0):
            raise TriggerError(f"{where}: lookback must be >= 0, got {self.lookback!r}")
        if self.visibility_timeout is not None and not 1 <= self.visibility_timeout <= 43_200:
            raise TriggerError(
                f"{where}: visibility_timeout must be 1..43200 seconds, "
                f"got {self.visibility_timeout!r}"
            )
        if not 0 <= self.wait_time <= 20:
            raise TriggerError(f"{where}: wait_time must be 0..20 seconds, got {self.wait_time!r}")

    @property
    def mode(self) -> Mode:
        """``"sqs"``, ``"kafka"`` or ``"poll"``: how this trigger's events arrive."""
        if self.queue_url is not None:
            return "sqs"
        if self.kafka_topic is not None:
            return "kafka"
        return "poll"

    @property
    def subscription(self) -> str:
        """The shared source's id: one SQS queue, one Kafka topic and group, or one polled listing.

        A queue or topic is consumed by one source whatever its triggers filter; a polled listing
        is identified by everything that decides which objects it emits (and names its cursor).
        """
        if self.queue_url is not None:
            return f"s3-sqs:{self.queue_url}"
        if self.kafka_topic is not None:
            return f"s3-kafka:{self.kafka_bootstrap}:{self.kafka_group}:{self.kafka_topic}"
        endpoint = self.endpoint_url or "aws"
        return f"s3-poll:{endpoint}:{self.bucket}:{self.prefix}:{self.suffix}"

    def describe(self) -> str:
        """Short human text, e.g. ``s3://landing/crm/*.csv via SQS http://.../events``."""
        where = f"s3://{self.bucket}/{self.prefix}" + (f"*{self.suffix}" if self.suffix else "")
        if self.queue_url is not None:
            return f"{where} via SQS {self.queue_url}"
        if self.kafka_topic is not None:
            return f"{where} via Kafka topic {self.kafka_topic}"
        return f"{where} polled every {self.poll_interval:g}s"

    @property
    def asset_uri(self) -> str:
        """The bucket and prefix as an asset (``SourceAsset``): ``s3://{bucket}/{prefix}``."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def kafka_bootstrap(self) -> str:
        return self.bootstrap_servers or "127.0.0.1:9092"

    @property
    def kafka_group(self) -> str:
        return self.group_id or "podium"

    @property
    def key_filter(self) -> KeyFilter:
        return KeyFilter(bucket=self.bucket, prefix=self.prefix, suffix=self.suffix)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """True when an S3 event's payload is for this trigger's bucket, prefix and suffix (for a
        router that serves several triggers from one queue or topic)."""
        bucket, key = payload.get("bucket"), payload.get("key")
        return (
            isinstance(bucket, str)
            and isinstance(key, str)
            and self.key_filter.matches(bucket, key)
        )

    def events_from_message(
        self, value: bytes | str | None, *, source_id: str, sharing: Sequence[S3Events] = ()
    ) -> list[Event]:
        """The events of one Kafka message (``source_id``: ``kafka:{topic}:{partition}:{offset}``):
        its object-created records for this trigger's (or one of the ``sharing`` triggers') bucket,
        prefix and suffix.

        Zero events (a test event, another prefix) still means the message is done: commit it.
        """
        filters = [self.key_filter, *(t.key_filter for t in sharing)]
        return events_from_notification(
            value if value is not None else b"", source_id=source_id, only=filters
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for ``session.create_client(service, **kwargs)``."""
        return _client_kwargs(self.endpoint_url, self.region_name, self.client_options)

    # -- the Trigger protocol (describe and matches are above) -----------------------------------

    @property
    def schedule(self) -> None:
        return None

    @property
    def consumer_key(self) -> str | None:
        """The Kafka consumer of ``kafka_topic`` mode (None for SQS and polling)."""
        if self.kafka_topic is None:
            return None
        return consumer_in_words(self.kafka_bootstrap, self.kafka_group, self.kafka_topic)

    def source_key(self, dag_id: str, index: int) -> str:
        """:attr:`subscription`, whatever the DAG."""
        return self.subscription

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> EventSource:
        """The SQS, Kafka or polling source of this trigger and the ``sharing`` ones."""
        others = [t for t in sharing if isinstance(t, S3Events)]
        if len(others) != len(sharing):
            foreign = next(t for t in sharing if not isinstance(t, S3Events))
            raise TriggerError(f"{foreign!r} is not an S3 trigger of {self.subscription}")
        if self.mode == "kafka":
            return records_on_kafka_source(self, *others)
        return source_for(self, *others)


def source_for(trigger: S3Events, *sharing: S3Events) -> EventSource:
    """The source delivering ``trigger``'s events; ``sharing`` are the other triggers with the same
    subscription (one queue serves them all; the router applies each one's key filter)."""
    if trigger.mode == "sqs":
        assert trigger.queue_url is not None
        return S3SqsSource(
            trigger.queue_url,
            # every object record goes to the router, which records the ones no trigger wants as
            # `filtered` (each trigger's prefix/suffix is applied there by `S3Events.matches`)
            filters=None,
            endpoint_url=trigger.endpoint_url,
            region_name=trigger.region_name,
            visibility_timeout=trigger.visibility_timeout or _DEFAULT_VISIBILITY,
            wait_time=trigger.wait_time,
            client_options=trigger.client_options,
            subscription=trigger.subscription,
        )
    if trigger.mode == "poll":
        return S3PollSource(
            trigger.bucket,
            prefix=trigger.prefix,
            suffix=trigger.suffix,
            endpoint_url=trigger.endpoint_url,
            region_name=trigger.region_name,
            poll_interval=trigger.poll_interval,
            start=trigger.start,
            lookback=trigger.lookback,
            client_options=trigger.client_options,
            subscription=trigger.subscription,
        )
    raise TriggerError(
        f"S3Events(kafka_topic={trigger.kafka_topic!r}): Kafka-delivered S3 records are read by "
        "the Kafka sensor (S3Events.events_from_message), not by an S3 source"
    )


def records_on_kafka_source(trigger: S3Events, *sharing: S3Events) -> KafkaSource:
    """S3 notification records on ``trigger.kafka_topic``: the Kafka sensor, decoding each message
    with :meth:`S3Events.events_from_message`, so only the records for the bucket, prefix and
    suffix of ``trigger`` or a ``sharing`` trigger become events (the router then gives each
    trigger its own, ``S3Events.matches``). A message with no such record is committed all the same.
    """
    if trigger.kafka_topic is None:
        raise TriggerError(f"{trigger!r} does not read notifications from Kafka")
    for other in sharing:
        if other.subscription != trigger.subscription:
            raise TriggerError(f"{other!r} is not a trigger of {trigger.subscription}")
    topic = KafkaTopic(
        trigger.kafka_topic,
        bootstrap_servers=trigger.kafka_bootstrap,
        group_id=trigger.kafka_group,
        value_format="raw",
    )

    def decode(record: KafkaRecord) -> list[Event]:
        source_id = kafka_event_id(record.topic, record.partition, record.offset)
        return trigger.events_from_message(record.value, source_id=source_id, sharing=sharing)

    return KafkaSource(topic, decode=decode, subscription=trigger.subscription)


class S3SqsSource:
    """Reads S3 event notifications from an SQS queue.

    Each receive (up to 10 messages, a ``wait_time`` s long poll) becomes one ``EventBatch``. While
    it is being stored the messages' visibility is renewed every ``visibility_timeout / 2`` seconds;
    once stored, every message is deleted, including those that gave no event (test events, other
    prefixes) or a dead one (unparseable). If storing fails nothing is deleted, and SQS redelivers
    the messages after the visibility timeout. No receive is made while the sink is not accepting.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        filters: Sequence[KeyFilter] | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = "us-east-1",
        visibility_timeout: int = _DEFAULT_VISIBILITY,
        wait_time: int = 20,
        client_options: Mapping[str, Any] | None = None,
        subscription: str | None = None,
    ) -> None:
        self.queue_url = queue_url
        self.filters = list(filters) if filters is not None else None
        self.visibility_timeout = visibility_timeout
        self.wait_time = wait_time
        self.subscription = subscription or f"s3-sqs:{queue_url}"
        self._client_kwargs = _client_kwargs(endpoint_url, region_name, client_options or {})

    async def run(self, sink: EventSink) -> NoReturn:
        session = get_session()
        delays = _RECONNECT.delays()
        while True:
            try:
                async with _aws_client(session, "sqs", self._client_kwargs) as sqs:
                    while True:
                        await self._receive_once(sqs, sink)
                        delays.reset()
            except AWS_ERRORS as exc:
                delay = next(delays)
                log.warning(
                    "%s: %s; reconnecting in %.1fs",
                    self.subscription,
                    describe_exception(exc),
                    delay,
                )
            await anyio.sleep(delay)

    async def _receive_once(self, sqs: Any, sink: EventSink) -> None:
        while not sink.accepting:
            await sink.wait_accepting()
        response = await sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_time,
            VisibilityTimeout=self.visibility_timeout,
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if not messages:
            return
        events = [
            event
            for message in messages
            for event in events_from_notification(
                message.get("Body", ""),
                source_id=f"sqs:{message['MessageId']}",
                only=self.filters,
            )
        ]
        if events and not await self._store(sqs, sink, messages, events):
            return  # not acknowledged: SQS redelivers them after the visibility timeout
        await self._delete(sqs, messages)

    async def _store(
        self, sqs: Any, sink: EventSink, messages: list[dict[str, Any]], events: list[Event]
    ) -> bool:
        batch = EventBatch(self.subscription, events)
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_invisible, sqs, messages)
            try:
                await sink.publish(batch)
                await batch.stored()
            except Exception as exc:
                failure = exc
            tg.cancel_scope.cancel()
        if isinstance(failure, anyio.ClosedResourceError | anyio.BrokenResourceError):
            raise failure  # the engine's bus is closed: it is stopping
        if failure is not None:
            log.warning(
                "%s: %d event(s) from %d message(s) not stored (%s); leaving them to SQS "
                "redelivery",
                self.subscription,
                len(events),
                len(messages),
                describe_exception(failure),
            )
            return False
        return True

    async def _keep_invisible(self, sqs: Any, messages: list[dict[str, Any]]) -> NoReturn:
        entries = [
            {
                "Id": str(i),
                "ReceiptHandle": m["ReceiptHandle"],
                "VisibilityTimeout": self.visibility_timeout,
            }
            for i, m in enumerate(messages)
        ]
        while True:
            await anyio.sleep(self.visibility_timeout / 2)
            try:
                response = await sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except AWS_ERRORS as exc:
                log.warning("%s: cannot extend visibility: %s", self.subscription, exc)
                continue
            for failed in response.get("Failed", []):
                log.warning("%s: cannot extend visibility: %s", self.subscription, failed)

    async def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        response = await sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        for failed in response.get("Failed", []):
            # Redelivered later and deduplicated by the engine: harmless but worth seeing.
            log.warning("%s: cannot delete message: %s", self.subscription, failed)


class S3PollSource:
    """Lists ``bucket``/``prefix`` every ``poll_interval`` seconds and emits the objects not seen.

    The cursor (``sensors.s3_records.PollCursor``) is committed with each batch's runs under the id
    :attr:`subscription` and loaded at start. On the very first start, ``start="new"`` records what
    is already in the bucket without emitting it, ``"existing"`` emits it. New objects are emitted
    oldest first in batches of at most ``max_batch``; a batch that fails to store is re-emitted at
    the next poll (the engine deduplicates what did get stored).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        suffix: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = "us-east-1",
        poll_interval: float = 30.0,
        start: Start = "new",
        lookback: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
        subscription: str | None = None,
        page_size: int = 1000,
        max_batch: int = 500,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.key_filter = KeyFilter(bucket=bucket, prefix=prefix, suffix=suffix)
        self.poll_interval = poll_interval
        self.start = start
        self.lookback = lookback
        self.page_size = page_size
        self.max_batch = max_batch
        self.subscription = subscription or (
            f"s3-poll:{endpoint_url or 'aws'}:{bucket}:{prefix}:{suffix}"
        )
        self._client_kwargs = _client_kwargs(endpoint_url, region_name, client_options or {})

    @property
    def cursor_id(self) -> str:
        return self.subscription

    async def run(self, sink: EventSink) -> NoReturn:
        stored = await sink.load_cursor(self.cursor_id)
        cursor = None if stored is None else PollCursor.from_json(stored, lookback=self.lookback)
        session = get_session()
        delays = _RECONNECT.delays()
        while True:
            try:
                async with _aws_client(session, "s3", self._client_kwargs) as s3:
                    while True:
                        while not sink.accepting:
                            await sink.wait_accepting()
                        cursor = await self._poll(s3, sink, cursor)
                        delays.reset()
                        await anyio.sleep(self.poll_interval)
            except AWS_ERRORS as exc:
                delay = next(delays)
                log.warning(
                    "%s: %s; listing again in %.1fs",
                    self.subscription,
                    describe_exception(exc),
                    delay,
                )
            await anyio.sleep(delay)

    async def _poll(self, s3: Any, sink: EventSink, cursor: PollCursor | None) -> PollCursor | None:
        """One listing; returns the cursor as committed afterwards (None: no baseline yet)."""
        if cursor is None and self.start == "new":
            baseline = PollCursor(lookback=self.lookback)
            async for page in self._pages(s3):
                baseline = baseline.advance(page)
            return baseline if await self._commit(sink, [], baseline) else None
        current = cursor or PollCursor(lookback=self.lookback)
        fresh: list[ListedObject] = []
        async for page in self._pages(s3):
            fresh.extend(o for o in page if current.is_new(o))
        fresh = current.new_objects(fresh)
        for first in range(0, len(fresh), self.max_batch):
            if first:
                while not sink.accepting:
                    await sink.wait_accepting()
            chunk = fresh[first : first + self.max_batch]
            following = current.advance(chunk)
            events = [event_from_listing(self.bucket, o) for o in chunk]
            if not await self._commit(sink, events, following):
                break  # stay at the last committed cursor; the next poll emits the rest again
            current = following
        return current

    async def _pages(self, s3: Any) -> AsyncIterator[list[ListedObject]]:
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": self.page_size}
        )
        async for page in pages:
            objects = (listed_object(entry) for entry in page.get("Contents", []))
            yield [o for o in objects if self.key_filter.matches(self.bucket, o.key)]

    async def _commit(self, sink: EventSink, events: list[Event], cursor: PollCursor) -> bool:
        batch = EventBatch(self.subscription, events, cursor=(self.cursor_id, cursor.to_json()))
        await sink.publish(batch)
        try:
            await batch.stored()
        except Exception as exc:
            log.warning(
                "%s: %d event(s) not stored (%s); the next poll emits them again",
                self.subscription,
                len(events),
                describe_exception(exc),
            )
            return False
        if events:
            log.info("%s: %d new object(s)", self.subscription, len(events))
        return True


@asynccontextmanager
async def _aws_client(session: Any, service: str, kwargs: Mapping[str, Any]) -> AsyncIterator[Any]:
    """An aiobotocore client that is closed even when the task is cancelled (shielded, bounded)."""
    context = session.create_client(service, **kwargs)
    client = await context.__aenter__()
    try:
        yield client
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await context.__aexit__(None, None, None)


def _client_kwargs(
    endpoint_url: str | None, region_name: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if endpoint_url is not None:
        kwargs["endpoint_url"] = endpoint_url
    if region_name is not None:
        kwargs["region_name"] = region_name
    kwargs.update(options)
    return kwargs


__all__ = [
    "AWS_ERRORS",
    "S3Events",
    "S3PollSource",
    "S3SqsSource",
    "events_from_notification",
    "records_on_kafka_source",
    "source_for",
]
