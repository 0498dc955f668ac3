"""S3 object-created triggers: notifications via SQS (or Kafka), or polling a bucket.

``S3Events`` declares the trigger; the mode follows from its fields:

- ``queue_url=``: S3 event notifications delivered to an SQS queue (:class:`S3SqsSource`);
- ``kafka_topic=``: S3 notification records arriving on a Kafka topic, consumed by the Kafka sensor,
  which turns each message into events with :meth:`S3Events.events_from_message`
  (:func:`records_on_kafka_source`);
- neither: the bucket is listed every ``poll_interval`` seconds (:class:`S3PollSource`).

Either way a source acknowledges (deletes the SQS messages, advances its cursor) only after the
engine has stored the events' outcomes, so a crash loses nothing and a redelivery runs nothing twice.
Parsing and the poll cursor are pure and live in ``sensors.s3_records``; the sources in
``sensors.s3_sqs`` and ``sensors.s3_poll``, what they share of AWS in ``sensors.aws``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from engine.errors import TriggerError

from .aws import client_kwargs
from .base import Event, EventFilter, EventSource, ParamsMapper, Trigger
from .kafka import KafkaTopic, consumer_in_words
from .kafka_records import KafkaRecord, kafka_event_id
from .kafka_source import KafkaSource
from .s3_poll import S3PollSource, Start
from .s3_records import (
    KeyFilter,
    events_from_notification,
)
from .s3_sqs import DEFAULT_VISIBILITY, S3SqsSource

if TYPE_CHECKING:
    from engine.clock import Clock

log = logging.getLogger("podium.sensors.s3")

Mode = Literal["sqs", "kafka", "poll"]

_STARTS: tuple[str, ...] = get_args(Start)


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
        return client_kwargs(self.endpoint_url, self.region_name, self.client_options)

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
            visibility_timeout=trigger.visibility_timeout or DEFAULT_VISIBILITY,
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


__all__ = ["S3Events", "records_on_kafka_source", "source_for"]
