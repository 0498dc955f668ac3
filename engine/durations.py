"""Durations in words for people: the web UI, the CLI, alert messages."""

from __future__ import annotations


def format_duration(seconds: float | None, *, compact: bool = False) -> str:
    """``850 ms``, ``3.2 s``, ``4 m 05 s``, ``2 h 03 m``, ``3 d 04 h``; empty for None.

    ``compact`` (for a sentence, as in an alert message): ``850ms``, ``3.2s``, ``4m 5s``, ``2h 3m``,
    ``3d 4h``. Below a minute tenths of a second show; from a minute on, the two largest units in
    whole seconds. A negative duration counts as zero."""
    if seconds is None:
        return ""
    s = max(seconds, 0.0)
    gap = "" if compact else " "
    if s < 1:
        return f"{s * 1000:.0f}{gap}ms"
    if s < 60:
        return f"{s:.1f}{gap}s"
    whole = round(s)
    if whole < 3_600:
        big, small, units = whole // 60, whole % 60, ("m", "s")
    elif whole < 86_400:
        big, small, units = whole // 3_600, whole % 3_600 // 60, ("h", "m")
    else:
        big, small, units = whole // 86_400, whole % 86_400 // 3_600, ("d", "h")
    small_text = str(small) if compact else f"{small:02d}"
    return f"{big}{gap}{units[0]} {small_text}{gap}{units[1]}"


__all__ = ["format_duration"]
