"""Timer triggers: ``Cron`` (wall-clock schedules in a time zone) and ``Every`` (fixed intervals).

Pure slot arithmetic, no clock and no I/O: every method takes the times it needs as arguments.
Times are float seconds since the epoch (UTC) throughout.

**Slots and the cursor.** A trigger defines an infinite, strictly increasing sequence of *slots*.
The engine persists, per trigger, the last slot it fired and asks ``due_slots(last_fired, now)``
what to fire now. On the very first start there is no last slot: ``due_slots(None, now)`` returns
``[]`` (nothing from the past is fired) and the engine records ``initial_cursor(now)`` (which is
``now``) in its place, so the first slot fired is the first one strictly after ``now``.

**Catch-up.** When the engine was down or late, ``(last_fired, now]`` may hold several slots:

- ``"all"``: fire every slot in ``(last_fired, now]``, oldest first, keeping only the newest
  ``max_catchup`` of them (older ones are dropped for good);
- ``"latest"`` (default): fire only the newest slot in ``(last_fired, now]``;
- ``"none"``: fire the newest slot in ``(last_fired, now]`` only if it is on time, i.e. at most
  ``misfire_grace`` seconds (default 60) before ``now``; a later slot (typically one that came due
  while the engine was down) is dropped. Whether a slot was missed can only be told by lateness:
  the newest due slot is always younger than one period, so a period-based rule never skips.

**Time zones (``Cron``).** The expression is matched against local wall-clock time in ``tz``, and
each matching wall-clock time fires once:

- a wall-clock time that does not exist (spring forward: 02:30 on 2026-03-29 in Europe/Berlin)
  fires once at the first valid instant after the gap (03:00 local); several such times, and a
  matching time at the end of the gap itself, fire together as one slot;
- a wall-clock time that happens twice (fall back: 02:30 on 2026-10-25 in Europe/Berlin) fires
  once, at its first occurrence (``fold=0``). So ``"0 * * * *"`` fires at 02:00 CEST and next at
  03:00 CET, two real hours later: each wall-clock hour runs once, the repeated hour does not.

croniter enumerates naive wall-clock times only; the conversion to instants is done here with
``zoneinfo``, so croniter's own time-zone handling is never used.

**As triggers.** ``Cron`` and ``Every`` are both a ``sensors.base.Trigger`` and its ``Schedule``
(``trigger.schedule is trigger``). Each timer trigger of a DAG has a source of its own,
``timer:{dag_id}:{index}`` (also its cursor id), and its events are the slots
(``timer:{dag_id}:{slot}``, so a backfill of the same slot is the same run).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import TYPE_CHECKING, Any, Literal, Self, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from engine.errors import TriggerError

from .base import EventFilter, EventSource, ParamsMapper, Schedule, Trigger
from .timer_source import TimerSource, timer_source_key

if TYPE_CHECKING:
    from engine.clock import Clock

CatchUp = Literal["none", "latest", "all"]

_CATCHUP_MODES: tuple[str, ...] = get_args(CatchUp)
_DEFAULT_GRACE = 60.0
_SECOND = timedelta(seconds=1)
# Validation asks croniter for one match after this date, so an expression that never matches
# ("0 0 30 2 *") is rejected at construction rather than on first use.
_REFERENCE = datetime(2000, 1, 1)
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class _Timer:
    """The ``Trigger`` side shared by ``Cron`` and ``Every`` (no state of its own)."""

    @property
    def schedule(self) -> Self:
        """A timer is its own schedule."""
        return self

    @property
    def consumer_key(self) -> None:
        return None

    def source_key(self, dag_id: str, index: int) -> str:
        """``timer:{dag_id}:{index}``: each timer trigger has a source (and a cursor) of its own."""
        return timer_source_key(dag_id, index)

    def matches(self, payload: Mapping[str, Any]) -> bool:
        return True


def _timer_source(
    schedule: Schedule, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger]
) -> EventSource:
    if sharing:  # the key holds the DAG and the index: no other trigger has the same one
        raise TriggerError(f"DAG {dag_id!r}: timer trigger {index} cannot share its source")
    return TimerSource(dag_id, index, schedule, clock)


@dataclass(frozen=True, repr=False)
class Cron(_Timer):
    """Fire on a five-field cron expression evaluated in local wall-clock time of ``tz``.

    ``expr`` is ``minute hour day-of-month month day-of-week``, or one of ``@hourly``, ``@daily``,
    ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``. When both day fields are
    restricted, either may match (classic cron). See the module docstring for catch-up and
    daylight-saving-time semantics.
    """

    expr: str
    _: KW_ONLY
    tz: str = "UTC"
    catchup: CatchUp = "latest"
    max_catchup: int = 100
    misfire_grace: float = _DEFAULT_GRACE
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _fields: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_catchup(self.catchup, self.max_catchup, self.misfire_grace)
        object.__setattr__(self, "_fields", _parse_expr(self.expr))
        object.__setattr__(self, "_zone", _load_zone(self.tz))

    def next_slot(self, after: float) -> float:
        """The first slot strictly after ``after``."""
        return next(s for s in self._ascending(after) if s > after)

    def slots_between(self, start: float, end: float) -> list[float]:
        """Every slot ``s`` with ``start <= s <= end``, oldest first (for backfills)."""
        if start > end:
            return []
        return list(takewhile(lambda s: s <= end, self._ascending(start)))

    def due_slots(self, last_fired: float | None, now: float) -> list[float]:
        """The slots to fire at ``now`` given the last slot fired; see the module docstring."""
        return _select_due(
            self._descending(now),
            last_fired=last_fired,
            now=now,
            catchup=self.catchup,
            max_catchup=self.max_catchup,
            misfire_grace=self.misfire_grace,
        )

    def initial_cursor(self, now: float) -> float:
        """What the engine records as the last slot fired when it first sees this trigger."""
        return now

    def describe(self) -> str:
        """Short human text, e.g. ``cron 0 4 * * * (Europe/Berlin)``."""
        return f"cron {self.expr} ({self.tz})"

    def spec(self) -> dict[str, Any]:
        """``{"kind": "cron", "expr", "tz"}`` (stored with the DAG; see ``schedule_from_spec``)."""
        return {"kind": "cron", "expr": self.expr, "tz": self.tz}

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> EventSource:
        """A timer source firing this schedule's slots for the DAG."""
        return _timer_source(self, dag_id, index, clock, sharing)

    def __repr__(self) -> str:
        return _repr(self, [repr(self.expr), f"tz={self.tz!r}"])

    # -- slot enumeration ---------------------------------------------------------------------

    def _ascending(self, start: float) -> Iterator[float]:
        """Slots ``>= start``, strictly increasing, without end."""
        # Any wall time that resolves to an instant >= start is >= the wall time of ``start - 1``
        # (the extra second reaches matching times inside a gap when ``start`` is the gap's end).
        lower = self._wall(start - 1).replace(microsecond=0)
        walls = croniter(self._fields, lower - _SECOND)  # get_next is strict: start a second early
        last: float | None = None
        while True:
            slot = self._resolve(self._step(walls, forward=True))
            if slot >= start and slot != last:
                last = slot
                yield slot

    def _descending(self, end: float) -> Iterator[float]:
        """Slots ``<= end``, strictly decreasing, without end."""
        local = datetime.fromtimestamp(end, self._zone)
        upper = local.replace(tzinfo=None, fold=0, microsecond=0)
        if local.fold:
            # ``end`` is in the repeated hour: wall times up to the end of the repetition still
            # resolve (to their first occurrence) before ``end``.
            upper += _offset(local.replace(fold=0)) - _offset(local)
        walls = croniter(self._fields, upper + _SECOND)  # get_prev is strict: start a second late
        last: float | None = None
        while True:
            slot = self._resolve(self._step(walls, forward=False))
            if slot <= end and slot != last:
                last = slot
                yield slot

    def _step(self, walls: croniter, *, forward: bool) -> datetime:
        try:
            wall: datetime = walls.get_next(datetime) if forward else walls.get_prev(datetime)
        except (CroniterError, OverflowError, ValueError) as e:
            raise TriggerError(f"cron {self.expr!r}: no further slot ({e})") from e
        return wall

    def _wall(self, instant: float) -> datetime:
        """Naive local wall-clock time at ``instant``."""
        return datetime.fromtimestamp(instant, self._zone).replace(tzinfo=None, fold=0)

    def _resolve(self, wall: datetime) -> float:
        """The instant at which the naive local wall-clock time ``wall`` fires."""
        instant = wall.replace(tzinfo=self._zone, fold=0).timestamp()
        if self._wall(instant) == wall:
            return instant  # exists; fold=0 is the first occurrence of a repeated time
        # ``wall`` falls in a gap: fold=0 read it with the offset before the gap (an instant past
        # the gap), fold=1 with the one after (an instant before it). The first valid instant after
        # ``wall`` is the transition between them; transitions fall on whole seconds.
        other = wall.replace(tzinfo=self._zone, fold=1).timestamp()
        lo, hi = math.floor(min(instant, other)), math.ceil(max(instant, other))
        while hi - lo > 1:  # invariant: wall(lo) < wall <= wall(hi)
            mid = (lo + hi) // 2
            if self._wall(mid) > wall:
                hi = mid
            else:
                lo = mid
        return float(hi)


