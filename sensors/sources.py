"""Which running source delivers a trigger's events (the engine starts one per subscription)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.clock import Clock
from engine.errors import TriggerError

from .base import EventSource
from .dag_completion import AfterDag
from .kafka import KafkaTopic
from .s3 import S3Events
from .timer_source import TimerSource
from .timers import Cron, Every


def subscription_of(trigger: Any, *, dag_id: str, index: int) -> str:
    """The id of the source that delivers ``trigger``'s events; triggers with equal ids share it."""
    if isinstance(trigger, (Cron, Every)):
        return f"timer:{dag_id}:{index}"
    if isinstance(trigger, KafkaTopic):
        return f"kafka:{trigger.bootstrap_servers}:{trigger.group_id}:{trigger.topic}"
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
        from .kafka import KafkaSource  # type: ignore[attr-defined,unused-ignore]

        source: EventSource = KafkaSource(trigger)
        return source
    if isinstance(trigger, S3Events):
        from . import s3

        return s3.source_for(trigger, *[t for t in sharing if isinstance(t, S3Events)])
    raise TriggerError(f"DAG {dag_id!r}: {trigger!r} is not a trigger Podium knows")
