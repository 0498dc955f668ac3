"""Kafka topic trigger: one run per message.

``KafkaTopic`` declares the trigger; ``KafkaSource`` is the running sensor, one consumer shared by
every trigger with the same :attr:`KafkaTopic.subscription` (bootstrap servers, group, topic).

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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
)

from engine.backoff import Backoff
from engine.errors import SourceError, TriggerError, describe_exception

from ._kafka_helpers import (
    KafkaRecord,
    UndecodableBatch,
    dead_letter_headers,
    event_from_record,
    kafka_event_id,
    next_offsets,
    undecodable_batch,
)
from .base import Event, EventBatch, EventFilter, EventSink, ParamsMapper, Trigger

if TYPE_CHECKING:
    from engine.clock import Clock

__all__ = [
    "KafkaSource",
    "KafkaSourceStats",
    "KafkaTopic",
    "consumer_in_words",
    "kafka_event_id",
    "source_for",
]

log = logging.getLogger("podium.sensors.kafka")

#: What a consumer outlives by reconnecting: Kafka errors, the network, our own deadlines.
KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)

#: Consumer settings Podium owns: its guarantees depend on them.
_PODIUM_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "loop",
    }
)
#: ``client_options`` that also apply to the dead-letter producer (connection and security).
_PRODUCER_OPTIONS = frozenset(
    {
        "client_id",
        "metadata_max_age_ms",
        "request_timeout_ms",
        "retry_backoff_ms",
        "api_version",
        "security_protocol",
        "ssl_context",
        "connections_max_idle_ms",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)


@functools.cache
def _consumer_parameters() -> frozenset[str]:
    parameters = inspect.signature(AIOKafkaConsumer).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class KafkaTopic:
    """Start one run per message on ``topic``.

    A JSON-object value becomes the run's params over the DAG's defaults; any other value becomes
    ``{"value": ...}``. The run key is ``kafka:{topic}:{partition}:{offset}``; the consumer commits an
    offset only after the run for that message is stored. ``ctx.event`` (and what ``filter`` and
    ``params`` receive) is ``{"topic", "partition", "offset", "key", "timestamp", "headers",
    "value"}``, ``value`` being the decoded JSON (``value_format="json"``) or the text (``"raw"``).
    A value that is not JSON is recorded dead and, with ``dead_letter_topic``, copied there with
    ``podium.*`` headers naming its origin and error. ``client_options`` go to aiokafka's consumer
    (SASL/SSL, timeouts, ``auto_offset_reset``...); the connection and security ones also to the
    dead-letter producer.
    """

    topic: str
    _: KW_ONLY
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "podium"
    value_format: Literal["json", "raw"] = "json"
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    dead_letter_topic: str | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets

    def __post_init__(self) -> None:
        where = f"KafkaTopic({self.topic!r})"
        if not isinstance(self.topic, str) or not self.topic:
            raise TriggerError(f"KafkaTopic: topic must be a non-empty string, got {self.topic!r}")
        if self.value_format not in ("json", "raw"):
            raise TriggerError(f"{where}: value_format must be 'json' or 'raw'")
        if self.dead_letter_topic == self.topic:
            raise TriggerError(f"{where}: the dead-letter topic cannot be the topic itself")
        owned = sorted(_PODIUM_OPTIONS & set(self.client_options))
        if owned:
            raise TriggerError(
                f"{where}: client_options cannot set {', '.join(owned)} (Podium sets them; "
                "offsets are committed only after the runs are stored)"
            )
        unknown = sorted(set(self.client_options) - _consumer_parameters())
        if unknown:
            raise TriggerError(
                f"{where}: client_options has unknown aiokafka consumer option(s) "
                f"{', '.join(unknown)}"
            )

    @property
    def subscription(self) -> str:
        """The shared consumer's id: triggers with equal bootstrap servers, group and topic share
        one consumer."""
        return f"kafka:{self.bootstrap_servers}:{self.group_id}:{self.topic}"

    @property
    def asset_uri(self) -> str:
        """The topic as an asset (``SourceAsset``): ``kafka://{bootstrap_servers}/{topic}``."""
        return f"kafka://{self.bootstrap_servers}/{self.topic}"

    # -- the Trigger protocol --------------------------------------------------------------------

    @property
    def schedule(self) -> None:
        return None

    @property
    def consumer_key(self) -> str:
        return consumer_in_words(self.bootstrap_servers, self.group_id, self.topic)

    def source_key(self, dag_id: str, index: int) -> str:
        """:attr:`subscription`, whatever the DAG."""
        return self.subscription

    def describe(self) -> str:
        """E.g. ``Kafka topic orders on 127.0.0.1:9092 (group podium)``."""
        return f"Kafka topic {self.topic} on {self.bootstrap_servers} (group {self.group_id})"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Every message on the topic is for every trigger of it (narrow with ``filter``)."""
        return True

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> KafkaSource:
        """The consumer of this trigger and the ``sharing`` ones; see :func:`source_for`."""
        others = [t for t in sharing if isinstance(t, KafkaTopic)]
        if len(others) != len(sharing):
            foreign = next(t for t in sharing if not isinstance(t, KafkaTopic))
            raise TriggerError(f"{foreign!r} is not a Kafka trigger of {self.subscription}")
        return source_for(self, *others)

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer``."""
        return {
            "auto_offset_reset": "earliest",
            **self.client_options,
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "enable_auto_commit": False,
        }

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for the dead-letter ``AIOKafkaProducer``."""
        shared = {k: v for k, v in self.client_options.items() if k in _PRODUCER_OPTIONS}
        return {**shared, "bootstrap_servers": self.bootstrap_servers, "acks": "all"}


def consumer_in_words(bootstrap_servers: str, group_id: str, topic: str) -> str:
    """A Kafka consumer's identity (``Trigger.consumer_key``): one group reading one topic."""
    return f"Kafka topic {topic!r} in group {group_id!r} on {bootstrap_servers}"


