"""Durations in words: one formatter for the UI, the CLI and alert messages."""

from __future__ import annotations

import pytest

from engine.durations import format_duration


@pytest.mark.parametrize(
    ("seconds", "spaced", "compact"),
    [
        (0.0, "0 ms", "0ms"),
        (0.85, "850 ms", "850ms"),
        (1.0, "1.0 s", "1.0s"),
        (3.24, "3.2 s", "3.2s"),
        (30.0, "30.0 s", "30.0s"),
        (60.0, "1 m 00 s", "1m 0s"),
        (120.0, "2 m 00 s", "2m 0s"),
        (245.4, "4 m 05 s", "4m 5s"),
        (3_599.4, "59 m 59 s", "59m 59s"),
        (3_600.0, "1 h 00 m", "1h 0m"),
        (7_380.0, "2 h 03 m", "2h 3m"),
        (86_399.0, "23 h 59 m", "23h 59m"),
        (86_400.0, "1 d 00 h", "1d 0h"),
        (273_600.0, "3 d 04 h", "3d 4h"),
    ],
)
def test_spelled_in_its_two_largest_units(seconds: float, spaced: str, compact: str) -> None:
    assert format_duration(seconds) == spaced
    assert format_duration(seconds, compact=True) == compact


def test_none_is_empty_and_negative_is_zero() -> None:
    assert format_duration(None) == format_duration(None, compact=True) == ""
    assert format_duration(-5.0) == "0 ms"