@dataclass(frozen=True, kw_only=True, repr=False)
class Every(_Timer):
    """Fire every ``seconds`` seconds, on slots ``start + k * seconds`` for every integer ``k``.

    ``start`` only sets the phase (default: the epoch, so ``Every(seconds=3600)`` fires on the hour,
    UTC); slots before it exist too. Intervals are real elapsed seconds, unaffected by time zones.
    See the module docstring for catch-up semantics.
    """

    seconds: float
    catchup: CatchUp = "latest"
    max_catchup: int = 100
    misfire_grace: float = _DEFAULT_GRACE
    start: float | None = None
    filter: EventFilter | None = None
    params: ParamsMapper | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise TriggerError(f"Every: seconds must be a finite number > 0, got {self.seconds!r}")
        if self.start is not None and not math.isfinite(self.start):
            raise TriggerError(f"Every: start must be a finite epoch time, got {self.start!r}")
        _check_catchup(self.catchup, self.max_catchup, self.misfire_grace)

    def next_slot(self, after: float) -> float:
        """The first slot strictly after ``after``."""
        k = math.floor((after - self._anchor) / self.seconds) + 1
        while self._slot(k - 1) > after:  # the division may round either way
            k -= 1
        while self._slot(k) <= after:
            k += 1
        return self._slot(k)

    def slots_between(self, start: float, end: float) -> list[float]:
        """Every slot ``s`` with ``start <= s <= end``, oldest first (for backfills)."""
        if start > end:
            return []
        k = self._index_at_or_before(start)
        if self._slot(k) < start:
            k += 1
        slots = []
        while (slot := self._slot(k)) <= end:
            slots.append(slot)
            k += 1
        return slots

    def due_slots(self, last_fired: float | None, now: float) -> list[float]:
        """The slots to fire at ``now`` given the last slot fired; see the module docstring."""
        return _select_due(
            (self._slot(k) for k in _count_down(self._index_at_or_before(now))),
            last_fired=last_fired,
            now=now,
            catchup=self.catchup,
            max_catchup=self.max_catchup,
            misfire_grace=self.misfire_grace,
        )

    def initial_cursor(self, now: float) -> float:
        """What the engine records as the last slot fired when it first sees this trigger."""
        return now

    def describe(self) -> str:
        """Short human text, e.g. ``every 30s`` or ``every 1h from 1970-01-01T00:30:00+00:00``."""
        text = f"every {_format_duration(self.seconds)}"
        if self.start is not None:
            text += f" from {datetime.fromtimestamp(self.start, UTC).isoformat()}"
        return text

    @property
    def tz(self) -> str:
        """Intervals are real seconds: whole days (for backfills) are UTC days."""
        return "UTC"

    def spec(self) -> dict[str, Any]:
        """``{"kind": "every", "seconds", "start"}`` (stored with the DAG; see ``schedule_from_spec``)."""
        return {"kind": "every", "seconds": self.seconds, "start": self.start}

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> EventSource:
        """A timer source firing this schedule's slots for the DAG."""
        return _timer_source(self, dag_id, index, clock, sharing)

    def __repr__(self) -> str:
        return _repr(self, [f"seconds={self.seconds!r}"])

    @property
    def _anchor(self) -> float:
        return 0.0 if self.start is None else self.start

    def _slot(self, k: int) -> float:
        return self._anchor + k * self.seconds

    def _index_at_or_before(self, t: float) -> int:
        """The largest ``k`` with ``slot(k) <= t``."""
        k = math.floor((t - self._anchor) / self.seconds)
        while self._slot(k) > t:
            k -= 1
        while self._slot(k + 1) <= t:
            k += 1
        return k


