"""The seam between event sources and the engine.

A sensor turns what it reads (a Kafka message, an SQS notification, a timer slot, a listed object)
into ``Event`` objects and hands them to the engine's bus in an ``EventBatch``. It acknowledges the
source (Kafka offset commit, SQS delete, cursor advance) only after ``await batch.stored()`` returns:
by then every event of the batch has a durably recorded outcome (``ran``, ``deduplicated``,
``filtered`` or ``dead``). A sensor knows nothing about DAGs.

Backpressure: ``EventSink.publish`` blocks while the bus is full, and sensors that must keep talking
to their source (a Kafka consumer has to keep polling to stay in its group) check
``sink.accepting`` and pause their source while it is False (``await sink.wait_accepting()``).

What a *trigger* (``@dag(triggers=[...])``) must offer the engine is the ``Trigger`` protocol below:
``KafkaTopic``, ``S3Events``, ``Cron``, ``Every`` and ``AfterDag`` implement it, and so can a class
of your own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio

# Only for annotations: importing engine.clock here would run engine/__init__, which imports this.
if TYPE_CHECKING:
    from engine.clock import Clock

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


@runtime_checkable
class Schedule(Protocol):
    """The slots of a timer trigger (``Cron``, ``Every``): pure arithmetic on epoch seconds.

    The timer source fires ``due_slots``; backfills enumerate ``slots_between`` with dates read in
    ``tz``; ``spec`` is the schedule as JSON data, stored with the DAG so that tools without the
    DAG's code (``podium backfill``'s progress) can rebuild it with ``sensors.timers.schedule_from_spec``.
    """

    @property
    def tz(self) -> str:
        """The IANA time zone whole days are counted in (``"UTC"`` for intervals)."""
        ...

    def next_slot(self, after: float) -> float:
        """The first slot strictly after ``after``."""
        ...

    def slots_between(self, start: float, end: float) -> list[float]:
        """Every slot ``s`` with ``start <= s <= end``, oldest first."""
        ...

    def due_slots(self, last_fired: float | None, now: float) -> list[float]:
        """The slots to fire at ``now`` given the last slot fired (catch-up policy applied)."""
        ...

    def initial_cursor(self, now: float) -> float:
        """What is recorded as the last slot fired when the trigger is first seen."""
        ...

    def describe(self) -> str:
        """Short human text, e.g. ``cron 0 4 * * * (Europe/Berlin)``."""
        ...

    def spec(self) -> dict[str, Any] | None:
        """The schedule as JSON-able data, or None when it cannot be rebuilt from data."""
        ...


@runtime_checkable
class Trigger(Protocol):
    """What the engine asks of a trigger in ``@dag(triggers=[...])``.

    - **Where its events come from**: ``source_key(dag_id, index)`` names the running source that
      delivers them (the subscription; it is also the id of that source's cursor, so it must never
      change for a given trigger). Triggers with equal keys share one source: ``source(...)`` of the
      first one builds it, told the others in ``sharing``; it returns None when the engine delivers
      the events itself (``AfterDag``). ``consumer_key`` names an exclusive consumer the source holds
      at its broker (a Kafka group on a topic), or None: two triggers of different kinds with the
      same consumer key are refused, since their two consumers would split the partitions.
    - **Which events it wants and with which params** (``engine.router``, pure): ``matches(payload)``
      is the trigger's own narrowing among the events of a shared source (an S3 key prefix, an
      upstream run's final state); then the user's ``filter`` predicate and ``params`` mapper, if any.
    - **For people and tools**: ``describe()`` in words; ``schedule``, the slots of a timer trigger
      (``Cron``, ``Every``) or None, which backfills and the CLI use.

    ``Trigger`` is runtime-checkable: ``@dag`` refuses an object that lacks any of these members.
    """

    @property
    def filter(self) -> EventFilter | None:
        """A predicate on the event payload: False records the event ``filtered`` for this DAG."""
        ...

    @property
    def params(self) -> ParamsMapper | None:
        """Maps the event payload to the run's params (else the event's own suggested params)."""
        ...

    @property
    def schedule(self) -> Schedule | None:
        """The trigger's slots if it is a timer, else None."""
        ...

    @property
    def consumer_key(self) -> str | None:
        """The exclusive broker consumer its source holds, in words (e.g. a Kafka group on a topic)."""
        ...

    def source_key(self, dag_id: str, index: int) -> str:
        """The subscription: the id of the source delivering this trigger's events (``index``: its
        position in the DAG's triggers, for triggers that get a source of their own)."""
        ...

    def describe(self) -> str:
        """Short human text for the UI and the CLI, e.g. ``every 30s``."""
        ...

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """True when an event of the shared source is for this trigger (before its ``filter``)."""
        ...

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> EventSource | None:
        """A new running source for this trigger and the ``sharing`` ones (same ``source_key``),
        or None when the engine delivers the events itself. Raises ``TriggerError`` when the
        sharing triggers cannot share one source."""
        ...


@runtime_checkable
class SourceAsset(Protocol):
    """A trigger whose events come from a data asset (a Kafka topic, an S3 prefix): the runs it
    starts record that asset as their input (``run_inputs``), so lineage starts at the source."""

    @property
    def asset_uri(self) -> str:
        """The source as an asset URI: ``kafka://{bootstrap}/{topic}``, ``s3://{bucket}/{prefix}``."""
        ...


#: The members of ``Trigger``, for error messages that say what an object lacks.
TRIGGER_MEMBERS: tuple[str, ...] = tuple(sorted(n for n in vars(Trigger) if not n.startswith("_")))


def not_a_trigger(obj: object) -> str | None:
    """Why ``obj`` is not a ``Trigger`` (the members it lacks), or None when it is one."""
    if isinstance(obj, Trigger):
        return None
    missing = [name for name in TRIGGER_MEMBERS if not hasattr(obj, name)]
    return f"{obj!r} is not a trigger: it lacks {', '.join(missing)} (see sensors.Trigger)"
