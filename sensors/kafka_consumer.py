"""One Kafka consumer's life, for ``KafkaSource``: start, poll, store, dead-letter, commit, close.

``ConsumerSession`` is what ``sensors.kafka_source`` runs between two reconnects; that module's doc
states the guarantees (offsets committed only after the events are stored, never across a
rebalance; paused partitions while the engine is not accepting; undecodable record batches recorded
dead and skipped). Any Kafka or network error (``KAFKA_ERRORS``) ends the session, after a
best-effort final commit and a bounded close of the clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
)

from engine.errors import SourceError, describe_exception

from .base import Event, EventBatch, EventSink
from .kafka_records import (
    KafkaRecord,
    UndecodableBatch,
    dead_letter_headers,
    kafka_event_id,
    next_offsets,
    undecodable_batch,
)

if TYPE_CHECKING:
    from .kafka_source import KafkaSource

__all__ = ["KAFKA_ERRORS", "ConsumerSession"]

# the logger of the Kafka sensor as a whole (trigger, source, consumer), as operators configure it
log = logging.getLogger("podium.sensors.kafka")

#: What a consumer outlives by reconnecting: Kafka errors, the network, our own deadlines.
KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)


class ConsumerSession(ConsumerRebalanceListener):  # aiokafka is untyped: a subclass of Any
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
        with _within(source.start_timeout, "not connected"):
            await self._consumer.start()
            if self._producer is not None:
                await self._producer.start()
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
                with _within(
                    self.source.commit_timeout, f"no position for partition {tp.partition}"
                ):
                    self._next[tp] = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked meanwhile

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
                with _within(
                    self.source.commit_timeout, f"dead-letter send to {topic!r} not acknowledged"
                ):
                    await self._producer.send_and_wait(
                        topic,
                        record.value,
                        key=record.key,
                        headers=dead_letter_headers(record, error),
                    )
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
            with (
                anyio.CancelScope(shield=True),
                _within(self.source.commit_timeout, "commit not acknowledged"),
            ):
                await self._consumer.commit(todo)
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


@contextmanager
def _within(seconds: float, what: str) -> Iterator[None]:
    """``anyio.fail_after(seconds)`` whose ``TimeoutError`` says what did not happen in time
    (``{what} within {seconds}s``): the reconnect's log line names the step that hung."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError:
        raise TimeoutError(f"{what} within {seconds:g}s") from None


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
