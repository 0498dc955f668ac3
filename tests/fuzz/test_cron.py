"""``Cron(expr, tz=...)`` with arbitrary expressions and zones: a working trigger or a
``TriggerError``, never another exception; a working one yields strictly increasing slots."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import TriggerError
from sensors import Cron

from .support import FUZZ

ZONES = sorted(zoneinfo.available_timezones())
DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # DST transitions at midnight
    "Pacific/Apia",  # skipped a whole day (2011-12-30)
    "Asia/Kathmandu",  # +05:45
    "Africa/Casablanca",  # DST suspended during Ramadan
]

names = st.sampled_from(
    ["jan", "FEB", "dec", "mon", "Sun", "sat", "L", "W", "?", "#", "LW", "5L", "15W", "2#3", "H"]
)
number = st.one_of(st.integers(-3, 70), st.sampled_from([0, 1, 7, 12, 23, 24, 31, 59, 60, 99999]))
atom = st.one_of(
    st.just("*"),
    number.map(str),
    names,
    st.tuples(number, number).map(lambda p: f"{p[0]}-{p[1]}"),
    st.tuples(st.sampled_from(["*", "0", "1-5", "10-2"]), number).map(lambda p: f"{p[0]}/{p[1]}"),
    st.text(alphabet="*/-,#?LW0123456789 \t", min_size=1, max_size=6),
)
field = st.lists(atom, min_size=1, max_size=3).map(",".join)
expressions = st.one_of(
    st.lists(field, min_size=5, max_size=5).map(" ".join),
    st.lists(field, min_size=3, max_size=7).map(" ".join),
    st.sampled_from(["@daily", "@HOURLY", " @weekly ", "@reboot", "@every 5m", "@", ""]),
    st.text(max_size=40),
)
zones = st.one_of(
    st.sampled_from(DST_ZONES),
    st.sampled_from(ZONES),
    st.sampled_from(["", "utc", "UTC ", "/etc/passwd", "../../etc/passwd", "Europe/", "\x00", "."]),
    st.text(max_size=20),
)
instants = st.floats(min_value=0, max_value=4.1e9, allow_nan=False)  # 1970 .. 2099


@FUZZ
@given(expr=expressions, tz=zones, after=instants)
def test_cron_is_valid_or_a_trigger_error_and_its_slots_increase(
    expr: str, tz: str, after: float
) -> None:
    try:
        cron = Cron(expr, tz=tz)
    except TriggerError:
        return
    _check_slots(cron, after)


@FUZZ
@given(
    expr=st.lists(field, min_size=5, max_size=5).map(" ".join),
    tz=st.sampled_from(DST_ZONES),
    after=instants,
)
def test_valid_looking_expressions_in_dst_zones(expr: str, tz: str, after: float) -> None:
    try:
        cron = Cron(expr, tz=tz)
    except TriggerError:
        return
    _check_slots(cron, after)


def _check_slots(cron: Cron, after: float) -> None:
    slots = [cron.next_slot(after)]
    for _ in range(5):
        slots.append(cron.next_slot(slots[-1]))
    assert slots[0] > after
    assert all(a < b for a, b in itertools.pairwise(slots)), slots
    # nothing was skipped: the first slot after any instant in [after, slot) is that slot
    assert cron.next_slot((after + slots[0]) / 2) == slots[0]
    assert cron.next_slot(slots[0] - 0.5) == slots[0] or slots[0] - 0.5 <= after
    # and the same slots come out of the range query used by backfills
    assert cron.slots_between(slots[0], slots[-1]) == slots


@pytest.mark.parametrize(
    "expr", ["", "* * * *", "* * * * * *", "61 * * * *", "0 0 30 2 *", "@reboot", "a b c d e"]
)
def test_known_bad_expressions(expr: str) -> None:
    with pytest.raises(TriggerError):
        Cron(expr)


@pytest.mark.parametrize("tz", ["", "Nowhere/City", "/etc/passwd", "../UTC", "\x00"])
def test_known_bad_zones(tz: str) -> None:
    with pytest.raises(TriggerError):
        Cron("0 4 * * *", tz=tz)


def test_slots_across_a_spring_forward_gap() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Berlin")
    before = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()
    first = cron.next_slot(before)
    second = cron.next_slot(first)
    assert second > first and second - first <= 24 * 3600
