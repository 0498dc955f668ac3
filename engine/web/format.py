"""Pure text formatting for the UI and the API: instants, previews, error lines (durations:
``engine.durations``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ..durations import format_duration

PREVIEW_CHARS = 600


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC (``2026-11-25T04:00:00.123+00:00``), or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def utc_text(epoch: float | None) -> str:
    """``2026-11-25 04:00:00 UTC`` (empty for None)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def zone_text(epoch: float | None, zone: ZoneInfo | None) -> str:
    """The same instant in ``zone`` (``2026-11-25 05:00:00 CET (Europe/Berlin)``); empty if UTC."""
    if epoch is None or zone is None or zone.key in ("UTC", "Etc/UTC"):
        return ""
    local = datetime.fromtimestamp(epoch, zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({zone.key})"


def relative_text(epoch: float, now: float) -> str:
    """``in 3 h 00 m`` or ``5 m 10 s ago``."""
    delta = epoch - now
    return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"


def last_line(text: str | None) -> str:
    """The last non-blank line of an error message or traceback (what a human reads first)."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def to_json(value: Any, *, pretty: bool = False) -> str:
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(value, default=repr, option=option).decode()


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A JSON rendering of ``value``, cut to ``limit`` characters with a marker."""
    if value is None:
        return ""
    text = to_json(value, pretty=True)
    if len(text) > limit:
        return text[:limit] + f"\n… ({len(text) - limit:,} more characters)"
    return text


__all__ = [
    "iso",
    "last_line",
    "preview",
    "relative_text",
    "to_json",
    "utc_text",
    "zone_text",
]