def schedule_from_spec(spec: Mapping[str, Any]) -> Cron | Every:
    """The schedule a ``spec()`` describes (what tools without the DAG's code use); a spec of
    another kind is a ``TriggerError``."""
    kind = spec.get("kind")
    if kind == "cron":
        return Cron(str(spec["expr"]), tz=str(spec.get("tz", "UTC")))
    if kind == "every":
        return Every(seconds=float(spec["seconds"]), start=spec.get("start"))
    raise TriggerError(f"no schedule of kind {kind!r} (cron, every)")


def _select_due(
    newest_first: Iterator[float],
    *,
    last_fired: float | None,
    now: float,
    catchup: CatchUp,
    max_catchup: int,
    misfire_grace: float,
) -> list[float]:
    """Apply the catch-up policy to the slots ``<= now``, given newest first."""
    if last_fired is None:
        return []
    limit = max_catchup if catchup == "all" else 1
    due: list[float] = []
    for slot in newest_first:
        if slot <= last_fired or len(due) == limit:
            break
        due.append(slot)
    if catchup == "none" and due and now - due[0] > misfire_grace:
        return []
    due.reverse()
    return due


def _count_down(k: int) -> Iterator[int]:
    while True:
        yield k
        k -= 1


def _check_catchup(catchup: str, max_catchup: int, misfire_grace: float) -> None:
    if catchup not in _CATCHUP_MODES:
        raise TriggerError(f"catchup must be one of {_CATCHUP_MODES}, got {catchup!r}")
    if max_catchup < 1:
        raise TriggerError(f"max_catchup must be >= 1, got {max_catchup!r}")
    if not (math.isfinite(misfire_grace) and misfire_grace >= 0):
        raise TriggerError(f"misfire_grace must be a finite number >= 0, got {misfire_grace!r}")


