"""The running Kafka sensor: ``KafkaSource``, one consumer for the triggers of one subscription.

The source polls with ``getmany``, publishes each poll's messages as one ``EventBatch`` (all
partitions, offset order within each), waits until the engine has stored their outcomes, sends dead
messages to the dead-letter topic, and only then commits, per partition, the batch's last offset
+ 1. One batch is in flight at a time, so a commit never passes an event that is not stored. If the
store fails, the same events are published again after a backoff (the engine deduplicates by event
id). While the engine is not accepting, the assigned partitions are paused and polling goes on, so
the consumer stays in its group. Kafka and network errors close the consumer and open a new one
after a capped exponential backoff; the new consumer resumes from the committed offsets, and
whatever is delivered twice the engine deduplicates.

A record batch the consumer cannot decode (corrupt, or compressed with a codec it cannot read) is
not retried forever: the partition is read up to the batch, the batch becomes one dead event
(``kafka:{topic}:{partition}:{first offset}``, its error naming the offsets and the cause), and the
consumer seeks past it and goes on; the other partitions keep flowing.

Here: the source's settings, its counters and the reconnect loop. One consumer's life between two
reconnects is ``sensors.kafka_consumer.ConsumerSession``; the trigger that configures the source is
``sensors.kafka.KafkaTopic``; what a message becomes is worked out, without I/O, in
``sensors.kafka_records``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import anyio

from engine.backoff import Backoff
from engine.errors import describe_exception

from .base import Event, EventSink
from .kafka_consumer import KAFKA_ERRORS, ConsumerSession
from .kafka_records import KafkaRecord, event_from_record

if TYPE_CHECKING:
    from .kafka import KafkaTopic

__all__ = ["KafkaSource", "KafkaSourceStats", "MessageDecoder"]

# the logger of the Kafka sensor as a whole (trigger, source, consumer), as operators configure it
log = logging.getLogger("podium.sensors.kafka")

#: Turns one message into the events it carries (zero, one or several); must not raise.
MessageDecoder = Callable[[KafkaRecord], Sequence[Event]]


@dataclass(slots=True)
class KafkaSourceStats:
    """Counters of a running source (for metrics and tests)."""

    polls: int = 0
    batches: int = 0
    messages: int = 0
    commits: int = 0
    store_retries: int = 0
    dead_lettered: int = 0
    undecodable_batches: int = 0  # skipped, each recorded as one dead event
    reconnects: int = 0
    paused: bool = False
    partitions: tuple[int, ...] = ()  # assigned to this consumer now


class KafkaSource:
    """The running sensor of a :class:`KafkaTopic` (an ``EventSource``).

    ``max_records`` caps one poll, so one batch; ``poll_interval`` (s) is the longest ``getmany``
    wait, and how often a paused consumer polls; stored offsets are committed at most every
    ``commit_interval`` seconds (a commit is a broker round trip: doing one per batch would put it
    on every event's latency; what is stored but not yet committed is only ever redelivered and
    deduplicated), and when partitions are revoked or the consumer closes; ``commit_timeout``
    bounds a commit or a dead-letter send, ``start_timeout`` a consumer's start (bootstrap and group join), ``close_timeout`` each
    client's close. ``decode`` and ``subscription`` let another trigger (S3 records on a topic)
    reuse the source with its own message format.
    """

    def __init__(
        self,
        trigger: KafkaTopic,
        *,
        max_records: int = 500,
        poll_interval: float = 1.0,
        commit_timeout: float = 10.0,
        commit_interval: float = 0.25,
        start_timeout: float = 60.0,
        close_timeout: float = 5.0,
        backoff: Backoff = Backoff(0.2, 5.0),  # noqa: B008 - frozen
        decode: MessageDecoder | None = None,
        subscription: str | None = None,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.trigger = trigger
        self.subscription = subscription or trigger.subscription
        self.max_records = max_records
        self.poll_interval = poll_interval
        self.commit_timeout = commit_timeout
        self.commit_interval = commit_interval
        self.start_timeout = start_timeout
        self.close_timeout = close_timeout
        self.backoff = backoff
        self.decode: MessageDecoder = decode or self._decode
        self.stats = KafkaSourceStats()

    def _decode(self, record: KafkaRecord) -> Sequence[Event]:
        return (event_from_record(record, self.trigger.value_format),)

    def describe(self) -> str:
        return f"Kafka topic {self.trigger.topic!r} on {self.trigger.bootstrap_servers}"

    async def run(self, sink: EventSink) -> NoReturn:
        """Consume until cancelled, opening a new consumer after any Kafka or network failure."""
        delays = self.backoff.delays()
        while True:
            session = ConsumerSession(self, sink)
            try:
                await session.run()
            except KAFKA_ERRORS as exc:
                if session.healthy:
                    delays.reset()  # it polled since the last failure: a new run of failures
                delay = next(delays)
                self.stats.reconnects += 1
                log.warning(
                    "%s (group %s): %s; reconnecting in %.1fs",
                    self.describe(),
                    self.trigger.group_id,
                    describe_exception(exc),
                    delay,
                )
            await anyio.sleep(delay)
