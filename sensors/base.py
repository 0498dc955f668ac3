"""The seam between event sources and the engine.

A sensor turns what it reads (a Kafka message, an SQS notification, a timer slot, a listed object)
into ``Event`` objects and hands them to the engine's bus in an ``EventBatch``. It acknowledges the
source (Kafka offset commit, SQS delete, cursor advance) only after ``await batch.stored()`` returns:
by then every event of the batch has a durably recorded outcome (``ran``, ``deduplicated``,
``filtered`` or ``dead``). A sensor knows nothing about DAGs.

Backpressure: ``EventSink.publish`` blocks while the bus is full, and sensors that must keep talking
to their source (a Kafka consumer has to keep polling to stay in its group) check
``sink.accepting`` and pause their source while it is False (``await sink.wait_accepting()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

EventFilter = Callable[[Mapping[str, Any]], bool]
ParamsMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened at a source.

    ``event_id`` is the event's stable identity at its source (``kafka:{topic}:{partition}:{offset}``,
    ``s3:{bucket}/{key}@{version or etag}``, ``timer:{dag_id}:{slot}``); a redelivered event has the same
    id, and each DAG's run key is derived from it, so redelivery never creates a second run.
    ``payload`` is the decoded body (``ctx.event`` in tasks); ``params`` the run params it suggests
    (the trigger's ``params=`` mapper, if any, overrides them). ``error`` marks an event that could not
    be decoded: it is recorded ``dead`` with that error and acknowledged, never retried forever.
    """

    source: str
    event_id: str
    payload: Any
    params: Mapping[str, Any] | None = None
    logical_date: float | None = None
    error: str | None = None
    raw: bytes | None = None


@dataclass(eq=False)
class EventBatch:
    """Events a sensor read together, for the subscriptions (trigger ids) that receive them.

    ``subscription`` names the sensor the events come from; the engine maps it to the (DAG, trigger)
    pairs that share that source. ``cursor`` is an optional ``(cursor_id, value)`` written in the same
    transaction as the runs (timers and bucket polling resume from it after a restart).
    """

    subscription: str
    events: list[Event]
    cursor: tuple[str, Any] | None = None
    outcomes: list[str] = field(default_factory=list)
    _stored: anyio.Event = field(default_factory=anyio.Event, repr=False)
    _error: BaseException | None = field(default=None, repr=False)

    def mark_stored(self, error: BaseException | None = None) -> None:
        self._error = error
        self._stored.set()

    async def stored(self) -> list[str]:
        """Wait until every event's outcome is committed; returns one outcome per event."""
        await self._stored.wait()
        if self._error is not None:
            raise self._error
        return self.outcomes


class EventSink(Protocol):
    """What a sensor publishes to (the engine's bus)."""

    async def publish(self, batch: EventBatch) -> None:
        """Queue ``batch`` on the bus; blocks while the bus is full."""
        ...

    @property
    def accepting(self) -> bool:
        """False while the engine is above its high-water mark of pending work."""
        ...

    async def wait_accepting(self) -> None:
        """Return once the engine is below its low-water mark again."""
        ...

    async def load_cursor(self, cursor_id: str) -> Any:
        """The last committed cursor value of a sensor, or None."""
        ...


class EventSource(Protocol):
    """A running sensor. ``run`` publishes events until cancelled, reconnecting by itself."""

    subscription: str

    async def run(self, sink: EventSink) -> None: ...
