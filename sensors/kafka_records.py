"""Pure parts of the Kafka sensor: records to events, commit offsets, dead-letter headers,
and where an undecodable record batch is.

No I/O and no aiokafka import: ``sensors.kafka_source`` (the consumer) is the shell around these
functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from .base import Event

__all__ = [
    "KAFKA_SOURCE",
    "KafkaRecord",
    "UndecodableBatch",
    "dead_letter_headers",
    "event_from_record",
    "kafka_event_id",
    "next_offsets",
    "undecodable_batch",
]

#: ``Event.source`` of every Kafka event.
KAFKA_SOURCE = "kafka"

ValueFormat = Literal["json", "raw"]


class KafkaRecord(Protocol):
    """What the sensor reads of a consumed message (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def kafka_event_id(topic: str, partition: int, offset: int) -> str:
    """``kafka:{topic}:{partition}:{offset}``: the message's identity and the run key of its runs."""
    return f"kafka:{topic}:{partition}:{offset}"


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def event_from_record(record: KafkaRecord, value_format: ValueFormat) -> Event:
    """The event for one message; never raises.

    ``payload`` (``ctx.event``) is ``{"topic", "partition", "offset", "key", "timestamp",
    "headers", "value"}`` with the key and header values as UTF-8 text (undecodable bytes
    replaced) and ``timestamp`` in epoch milliseconds; ``raw`` keeps the value's bytes.

    ``"json"``: a JSON object value becomes the run params; any other JSON value (and a tombstone,
    a ``None`` value) becomes ``{"value": ...}``; a value that is not JSON gives an event with
    ``error`` set, which the engine records dead instead of blocking the partition. ``"raw"``: the
    params are ``{"value": text}``.
    """
    event_id = kafka_event_id(record.topic, record.partition, record.offset)
    raw = record.value
    error: str | None = None
    value: Any
    if value_format == "raw" or raw is None:
        value = _text(raw)
    else:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            value, error = None, f"invalid JSON at {event_id}: {exc}"
    payload = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _text(record.key),
        "timestamp": record.timestamp,
        "headers": {name: _text(data) for name, data in record.headers or ()},
        "value": value,
    }
    params = None if error else value if isinstance(value, dict) else {"value": value}
    return Event(
        source=KAFKA_SOURCE,
        event_id=event_id,
        payload=payload,
        params=params,
        error=error,
        raw=raw,
    )


@dataclass(frozen=True, slots=True)
class UndecodableBatch:
    """A record batch the consumer could not decode: offsets ``base_offset`` to ``next_offset - 1``
    of one partition (a corrupt batch, a codec without its library, a payload its codec rejects)."""

    topic: str
    partition: int
    base_offset: int
    next_offset: int

    @property
    def event_id(self) -> str:
        return kafka_event_id(self.topic, self.partition, self.base_offset)

    def event(self, cause: str) -> Event:
        """The dead event that stands for the batch's messages: ``error`` names the topic,
        partition, offsets and ``cause``; no ``raw`` bytes (aiokafka does not hand them out)."""
        last = self.next_offset - 1
        offsets = (
            f"offset {last}" if last == self.base_offset else f"offsets {self.base_offset}-{last}"
        )
        payload = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.base_offset,
            "last_offset": last,
            "key": None,
            "timestamp": None,
            "headers": {},
            "value": None,
        }
        return Event(
            source=KAFKA_SOURCE,
            event_id=self.event_id,
            payload=payload,
            error=f"undecodable record batch at {self.event_id} ({offsets}): {cause}",
        )


def undecodable_batch(exc: BaseException) -> UndecodableBatch | None:
    """The record batch whose decoding raised ``exc``, or None if ``exc`` was not raised decoding
    one.

    aiokafka's consumer checks the CRC of each fetched batch and decompresses it in
    ``PartitionRecords._unpack_records``, and lets whatever that raises out of ``getmany``
    (``CorruptRecordException``, ``UnsupportedCodecError``, a codec's own error such as
    ``cramjam.DecompressionError`` or ``gzip.BadGzipFile``) without naming the partition or the
    offset. The generator's frame, which the traceback keeps, has both: ``tp`` and ``next_batch``.
    If a later aiokafka renames them, this returns None and the sensor reconnects as for any other
    error (aiokafka is pinned below 0.15; ``test_kafka_codecs.py`` would show it).
    """
    tb = exc.__traceback__
    frame = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_unpack_records" and "aiokafka" in code.co_filename:
            frame = tb.tb_frame
        tb = tb.tb_next
    if frame is None:
        return None
    # aiokafka's locals, or None: any shape but the expected one is an AttributeError below
    tp: Any = frame.f_locals.get("tp")
    batch: Any = frame.f_locals.get("next_batch")
    try:
        topic, partition = str(tp.topic), int(tp.partition)
        base = int(batch.base_offset)
        next_offset = int(batch.next_offset)
    except (AttributeError, TypeError, ValueError):
        return None
    # A corrupt header may claim any length: skip at least the first offset, never go back.
    return UndecodableBatch(topic, partition, base, max(next_offset, base + 1))


def next_offsets(records: Iterable[KafkaRecord]) -> dict[tuple[str, int], int]:
    """Per ``(topic, partition)``, the offset to commit once ``records`` are stored (last + 1)."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


def dead_letter_headers(record: KafkaRecord, error: str) -> list[tuple[str, bytes]]:
    """The original headers plus ``podium.*`` headers naming where the message came from and why
    it is dead."""
    return [
        *(record.headers or ()),
        ("podium.topic", record.topic.encode()),
        ("podium.partition", str(record.partition).encode()),
        ("podium.offset", str(record.offset).encode()),
        ("podium.event_id", kafka_event_id(record.topic, record.partition, record.offset).encode()),
        ("podium.error", error.encode("utf-8", errors="replace")),
    ]