def source_for(trigger: KafkaTopic, *sharing: KafkaTopic) -> KafkaSource:
    """The one source of ``trigger`` and the ``sharing`` triggers with the same subscription.

    They share one consumer, so they must agree on how it decodes and where dead messages go:
    otherwise a ``TriggerError`` names the difference (two consumers of one group would each get
    only some of the partitions).
    """
    for other in sharing:
        if other.subscription != trigger.subscription:
            raise TriggerError(f"{other!r} is not a trigger of {trigger.subscription}")
        for name in ("value_format", "dead_letter_topic", "client_options"):
            if getattr(other, name) != getattr(trigger, name):
                raise TriggerError(
                    f"Kafka triggers of {trigger.topic!r} (group {trigger.group_id!r}) share one "
                    f"consumer but differ in {name}: give them the same {name}, or another group_id"
                )
    return KafkaSource(trigger)


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
            session = _ConsumerSession(self, sink)
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


class _ConsumerSession(ConsumerRebalanceListener):  # aiokafka is untyped: a subclass of Any
    """One consumer's life: start, poll-store-commit until a failure or cancellation, close."""

    def __init__(self, source: KafkaSource, sink: EventSink) -> None:
        self.source = source
        self.sink = sink
        self.stats = source.stats
        self.healthy = False  # True once a poll succeeded: the next failure starts a new backoff
        self._consumer: Any = None
        self._producer: Any = None
        self._paused = False
        # Per partition, the next offset of the stored events and the last committed offset.
        self._stored: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        # Per assigned partition, the offset of the next message to hand on: where a poll that
        # failed on an undecodable batch rewinds to (it drops what it had read of every partition).
        self._next: dict[TopicPartition, int] = {}
        # Partitions with an undecodable batch ahead, read one message at a time up to it.
        self._blocked: set[TopicPartition] = set()
        # Bumped on every revocation: a batch polled before it is not committed by this consumer
        # (the partitions' owner re-reads from the committed offset and the engine deduplicates).
        self._epoch = 0
        self._last_commit = 0.0

    async def run(self) -> NoReturn:
        try:
            await self._start()
            while True:
                records = await self._poll()
                if records:
                    await self._handle(records)
                elif self._stored:
                    await self._commit_stored(force=True)  # idle: catch the committed offsets up
        finally:
            await self._close()

    async def _commit_stored(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_commit >= self.source.commit_interval:
            self._last_commit = now
            await self._commit(dict(self._stored))

    # -- lifecycle -----------------------------------------------------------------------------

    async def _start(self) -> None:
        trigger, source = self.source.trigger, self.source
        try:
            self._consumer = AIOKafkaConsumer(**trigger.consumer_options())
            if trigger.dead_letter_topic is not None:
                self._producer = AIOKafkaProducer(**trigger.producer_options())
        except (TypeError, ValueError) as exc:  # passed validation, yet aiokafka refuses them
            raise SourceError(f"{source.describe()}: bad client_options: {exc}") from exc
        self._consumer.subscribe([trigger.topic], listener=self)
        try:
            with anyio.fail_after(source.start_timeout):
                await self._consumer.start()
                if self._producer is not None:
                    await self._producer.start()
        except TimeoutError:
            raise TimeoutError(f"not connected within {source.start_timeout:g}s") from None
        log.info("%s: consuming as group %s", source.describe(), trigger.group_id)

    async def _close(self) -> None:
        self.stats.partitions, self.stats.paused = (), False
        with anyio.CancelScope(shield=True):
            if self._consumer is not None and self._stored:
                with anyio.move_on_after(self.source.commit_timeout):
                    try:
                        await self._commit(dict(self._stored))  # best effort: else redelivered
                    except KAFKA_ERRORS as exc:
                        log.info("%s: final commit skipped: %s", self.source.describe(), exc)
            for name, client in (("consumer", self._consumer), ("producer", self._producer)):
                if client is None:
                    continue
                with anyio.move_on_after(self.source.close_timeout) as scope:
                    try:
                        async with anyio.create_task_group() as tg:  # a fresh task: _stop_client
                            tg.start_soon(_stop_client, client)
                    except* KAFKA_ERRORS as group:
                        log.warning(
                            "%s: closing the %s: %s",
                            self.source.describe(),
                            name,
                            "; ".join(describe_exception(e) for e in group.exceptions),
                        )
                if scope.cancelled_caught:
                    log.warning(
                        "%s: the %s did not close within %.1fs",
                        self.source.describe(),
                        name,
                        self.source.close_timeout,
                    )

    # -- the loop ------------------------------------------------------------------------------

    async def _poll(self) -> dict[Any, list[Any]]:
        consumer, source = self._consumer, self.source
        timeout_ms = int(source.poll_interval * 1000)
        if not self.sink.accepting:
            # Paused partitions give nothing, but polling keeps the consumer in its group.
            self._set_paused(True)
            with anyio.move_on_after(source.poll_interval):
                await self.sink.wait_accepting()
            timeout_ms = 0
        if self.sink.accepting:
            self._set_paused(False)
        await self._learn_positions()
        records: dict[Any, list[Any]]
        try:
            if self._blocked:
                records = await self._read_up_to_undecodable(timeout_ms)
            else:
                records = await consumer.getmany(
                    timeout_ms=timeout_ms, max_records=source.max_records
                )
        except Exception as exc:
            batch = undecodable_batch(exc)
            if batch is None:
                raise
            records = {}
            self._rewind(batch, exc)
        self.stats.polls += 1
        self.healthy = True
        for tp, messages in records.items():
            self._next[tp] = messages[-1].offset + 1
        return records

    async def _learn_positions(self) -> None:
        """Note where each newly assigned partition starts (once per assignment)."""
        consumer = self._consumer
        for tp in consumer.assignment() - self._next.keys():
            try:
                with anyio.fail_after(self.source.commit_timeout):
                    self._next[tp] = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked meanwhile
            except TimeoutError:
                raise TimeoutError(
                    f"no position for partition {tp.partition} within "
                    f"{self.source.commit_timeout:g}s"
                ) from None

    def _rewind(self, batch: UndecodableBatch, exc: BaseException) -> None:
        """After a poll failed decoding ``batch``: seek every partition back to its next message
        (the poll dropped what it had read) and read the batch's partition up to it alone."""
        log.warning(
            "%s: undecodable record batch at partition %d offset %d (%s); reading up to it",
            self.source.describe(),
            batch.partition,
            batch.base_offset,
            describe_exception(exc),
        )
        consumer = self._consumer
        assigned = consumer.assignment()
        for tp, offset in self._next.items():
            if tp in assigned:
                consumer.seek(tp, offset)
        tp = TopicPartition(batch.topic, batch.partition)
        if tp in assigned:
            self._blocked.add(tp)

    async def _read_up_to_undecodable(self, timeout_ms: int) -> dict[Any, list[Any]]:
        """Messages of a blocked partition, one per ``getmany`` so that reading stops in front of
        the undecodable batch; when that batch is next, it is recorded dead and skipped."""
        consumer, source = self._consumer, self.source
        tp = min(self._blocked)
        if tp not in consumer.assignment():
            self._blocked.discard(tp)
            return {}
        messages: list[Any] = []
        while len(messages) < source.max_records:
            try:
                polled = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
            except Exception as exc:
                batch = undecodable_batch(exc)
                if batch is None or (batch.topic, batch.partition) != (tp.topic, tp.partition):
                    raise
                if not messages:  # nothing decodable before it: the batch is next
                    await self._skip_undecodable(tp, batch, exc)
                break
            if not polled:
                break  # paused, or the fetched messages ran out before the batch
            messages.extend(polled[tp])
            timeout_ms = 0  # the rest of this fetch is in the consumer's buffer
        return {tp: messages} if messages else {}

    async def _skip_undecodable(
        self, tp: TopicPartition, batch: UndecodableBatch, exc: BaseException
    ) -> None:
        """Store the dead event of ``batch``, seek past it, and commit."""
        cause = describe_exception(exc)
        log.error(
            "%s: skipping the undecodable record batch at partition %d offsets %d-%d: %s",
            self.source.describe(),
            batch.partition,
            batch.base_offset,
            batch.next_offset - 1,
            cause,
        )
        epoch = self._epoch
        await self._store([batch.event(cause)])
        self._blocked.discard(tp)
        self.stats.undecodable_batches += 1
        if epoch != self._epoch or tp not in self._consumer.assignment():
            return  # reassigned meanwhile: the new owner meets the batch and records it again
        self._consumer.seek(tp, batch.next_offset)
        self._next[tp] = self._stored[tp] = batch.next_offset
        await self._commit_stored()

    def _set_paused(self, paused: bool) -> None:
        consumer = self._consumer
        if paused:
            # Every poll: partitions assigned by a rebalance meanwhile start unpaused.
            consumer.pause(*consumer.assignment())
        elif self._paused:
            consumer.resume(*consumer.paused())
        if paused != self._paused:
            log.info("%s: %s", self.source.describe(), "paused" if paused else "resumed")
            self._paused = self.stats.paused = paused

    async def _handle(self, polled: Mapping[Any, list[Any]]) -> None:
        epoch = self._epoch
        records: list[KafkaRecord] = [r for tp in sorted(polled) for r in polled[tp]]
        per_record = [self.source.decode(record) for record in records]
        events = [event for decoded in per_record for event in decoded]
        outcomes = await self._store(events) if events else []
        if self._producer is not None:
            await self._dead_letter(records, per_record, outcomes)
        self.stats.batches += 1
        self.stats.messages += len(records)
        if epoch != self._epoch:
            log.info(
                "%s: partitions were reassigned while %d message(s) were stored; not committing "
                "them (they will be redelivered and deduplicated)",
                self.source.describe(),
                len(records),
            )
            return
        offsets = {TopicPartition(t, p): o for (t, p), o in next_offsets(records).items()}
        self._stored.update(offsets)
        await self._commit_stored()

    async def _store(self, events: list[Event]) -> list[str]:
        """Publish ``events`` and wait for their outcomes, again and again until the store works."""
        delays = self.source.backoff.delays()
        while True:
            batch = EventBatch(self.source.subscription, events)
            await self.sink.publish(batch)
            try:
                return await batch.stored()
            except Exception as exc:  # the engine could not store the batch: nothing is acked
                self.stats.store_retries += 1
                delay = next(delays)
                log.warning(
                    "%s: storing %d event(s) failed (%s); retrying in %.1fs",
                    self.source.describe(),
                    len(events),
                    describe_exception(exc),
                    delay,
                )
                await anyio.sleep(delay)

    async def _dead_letter(
        self,
        records: Sequence[KafkaRecord],
        per_record: Sequence[Sequence[Event]],
        outcomes: Sequence[str],
    ) -> None:
        """Copy each message with a dead event to the dead-letter topic.

        A transient failure (timeout, connection) propagates, so nothing is committed and the
        message comes back after the reconnect; a permanent one (authorization, size) is logged and
        the message is skipped: the engine's events table keeps the dead event and its raw bytes.
        """
        topic = self.source.trigger.dead_letter_topic
        index = 0
        for record, events in zip(records, per_record, strict=True):
            dead = [e for e, o in zip(events, outcomes[index:], strict=False) if o == "dead"]
            index += len(events)
            if not dead:
                continue
            error = dead[0].error or "dead (the engine's events table has the reason)"
            try:
                with anyio.fail_after(self.source.commit_timeout):
                    await self._producer.send_and_wait(
                        topic,
                        record.value,
                        key=record.key,
                        headers=dead_letter_headers(record, error),
                    )
            except TimeoutError:
                raise TimeoutError(
                    f"dead-letter send to {topic!r} not acknowledged within "
                    f"{self.source.commit_timeout:g}s"
                ) from None
            except KafkaError as exc:
                if exc.retriable or isinstance(exc, KafkaTimeoutError):
                    raise
                log.error(
                    "%s: cannot copy dead message %s to %r: %s",
                    self.source.describe(),
                    kafka_event_id(record.topic, record.partition, record.offset),
                    topic,
                    describe_exception(exc),
                )
                continue
            self.stats.dead_lettered += 1

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` of partitions still assigned; a failed commit after a rebalance is
        harmless (the new owner re-reads, the engine deduplicates), other failures propagate."""
        assigned = self._consumer.assignment()
        todo = {
            tp: offset
            for tp, offset in offsets.items()
            if tp in assigned and offset > self._committed.get(tp, -1)
        }
        if not todo:
            return
        try:
            # Shielded: a commit cut short by cancellation would leave aiokafka's request task
            # behind, failing on the closed connection (and the group without our LeaveGroup).
            with anyio.CancelScope(shield=True), anyio.fail_after(self.source.commit_timeout):
                await self._consumer.commit(todo)
        except TimeoutError:
            raise TimeoutError(
                f"commit not acknowledged within {self.source.commit_timeout:g}s"
            ) from None
        except (CommitFailedError, IllegalStateError) as exc:
            log.info("%s: commit skipped after a rebalance: %s", self.source.describe(), exc)
            return
        self._committed.update(todo)
        self.stats.commits += 1

    # -- ConsumerRebalanceListener (called by aiokafka's coordinator task) -----------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what is stored but not yet committed, before the partitions change owner."""
        self._epoch += 1
        pending = {
            tp: self._stored[tp]
            for tp in revoked
            if tp in self._stored and self._stored[tp] > self._committed.get(tp, -1)
        }
        if pending:
            try:
                with anyio.fail_after(self.source.commit_timeout):
                    await self._consumer.commit(pending)
            except KAFKA_ERRORS as exc:
                log.warning(
                    "%s: commit before rebalance failed (%s); those messages will be redelivered",
                    self.source.describe(),
                    describe_exception(exc),
                )
        for tp in revoked:
            self._stored.pop(tp, None)
            self._committed.pop(tp, None)
            self._next.pop(tp, None)
            self._blocked.discard(tp)
        self.stats.partitions = ()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.stats.partitions = tuple(sorted(tp.partition for tp in assigned))
        log.info("%s: assigned partitions %s", self.source.describe(), self.stats.partitions)


async def _stop_client(client: Any) -> None:
    """``client.stop()``, finishing the close when aiokafka raises a CancelledError of its own.

    With fetches pending (a broker down), ``Fetcher.close()`` cancels its fetch tasks and awaits
    them, which re-raises their CancelledError in the caller and skips the rest of the close
    (aiokafka issues #647, #983). Run in a task of its own, that error is told apart from a real
    cancellation (the close deadline) by ``cancelling()``: the leftover fetch tasks are cancelled
    and the connections closed here.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        fetcher = getattr(client, "_fetcher", None)
        leftovers = [t for t in getattr(fetcher, "_pending_tasks", ()) if not t.done()]
        for leftover in leftovers:
            leftover.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        connections = getattr(client, "_client", None) or getattr(client, "client", None)
        if connections is not None:
            await connections.close()
