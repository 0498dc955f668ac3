"""Timer triggers: slot arithmetic across daylight-saving changes, catch-up, validation.

Pure: no event loop, no clock, no sleeping. Times are written as ISO strings with their UTC offset
so each expectation reads as local time and is unambiguous across DST changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import TriggerError
from sensors import timers
from sensors.timers import Cron, Every

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"  # half-hour DST shift
SYDNEY = "Australia/Sydney"  # southern hemisphere
HOUR = 3600.0
DAY = 86_400.0


def ts(text: str) -> float:
    """Epoch seconds of an ISO time with its offset, e.g. ``2026-03-29T03:00:00+02:00``."""
    return datetime.fromisoformat(text).timestamp()


def iso(tz: str, slots: list[float]) -> list[str]:
    return [datetime.fromtimestamp(s, ZoneInfo(tz)).isoformat() for s in slots]


def between(cron: Cron, start: str, end: str) -> list[str]:
    return iso(cron.tz, cron.slots_between(ts(start), ts(end)))


# -- daylight saving time, by example ------------------------------------------------------------


def test_daily_in_spring_gap_runs_once_at_end_of_gap_berlin() -> None:
    cron = Cron("30 2 * * *", tz=BERLIN)
    assert between(cron, "2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00") == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: first valid instant after the gap
        "2026-03-30T02:30:00+02:00",
    ]


def test_daily_in_repeated_hour_runs_once_at_first_occurrence_berlin() -> None:
    cron = Cron("30 2 * * *", tz=BERLIN)
    assert between(cron, "2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00+01:00") == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # not again at 02:30+01:00
        "2026-10-26T02:30:00+01:00",
    ]


def test_daily_across_dst_new_york() -> None:
    spring = Cron("30 2 * * *", tz=NEW_YORK)
    assert between(spring, "2026-03-07T00:00:00-05:00", "2026-03-10T00:00:00-04:00") == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    # New York repeats 01:00-01:59, so 02:30 stays unique on the fall-back day ...
    assert between(spring, "2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00") == [
        "2026-10-31T02:30:00-04:00",
        "2026-11-01T02:30:00-05:00",
        "2026-11-02T02:30:00-05:00",
    ]
    # ... and 01:30 is the ambiguous one.
    fall = Cron("30 1 * * *", tz=NEW_YORK)
    assert between(fall, "2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00") == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_hourly_across_spring_forward_fires_each_real_hour_once() -> None:
    berlin = Cron("0 * * * *", tz=BERLIN)
    assert between(berlin, "2026-03-29T00:30:00+01:00", "2026-03-29T04:30:00+02:00") == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 and 03:00 are the same instant: one run
        "2026-03-29T04:00:00+02:00",
    ]
    new_york = Cron("0 * * * *", tz=NEW_YORK)
    assert between(new_york, "2026-03-08T00:30:00-05:00", "2026-03-08T04:30:00-04:00") == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_hourly_across_fall_back_fires_each_wall_clock_hour_once() -> None:
    berlin = Cron("0 * * * *", tz=BERLIN)
    assert between(berlin, "2026-10-25T00:30:00+02:00", "2026-10-25T04:30:00+01:00") == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T03:00:00+01:00",  # two real hours later: 02:00+01:00 is not a second slot
        "2026-10-25T04:00:00+01:00",
    ]
    new_york = Cron("0 * * * *", tz=NEW_YORK)
    assert between(new_york, "2026-10-31T23:30:00-04:00", "2026-11-01T03:30:00-05:00") == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]


def test_every_15_minutes_across_spring_forward_collapses_the_gap() -> None:
    cron = Cron("*/15 * * * *", tz=BERLIN)
    assert between(cron, "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00") == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00, 02:15, 02:30, 02:45 and 03:00: one run
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]
    ny = Cron("*/15 * * * *", tz=NEW_YORK)
    assert between(ny, "2026-03-08T01:45:00-05:00", "2026-03-08T03:15:00-04:00") == [
        "2026-03-08T01:45:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:15:00-04:00",
    ]


def test_every_15_minutes_across_fall_back_skips_the_repeated_hour() -> None:
    cron = Cron("*/15 * * * *", tz=BERLIN)
    assert between(cron, "2026-10-25T02:30:00+02:00", "2026-10-25T03:15:00+01:00") == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:45:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:15:00+01:00",
    ]
    ny = Cron("*/15 * * * *", tz=NEW_YORK)
    assert between(ny, "2026-11-01T01:30:00-04:00", "2026-11-01T02:00:00-05:00") == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:45:00-04:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_half_hour_dst_shift_lord_howe() -> None:
    cron = Cron("0,30 * * * *", tz=LORD_HOWE)
    # Spring: 02:00 jumps to 02:30.
    assert between(cron, "2026-10-04T01:30:00+10:30", "2026-10-04T03:00:00+11:00") == [
        "2026-10-04T01:30:00+10:30",
        "2026-10-04T02:30:00+11:00",
        "2026-10-04T03:00:00+11:00",
    ]
    # Autumn: 02:00 falls back to 01:30, so 01:30-01:59 repeats.
    assert between(cron, "2026-04-05T01:00:00+11:00", "2026-04-05T02:30:00+10:30") == [
        "2026-04-05T01:00:00+11:00",
        "2026-04-05T01:30:00+11:00",
        "2026-04-05T02:00:00+10:30",
        "2026-04-05T02:30:00+10:30",
    ]


def test_next_slot_from_inside_the_repeated_hour() -> None:
    cron = Cron("*/15 * * * *", tz=BERLIN)
    # First pass through 02:10: the next slot is 02:15 of the same pass.
    assert iso(BERLIN, [cron.next_slot(ts("2026-10-25T02:10:00+02:00"))]) == [
        "2026-10-25T02:15:00+02:00"
    ]
    # Second pass: 02:15-02:45 already ran in the first pass; the next slot is 03:00.
    assert iso(BERLIN, [cron.next_slot(ts("2026-10-25T02:10:00+01:00"))]) == [
        "2026-10-25T03:00:00+01:00"
    ]


def test_next_slot_is_strict_and_slots_between_inclusive_at_a_gap_end() -> None:
    cron = Cron("30 2 * * *", tz=BERLIN)
    gap_end = ts("2026-03-29T03:00:00+02:00")
    assert cron.next_slot(gap_end - 0.5) == gap_end
    assert cron.next_slot(gap_end) == ts("2026-03-30T02:30:00+02:00")
    assert cron.slots_between(gap_end, gap_end) == [gap_end]
    assert cron.slots_between(gap_end + 0.5, gap_end + HOUR) == []


def test_backfill_across_dst_change() -> None:
    cron = Cron("0 */6 * * *", tz=BERLIN)
    assert between(cron, "2026-10-24T12:00:00+02:00", "2026-10-25T12:00:00+01:00") == [
        "2026-10-24T12:00:00+02:00",
        "2026-10-24T18:00:00+02:00",
        "2026-10-25T00:00:00+02:00",
        "2026-10-25T06:00:00+01:00",
        "2026-10-25T12:00:00+01:00",
    ]
    assert (
        cron.slots_between(ts("2026-10-25T12:00:00+01:00"), ts("2026-10-24T12:00:00+02:00")) == []
    )


def test_utc_and_sparse_expressions_are_fast() -> None:
    leap_day = Cron("0 0 29 2 *")
    assert iso("UTC", [leap_day.next_slot(ts("2025-01-01T00:00:00+00:00"))]) == [
        "2028-02-29T00:00:00+00:00"
    ]
    every_minute = Cron("* * * * *", catchup="all", max_catchup=3)
    now = ts("2026-06-01T12:00:30+00:00")
    assert iso("UTC", every_minute.due_slots(0.0, now)) == [
        "2026-06-01T11:58:00+00:00",
        "2026-06-01T11:59:00+00:00",
        "2026-06-01T12:00:00+00:00",
    ]


def test_aliases_and_day_names() -> None:
    assert Cron("@daily").next_slot(ts("2026-01-01T10:00:00+00:00")) == ts(
        "2026-01-02T00:00:00+00:00"
    )
    weekdays = Cron("0 9 * * mon-fri", tz=BERLIN)
    assert between(weekdays, "2026-01-02T00:00:00+01:00", "2026-01-06T00:00:00+01:00") == [
        "2026-01-02T09:00:00+01:00",
        "2026-01-05T09:00:00+01:00",
    ]


# -- catch-up --------------------------------------------------------------------------------------


def hourly(catchup: Any, **kw: Any) -> Cron:
    return Cron("0 * * * *", tz=BERLIN, catchup=catchup, **kw)


LAST = "2026-06-01T10:00:00+02:00"
AFTER_DOWNTIME = "2026-06-01T13:30:00+02:00"


def due(trigger: Cron, last: str | None, now: str) -> list[str]:
    return iso(trigger.tz, trigger.due_slots(None if last is None else ts(last), ts(now)))


def test_catchup_all_fires_every_missed_slot_oldest_first() -> None:
    assert due(hourly("all"), LAST, AFTER_DOWNTIME) == [
        "2026-06-01T11:00:00+02:00",
        "2026-06-01T12:00:00+02:00",
        "2026-06-01T13:00:00+02:00",
    ]


def test_catchup_all_keeps_the_newest_max_catchup() -> None:
    assert due(hourly("all", max_catchup=2), LAST, AFTER_DOWNTIME) == [
        "2026-06-01T12:00:00+02:00",
        "2026-06-01T13:00:00+02:00",
    ]


def test_catchup_latest_fires_only_the_newest() -> None:
    assert due(hourly("latest"), LAST, AFTER_DOWNTIME) == ["2026-06-01T13:00:00+02:00"]


def test_catchup_none_skips_missed_slots_and_fires_on_time_ones() -> None:
    cron = hourly("none")
    assert due(cron, LAST, AFTER_DOWNTIME) == []
    # On time (within misfire_grace of 60 s), even after downtime:
    assert due(cron, LAST, "2026-06-01T13:00:45+02:00") == ["2026-06-01T13:00:00+02:00"]
    assert due(cron, LAST, "2026-06-01T13:01:01+02:00") == []
    # Normal operation: woken right at the slot.
    assert due(cron, "2026-06-01T12:00:00+02:00", "2026-06-01T13:00:00+02:00") == [
        "2026-06-01T13:00:00+02:00"
    ]
    # A later on-time slot still fires while last_fired stays at the old slot.
    assert due(cron, LAST, "2026-06-01T14:00:01+02:00") == ["2026-06-01T14:00:00+02:00"]
    assert due(hourly("none", misfire_grace=HOUR), LAST, AFTER_DOWNTIME) == [
        "2026-06-01T13:00:00+02:00"
    ]


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_first_start_fires_nothing_from_the_past(catchup: Any) -> None:
    cron = hourly(catchup)
    now = ts("2026-06-01T13:00:00+02:00")  # even exactly on a slot
    assert cron.due_slots(None, now) == []
    cursor = cron.initial_cursor(now)
    assert cursor == now
    assert cron.due_slots(cursor, now + 30) == []
    assert due(cron, "2026-06-01T13:00:00+02:00", "2026-06-01T14:00:00+02:00") == [
        "2026-06-01T14:00:00+02:00"
    ]


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_nothing_due_before_the_next_slot(catchup: Any) -> None:
    cron = hourly(catchup)
    assert due(cron, "2026-06-01T13:00:00+02:00", "2026-06-01T13:59:59+02:00") == []
    assert due(cron, "2026-06-01T13:00:00+02:00", "2026-06-01T13:00:00+02:00") == []


def test_catchup_all_from_inside_the_repeated_hour() -> None:
    cron = Cron("*/15 * * * *", tz=BERLIN, catchup="all")
    assert due(cron, "2026-10-25T01:50:00+02:00", "2026-10-25T02:20:00+01:00") == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:45:00+02:00",
    ]


def test_catchup_across_spring_gap() -> None:
    cron = Cron("30 2 * * *", tz=BERLIN, catchup="all")
    assert due(cron, "2026-03-27T02:30:00+01:00", "2026-03-29T12:00:00+02:00") == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]


def test_every_catchup_modes() -> None:
    last, now = 600.0, 1_000.0
    assert Every(seconds=100, catchup="all").due_slots(last, now) == [700.0, 800.0, 900.0, 1_000.0]
    assert Every(seconds=100, catchup="all", max_catchup=2).due_slots(last, now) == [900.0, 1_000.0]
    assert Every(seconds=100).due_slots(last, now) == [1_000.0]
    assert Every(seconds=100, catchup="none").due_slots(last, now) == [1_000.0]
    assert Every(seconds=100, catchup="none").due_slots(last, now + 61) == []
    assert Every(seconds=100, catchup="all").due_slots(None, now) == []
    huge = Every(seconds=1, catchup="all", max_catchup=3)
    assert huge.due_slots(0.0, 1e9 + 0.5) == [1e9 - 2, 1e9 - 1, 1e9]


# -- Every -----------------------------------------------------------------------------------------


def test_every_aligns_to_multiples_since_the_epoch() -> None:
    every = Every(seconds=30)
    assert every.next_slot(95.0) == 120.0
    assert every.next_slot(120.0) == 150.0
    assert every.next_slot(119.999) == 120.0
    assert every.next_slot(-45.0) == -30.0
    assert every.slots_between(120.0, 210.0) == [120.0, 150.0, 180.0, 210.0]
    assert every.slots_between(121.0, 149.0) == []
    assert every.slots_between(210.0, 120.0) == []
    assert Every(seconds=HOUR).next_slot(ts("2026-03-29T01:59:00+01:00")) == ts(
        "2026-03-29T03:00:00+02:00"
    )


def test_every_start_sets_the_phase() -> None:
    every = Every(seconds=HOUR, start=1_800.0)
    assert every.next_slot(0.0) == 1_800.0
    assert every.next_slot(1_800.0) == 5_400.0
    assert every.next_slot(-1.0) == -1_800.0 + HOUR  # slots before ``start`` exist too
    assert Every(seconds=10, start=1e9 + 3).slots_between(1e9, 1e9 + 25) == [
        1e9 + 3,
        1e9 + 13,
        1e9 + 23,
    ]


def test_every_fractional_seconds_do_not_drift() -> None:
    every = Every(seconds=0.1)
    slot = 1_750_000_000.05
    for _ in range(1_000):
        following = every.next_slot(slot)
        assert following > slot
        k = round(following / 0.1)
        assert following == k * 0.1
        slot = following


# -- validation, describe, repr ------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "not a cron",
        "61 * * * *",
        "* * * *",
        "* * * * * *",
        "0 0 30 2 *",
        "",
        "H * * * *",
        "@reboot",
    ],
)
def test_bad_cron_expression(expr: str) -> None:
    with pytest.raises(TriggerError, match="cron expression") as info:
        Cron(expr)
    assert repr(expr) in str(info.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd", "/etc/localtime", "utc"])
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(TriggerError, match="time zone") as info:
        Cron("0 4 * * *", tz=tz)
    assert repr(tz) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"catchup": "sometimes"},
        {"max_catchup": 0},
        {"misfire_grace": -1.0},
        {"misfire_grace": math.nan},
    ],
)
def test_bad_catchup_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TriggerError):
        Cron("0 4 * * *", **kwargs)
    with pytest.raises(TriggerError):
        Every(seconds=30, **kwargs)


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan, math.inf])
def test_bad_every_seconds(seconds: float) -> None:
    with pytest.raises(TriggerError, match="seconds"):
        Every(seconds=seconds)


def test_bad_every_start() -> None:
    with pytest.raises(TriggerError, match="start"):
        Every(seconds=30, start=math.inf)


def test_arguments_after_expr_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Cron("0 4 * * *", "UTC")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Every(30)  # type: ignore[call-arg]


def test_frozen_comparable_hashable() -> None:
    cron = Cron("0 4 * * *", tz=BERLIN)
    with pytest.raises(FrozenInstanceError):
        cron.tz = "UTC"  # type: ignore[misc]
    assert cron == Cron("0 4 * * *", tz=BERLIN)
    assert cron != Cron("0 4 * * *")
    assert len({cron, Cron("0 4 * * *", tz=BERLIN), Every(seconds=30), Every(seconds=30)}) == 2


def test_describe_and_repr() -> None:
    def weekdays_only(event: Any) -> bool:
        return True

    assert Cron("0 4 * * *", tz=BERLIN).describe() == "cron 0 4 * * * (Europe/Berlin)"
    assert Cron("@daily").describe() == "cron @daily (UTC)"
    assert Every(seconds=30).describe() == "every 30s"
    assert Every(seconds=90).describe() == "every 1m30s"
    assert Every(seconds=DAY).describe() == "every 1d"
    assert Every(seconds=0.25).describe() == "every 0.25s"
    assert Every(seconds=HOUR, start=1_800).describe() == (
        "every 1h from 1970-01-01T00:30:00+00:00"
    )
    assert repr(Cron("0 4 * * *")) == "Cron('0 4 * * *', tz='UTC')"
    assert repr(Cron("0 4 * * *", tz=BERLIN, catchup="all", filter=weekdays_only)) == (
        "Cron('0 4 * * *', tz='Europe/Berlin', catchup='all', "
        "filter=test_describe_and_repr.<locals>.weekdays_only)"
    )
    assert repr(Every(seconds=30)) == "Every(seconds=30)"
    assert repr(Every(seconds=30, max_catchup=5, start=10.0)) == (
        "Every(seconds=30, max_catchup=5, start=10.0)"
    )


def test_public_surface() -> None:
    assert sorted(timers.__all__) == ["CatchUp", "Cron", "Every", "schedule_from_spec"]
    assert all(hasattr(timers, name) for name in timers.__all__)


# -- properties ------------------------------------------------------------------------------------

ZONES = [BERLIN, NEW_YORK, LORD_HOWE, SYDNEY]

# Each expression with an independent matcher on a naive local wall time (weekday(): Monday=0).
EXPRESSIONS: dict[str, Callable[[datetime], bool]] = {
    "30 2 * * *": lambda w: (w.hour, w.minute) == (2, 30),
    "30 1 * * *": lambda w: (w.hour, w.minute) == (1, 30),
    "0 * * * *": lambda w: w.minute == 0,
    "*/15 * * * *": lambda w: w.minute % 15 == 0,
    "45 1-3 * * *": lambda w: w.minute == 45 and 1 <= w.hour <= 3,
    "0,30 2 * * sun": lambda w: w.minute in (0, 30) and w.hour == 2 and w.weekday() == 6,
}

YEARS_START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
YEARS_END = datetime(2029, 1, 1, tzinfo=UTC).timestamp()
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=True)


@cache
def transitions(tz: str) -> list[int]:
    """Instants of the UTC-offset changes of ``tz`` in 2024-2028."""
    zone = ZoneInfo(tz)

    def offset(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, zone).utcoffset()

    found = []
    step = 6 * 3600
    for t in range(int(YEARS_START), int(YEARS_END), step):
        if offset(t) != offset(t + step):
            lo, hi = t, t + step
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if offset(mid) != offset(lo) else (mid, hi)
            found.append(hi)
    return found


@st.composite
def instants(draw: st.DrawFn, tz: str) -> float:
    """An instant in 2024-2028; half of them from a day before to two hours after a DST change."""
    if draw(st.booleans()):
        base = float(draw(st.sampled_from(transitions(tz))))
        whole = base + draw(st.integers(-int(DAY), 2 * int(HOUR)))
    else:
        whole = float(draw(st.integers(int(YEARS_START), int(YEARS_END))))
    if draw(st.booleans()):
        whole = 60 * (whole // 60)  # on a minute boundary, where slots are
    return whole + draw(st.sampled_from([0.0, 0.0, 0.5, 0.999]))


@st.composite
def windows(draw: st.DrawFn, longest: float) -> tuple[str, str, float, float]:
    tz = draw(st.sampled_from(ZONES))
    expr = draw(st.sampled_from(sorted(EXPRESSIONS)))
    start = draw(instants(tz))
    return tz, expr, start, start + draw(st.floats(0, longest))


def brute_force_slots(
    tz: str, matches: Callable[[datetime], bool], a: float, b: float
) -> list[float]:
    """The slots in [a, b], by looking at every UTC minute: a minute fires if its local wall time
    matches on its first occurrence, or if it ends a gap that skipped a matching wall time."""
    zone = ZoneInfo(tz)
    slots = []
    t = 60 * math.ceil(a / 60)
    previous = datetime.fromtimestamp(t - 60, zone).replace(tzinfo=None)
    while t <= b:
        local = datetime.fromtimestamp(t, zone)
        wall = local.replace(tzinfo=None)
        skipped = previous + timedelta(minutes=1)
        in_gap = False
        while skipped < wall:
            in_gap = in_gap or matches(skipped)
            skipped += timedelta(minutes=1)
        if (matches(wall) and local.fold == 0) or in_gap:
            slots.append(float(t))
        previous = wall
        t += 60
    return slots


@PROPERTY_SETTINGS
@given(windows(longest=30 * HOUR))
def test_slots_between_matches_brute_force(window: tuple[str, str, float, float]) -> None:
    tz, expr, a, b = window
    assert Cron(expr, tz=tz).slots_between(a, b) == brute_force_slots(tz, EXPRESSIONS[expr], a, b)


@PROPERTY_SETTINGS
@given(windows(longest=8 * HOUR))
def test_chained_next_slot(window: tuple[str, str, float, float]) -> None:
    tz, expr, a, b = window
    cron, zone, matches = Cron(expr, tz=tz), ZoneInfo(tz), EXPRESSIONS[expr]
    chained = []
    slot = cron.next_slot(a)
    while slot <= b:
        chained.append(slot)
        slot = cron.next_slot(slot)
    chained.append(slot)  # one past the window, so every example checks at least one slot

    assert all(x < y for x, y in pairwise(chained))
    walls = [datetime.fromtimestamp(s, zone).replace(tzinfo=None) for s in chained]
    assert len(set(walls)) == len(walls), "a wall-clock slot fired twice"
    for s, wall in zip(chained, walls, strict=True):
        local = datetime.fromtimestamp(s, zone)
        if matches(wall):
            assert local.fold == 0, "ran on the second occurrence of a repeated time"
        else:  # the first valid instant after a gap that holds a matching wall time
            skipped = datetime.fromtimestamp(s - 60, zone).replace(tzinfo=None)
            skipped += timedelta(minutes=1)
            in_gap = False
            while skipped < wall:
                in_gap = in_gap or matches(skipped)
                skipped += timedelta(minutes=1)
            assert in_gap, f"{local} matches nothing"
    assert chained[:-1] == [s for s in cron.slots_between(a, b) if s > a]


@PROPERTY_SETTINGS
@given(windows(longest=3 * DAY), st.integers(1, 5))
def test_due_slots_agree_with_slots_between(
    window: tuple[str, str, float, float], max_catchup: int
) -> None:
    tz, expr, last, now = window
    missed = [s for s in Cron(expr, tz=tz).slots_between(last, now) if s > last]
    catch_all = Cron(expr, tz=tz, catchup="all", max_catchup=max_catchup)
    assert catch_all.due_slots(last, now) == missed[-max_catchup:]
    assert Cron(expr, tz=tz, catchup="latest").due_slots(last, now) == missed[-1:]
    on_time = missed[-1:] if missed and now - missed[-1] <= 60 else []
    assert Cron(expr, tz=tz, catchup="none").due_slots(last, now) == on_time


@PROPERTY_SETTINGS
@given(
    seconds=st.one_of(st.integers(1, 7 * int(DAY)).map(float), st.floats(0.001, 1e5)),
    start=st.one_of(st.none(), st.floats(-1e9, 2e9)),
    after=st.floats(1.6e9, 1.9e9),
)
def test_every_next_slot_is_the_first_slot_after(
    seconds: float, start: float | None, after: float
) -> None:
    every = Every(seconds=seconds, start=start)
    slot = every.next_slot(after)
    assert slot > after
    assert [s for s in every.slots_between(after, slot) if s > after] == [slot]
    assert every.next_slot(slot) > slot
    assert every.due_slots(after - 3 * seconds, slot) == [slot]
    anchor = 0.0 if start is None else start
    assert slot == anchor + round((slot - anchor) / seconds) * seconds
