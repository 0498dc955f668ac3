"""Which running source delivers a trigger's events (the engine starts one per subscription).

Everything here goes through the ``Trigger`` protocol (``sensors.base``), so a trigger class of
your own is served like ``KafkaTopic`` or ``Cron``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.errors import TriggerError

from .base import EventSource, Trigger, not_a_trigger


def as_trigger(obj: Any, *, dag_id: str) -> Trigger:
    """``obj`` if it implements ``Trigger``; else a ``TriggerError`` naming the DAG, the object and
    the members it lacks."""
    if isinstance(obj, Trigger):
        return obj
    raise TriggerError(f"DAG {dag_id!r}: {not_a_trigger(obj)}")


def subscription_of(trigger: Any, *, dag_id: str, index: int) -> str:
    """The id of the source that delivers ``trigger``'s events; triggers with equal ids share it."""
    return as_trigger(trigger, dag_id=dag_id).source_key(dag_id, index)


def source_for(
    trigger: Any, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Any] = ()
) -> EventSource | None:
    """A new source for ``trigger``, or None when the engine delivers its events itself (AfterDag).

    ``sharing``: the other triggers with the same subscription, which the one source serves too."""
    return as_trigger(trigger, dag_id=dag_id).source(
        dag_id=dag_id,
        index=index,
        clock=clock,
        sharing=[as_trigger(t, dag_id=dag_id) for t in sharing],
    )


def check_shared_consumers(triggers: Sequence[Any]) -> None:
    """Refuse one broker consumer (a Kafka topic in one group) read by two kinds of trigger: their
    two consumers would split the partitions, each seeing only part of the messages."""
    seen: dict[str, Trigger] = {}
    for trig in triggers:
        consumer = trig.consumer_key if isinstance(trig, Trigger) else None
        if consumer is None:
            continue
        first = seen.setdefault(consumer, trig)
        if type(first) is not type(trig):
            raise TriggerError(
                f"{consumer} is read by two kinds of trigger, {type(first).__name__} and "
                f"{type(trig).__name__}: their consumers would split the partitions; give one of "
                "them another group_id"
            )


if TYPE_CHECKING:  # mypy proves that each trigger of ours implements the protocol
    from .assets import OnAssets
    from .dag_completion import AfterDag
    from .kafka import KafkaTopic
    from .s3 import S3Events
    from .timers import Cron, Every

    _OURS: tuple[type[Trigger], ...] = (
        AfterDag, Cron, Every, KafkaTopic, OnAssets, S3Events,
    )  # fmt: skip
