"""Pure parts of the Kafka sensor: records to events, commit offsets, dead-letter headers, backoff.

No I/O and no aiokafka import: ``sensors.kafka`` is the shell around these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

import orjson

from .base import Event

__all__ = [
    "KAFKA_SOURCE",
    "KafkaRecord",
    "dead_letter_headers",
    "event_from_record",
    "kafka_event_id",
    "next_offsets",
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