def _parse_expr(expr: str) -> str:
    """The five cron fields of ``expr`` (aliases expanded); TriggerError if croniter rejects it."""
    fields = _ALIASES.get(expr.strip().lower(), expr)
    if len(fields.split()) != 5:
        raise TriggerError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week) or an @alias such as @daily"
        )
    try:
        croniter(fields, _REFERENCE).get_next(datetime)
    except (CroniterError, ValueError, TypeError, KeyError) as e:
        raise TriggerError(f"invalid cron expression {expr!r}: {e}") from e
    return fields


def _load_zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise TriggerError(f"unknown time zone {tz!r} (expected an IANA name such as 'UTC')") from e


def _offset(local: datetime) -> timedelta:
    offset = local.utcoffset()
    assert offset is not None  # aware datetimes from ZoneInfo always have one
    return offset


def _format_duration(seconds: float) -> str:
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _repr(trigger: Cron | Every, head: list[str]) -> str:
    """``Name(head..., keywords that differ from their defaults)``; callables by qualified name."""
    args = list(head)
    for f in fields(trigger):
        if not f.init or f.kw_only is False or f.name in ("seconds", "tz"):
            continue
        value = getattr(trigger, f.name)
        if value == f.default:
            continue
        if callable(value):
            args.append(f"{f.name}={getattr(value, '__qualname__', repr(value))}")
        else:
            args.append(f"{f.name}={value!r}")
    return f"{type(trigger).__name__}({', '.join(args)})"


__all__ = ["CatchUp", "Cron", "Every", "schedule_from_spec"]
