"""Which running source delivers a trigger's events (the engine starts one per subscription)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.clock import Clock
from engine.errors import TriggerError

from .base import Event, EventSource
from .dag_completion import AfterDag
from .kafka import KafkaTopic
from .s3 import S3Events
from .timer_source import TimerSource
from .timers import Cron, Every


def subscription_of(trigger: Any, *, dag_id: str, index: int) -> str:
    """The id of the source that delivers ``trigger``'s events; triggers with equal ids share it."""
    if isinstance(trigger, (Cron, Every)):
        return f"timer:{dag_id}:{index}"
    subscription = getattr(trigger, "subscription", None)
    if isinstance(subscription, str):
        return subscription
    raise TriggerError(f"DAG {dag_id!r}: {trigger!r} is not a trigger Podium knows")


def source_for(
    trigger: Any, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Any] = ()
) -> EventSource | None:
    """A new source for ``trigger``, or None when the engine delivers its events itself (AfterDag).

    ``sharing``: the other triggers with the same subscription, which the one source serves too."""
    if isinstance(trigger, (Cron, Every)):
        return TimerSource(dag_id, index, trigger, clock)
    if isinstance(trigger, AfterDag):
        return None
    if isinstance(trigger, KafkaTopic):
        from . import kafka

        return kafka.source_for(trigger, *[t for t in sharing if isinstance(t, KafkaTopic)])
    if isinstance(trigger, S3Events):
        if trigger.mode == "kafka":
            return _s3_records_on_kafka(trigger)
        from . import s3

        return s3.source_for(trigger, *[t for t in sharing if isinstance(t, S3Events)])
    raise TriggerError(f"DAG {dag_id!r}: {trigger!r} is not a trigger Podium knows")


def _s3_records_on_kafka(trigger: S3Events) -> EventSource:
    """S3 notification records arriving on a Kafka topic: the Kafka sensor with an S3 decoder.

    Every object record becomes an event (the router records the ones outside each trigger's
    prefix/suffix as ``filtered``); a message with no object record still gets its offset committed.
    """
    from ._kafka_helpers import KafkaRecord
    from .kafka import KafkaSource
    from .s3_records import events_from_notification

    assert trigger.kafka_topic is not None
    topic = KafkaTopic(
        trigger.kafka_topic,
        bootstrap_servers=trigger.kafka_bootstrap,
        group_id=trigger.kafka_group,
        value_format="raw",
    )

    def decode(record: KafkaRecord) -> Sequence[Event]:
        source_id = f"kafka:{record.topic}:{record.partition}:{record.offset}"
        return events_from_notification(record.value or b"", source_id=source_id)

    return KafkaSource(topic, decode=decode, subscription=trigger.subscription)


def check_shared_consumers(triggers: Sequence[Any]) -> None:
    """Refuse a Kafka topic read by two kinds of trigger in one consumer group: their two consumers
    would split the partitions, each seeing only part of the messages."""
    seen: dict[tuple[str, str, str], str] = {}
    for trig in triggers:
        if isinstance(trig, KafkaTopic):
            key = (trig.bootstrap_servers, trig.group_id, trig.topic)
            kind = "KafkaTopic"
        elif isinstance(trig, S3Events) and trig.mode == "kafka":
            assert trig.kafka_topic is not None
            key = (trig.kafka_bootstrap, trig.kafka_group, trig.kafka_topic)
            kind = "S3Events"
        else:
            continue
        if seen.setdefault(key, kind) != kind:
            raise TriggerError(
                f"topic {key[2]!r} is read by both a KafkaTopic and an S3Events trigger in group "
                f"{key[1]!r}: give one of them another group_id"
            )
