"""Triggers described for people: cron expressions in words, next fire times, the DAG's time zone.

Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sensors import AfterDag, Cron, Every, KafkaTopic, S3Events, Trigger

from .format import iso

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_ALIASES = {
    "@yearly": "every year on January 1 at 00:00",
    "@annually": "every year on January 1 at 00:00",
    "@monthly": "on day 1 of every month at 00:00",
    "@weekly": "every Sunday at 00:00",
    "@daily": "every day at 00:00",
    "@midnight": "every day at 00:00",
    "@hourly": "every hour, on the hour",
}


def cron_in_words(expr: str) -> str | None:
    """English for the common shapes of a five-field cron expression, or None for the rest.

    ``*/15 * * * *`` → ``every 15 minutes``; ``30 4 * * 1-5`` → ``at 04:30 on Monday to Friday``."""
    text = expr.strip()
    if text.lower() in _ALIASES:
        return _ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    when = _time_words(minute, hour)
    days = _day_words(dom, month, dow)
    if when is None or days is None:
        return None
    if days.startswith("every day"):
        if when.startswith("every") and days == "every day":
            return when
        return f"{days} {when}" if when.startswith("at") else f"{when}, {days}"
    return f"{when} {days}"


def _num(field: str, lo: int, hi: int) -> int | None:
    return int(field) if field.isdigit() and lo <= int(field) <= hi else None


def _step(field: str) -> int | None:
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _time_words(minute: str, hour: str) -> str | None:
    m = _num(minute, 0, 59)
    h = _num(hour, 0, 23)
    if m is not None and h is not None:
        return f"at {h:02d}:{m:02d}"
    if m is not None and hour == "*":
        return "every hour, on the hour" if m == 0 else f"every hour at minute {m}"
    if m is not None and (step := _step(hour)) is not None:
        return f"every {step} hours at minute {m}"
    if m is not None and all(p.isdigit() and int(p) < 24 for p in hour.split(",")):
        return "at " + ", ".join(f"{int(p):02d}:{m:02d}" for p in hour.split(","))
    if m is not None and "-" in hour and all(p.isdigit() for p in hour.split("-", 1)):
        a, b = (int(p) for p in hour.split("-", 1))
        return f"every hour from {a:02d}:{m:02d} to {b:02d}:{m:02d}"
    if minute == "*" and hour == "*":
        return "every minute"
    if (step := _step(minute)) is not None and hour == "*":
        return "every minute" if step == 1 else f"every {step} minutes"
    return None


def _day_words(dom: str, month: str, dow: str) -> str | None:
    names = _dow_words(dow) if dow != "*" else ""
    if names is None or (dom != "*" and not all(p.isdigit() for p in dom.split(","))):
        return None
    if month != "*" and not all(p.isdigit() and 1 <= int(p) <= 12 for p in month.split(",")):
        return None
    days = f"day {dom.replace(',', ', ')} of the month" if dom != "*" else ""
    if days and names:
        day = f"on {days} or on {names}"  # classic cron: either day field may match
    elif days or names:
        day = f"on {days or names}"
    else:
        day = "every day"
    if month != "*":
        day += " in " + ", ".join(_MONTHS[int(p) - 1] for p in month.split(","))
    return day


def _dow_words(dow: str) -> str | None:
    names: list[str] = []
    for part in dow.split(","):
        if "-" in part:
            a, _, b = part.partition("-")
            if not (a.isdigit() and b.isdigit() and int(a) <= 7 and int(b) <= 7):
                return None
            names.append(f"{_DAYS[int(a) % 7]} to {_DAYS[int(b) % 7]}")
        elif part.isdigit() and int(part) <= 7:
            names.append(_DAYS[int(part) % 7])
        else:
            return None
    return ", ".join(names)


def dag_zone(triggers: Iterable[Trigger]) -> ZoneInfo | None:
    """The time zone of the DAG's first timer trigger whose schedule is not in UTC, if any."""
    for trig in triggers:
        schedule = trig.schedule
        if schedule is not None and schedule.tz not in ("UTC", "Etc/UTC"):
            try:
                return ZoneInfo(schedule.tz)
            except (ZoneInfoNotFoundError, ValueError):
                return None
    return None


def next_fire(trigger: Trigger, now: float) -> float | None:
    """The trigger's next slot after ``now`` (timers only), or None."""
    schedule = trigger.schedule
    if schedule is None:
        return None
    try:
        return float(schedule.next_slot(now))
    except Exception:  # a schedule with no further slot, or one of a user's own that fails
        return None


def describe_trigger(trigger: Trigger, now: float) -> dict[str, Any]:
    """A JSON-ready description: ``kind``, ``text`` (``Trigger.describe``), ``words`` (for people:
    Podium's own triggers in fuller words), details."""
    info: dict[str, Any]
    if isinstance(trigger, Cron):
        words = cron_in_words(trigger.expr) or f"cron {trigger.expr}"
        tz = "" if trigger.tz in ("UTC", "Etc/UTC") else f" ({trigger.tz})"
        info = {"kind": "cron", "expr": trigger.expr, "tz": trigger.tz, "words": words + tz}
    elif isinstance(trigger, Every):
        info = {"kind": "every", "seconds": trigger.seconds, "words": trigger.describe()}
    elif isinstance(trigger, KafkaTopic):
        info = {
            "kind": "kafka",
            "topic": trigger.topic,
            "words": f"each message on Kafka topic {trigger.topic}",
        }
    elif isinstance(trigger, S3Events):
        where = f"s3://{trigger.bucket}/{trigger.prefix}"
        if trigger.suffix:
            where += f"*{trigger.suffix}"
        info = {
            "kind": "s3",
            "bucket": trigger.bucket,
            "prefix": trigger.prefix,
            "words": f"each new object under {where}",
        }
    elif isinstance(trigger, AfterDag):
        info = {
            "kind": "after_dag",
            "dag_id": trigger.dag_id,
            "words": f"when {trigger.dag_id} ends ({'/'.join(trigger.states)})",
        }
    else:  # a trigger of the user's own
        info = {"kind": type(trigger).__name__.lower(), "words": trigger.describe()}
    info["text"] = trigger.describe()
    nxt = next_fire(trigger, now)
    info["next_at"] = nxt
    info["next_at_iso"] = iso(nxt)
    return info


def source_prefix(key: str) -> str | None:
    """The run-key prefix shared by runs of the same event source, for "other runs of this source".

    ``kafka:orders:3:1042`` → ``kafka:orders:``; ``s3:bucket/path/file.csv@etag`` →
    ``s3:bucket/path/file.csv@``; ``timer:dag:…`` → ``timer:dag:``; manual runs → None."""
    if key.startswith("kafka:"):
        parts = key.split(":")
        return ":".join(parts[:2]) + ":" if len(parts) >= 3 else None
    if key.startswith("s3:") and "@" in key:
        return key.rsplit("@", 1)[0] + "@"
    if key.startswith(("timer:", "dag:")):
        parts = key.split(":")
        return ":".join(parts[:2]) + ":" if len(parts) >= 3 else None
    return None


__all__ = ["cron_in_words", "dag_zone", "describe_trigger", "next_fire", "source_prefix"]
