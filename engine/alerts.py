"""Alerts: what an operator hears about, and what each alert says.

An ``Alert`` says that a task failed, is being retried, got slow, missed its SLA, or a DAG recovered;
or that an asset missed its freshness or its schema changed. The functions below word each kind
from what was found (a task record, a finished run, a ``Slowdown``, an SLA, an asset finding): pure,
no clock, no I/O.

The rest of alerting lives beside this module:

- ``engine.alerting``: ``Alerting``, the engine observer that decides *when* an alert is due (once
  per failed try, per slow try, per missed SLA, per asset finding) and runs the background watch;
- ``engine.asset_alerts``: ``AssetWatch``, the findings about assets that watch turns into alerts;
- ``engine.notifiers``: where alerts go (``SlackWebhook``, ``JSONWebhook``, ``CallbackNotifier``,
  any ``Notifier``) and the queue that delivers them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .assets import describe_schema_changes
from .durations import format_duration
from .slowness import sla_deadline

if TYPE_CHECKING:
    from .asset_alerts import FreshnessMissed, SchemaChanged
    from .run_state import ActiveRun, TaskRecord
    from .slowness import SLA, Slowdown

AlertKind = Literal[
    "failure", "retry", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change"
]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "failure", "retry", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change",
)  # fmt: skip
DEFAULT_ON: tuple[AlertKind, ...] = (
    "failure", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """Something an operator should hear about. ``task_id`` / ``try_number`` are None for alerts
    about a whole run (a run failed before any task did, a DAG SLA, a recovery). Asset alerts name
    the ``asset`` (its URI); their run and DAG are those of the asset's last event ("" if none)."""

    kind: AlertKind
    dag_id: str
    run_id: str
    message: str
    task_id: str | None = None
    try_number: int | None = None
    error_last_line: str | None = None
    url: str | None = None
    at: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    asset: str | None = None

    @property
    def title(self) -> str:
        return _TITLES[self.kind]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["title"] = self.title
        data["at_iso"] = datetime.fromtimestamp(self.at, UTC).isoformat()
        return data


_TITLES: dict[AlertKind, str] = {
    "failure": "Task failed",
    "retry": "Task failed, retrying",
    "slowdown": "Task running slow",
    "sla_miss": "SLA missed",
    "recovery": "DAG recovered",
    "freshness_miss": "Asset not fresh",
    "schema_change": "Asset schema changed",
}


def last_line(text: str | None, limit: int = 500) -> str | None:
    """The last non-blank line of an error message or traceback (what an operator reads first)."""
    if not text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- what each alert says ---------------------------------------------------------------------------


def run_alert(
    kind: AlertKind,
    run: ActiveRun,
    message: str,
    now: float,
    url: str | None,
    *,
    task_id: str | None = None,
    try_number: int | None = None,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> Alert:
    """An alert about ``run`` (or one of its tasks), raised at ``now``, linking to ``url``."""
    return Alert(
        kind=kind,
        dag_id=run.dag.dag_id,
        run_id=run.run_id,
        task_id=task_id,
        try_number=try_number,
        error_last_line=error,
        message=message,
        url=url,
        at=now,
        details=details or {},
    )


def task_failure_alert(
    kind: Literal["failure", "retry"], run: ActiveRun, rec: TaskRecord, now: float, url: str | None
) -> Alert:
    """A try of ``rec`` failed: for good (``"failure"``) or with a retry to come (``"retry"``)."""
    error = last_line(rec.error)
    where = f"{run.dag.dag_id}.{rec.task_id}"
    if kind == "failure":
        message = f"Task {where} failed on try {rec.try_number}: {error}"
    else:
        message = f"Task {where} failed on try {rec.try_number} and will be retried: {error}"
    return run_alert(
        kind, run, message, now, url, task_id=rec.task_id, try_number=rec.try_number, error=error
    )


def run_failure_alert(run: ActiveRun, now: float, url: str | None) -> Alert:
    """``run`` failed without any of its tasks failing (its note says why)."""
    reason = run.note or "failed"
    message = f"Run {run.run_id} of DAG {run.dag.dag_id} failed: {reason}"
    return run_alert("failure", run, message, now, url, error=last_line(run.note))


def recovery_alert(run: ActiveRun, now: float, url: str | None) -> Alert:
    """``run`` succeeded after its DAG's previous run failed."""
    message = f"DAG {run.dag.dag_id} recovered: run {run.run_id} succeeded after a failed run"
    return run_alert("recovery", run, message, now, url)


def slowdown_alert(slow: Slowdown, factor: float, now: float, url: str | None) -> Alert:
    """A running try has run more than ``factor`` times its baseline."""
    elapsed = format_duration(slow.elapsed, compact=True)
    usual = format_duration(slow.baseline, compact=True)
    message = (
        f"Task {slow.dag_id}.{slow.task_id} has been running {elapsed}, "
        f"more than {factor:g}x its usual {usual} "
        f"(median of its last {slow.samples} successful tries)"
    )
    return Alert(
        kind="slowdown",
        dag_id=slow.dag_id,
        run_id=slow.run_id,
        task_id=slow.task_id,
        try_number=slow.try_number,
        message=message,
        url=url,
        at=now,
        details={
            "elapsed": slow.elapsed,
            "baseline": slow.baseline,
            "threshold": slow.threshold,
            "samples": slow.samples,
        },
    )


def sla_miss_alert(
    run: ActiveRun,
    task_id: str | None,
    sla: SLA,
    finished_at: float | None,
    now: float,
    url: str | None,
) -> Alert:
    """The run (``task_id`` None) or one of its tasks missed ``sla``: finished late
    (``finished_at``) or is still not finished at ``now``."""
    deadline = sla_deadline(sla, logical_date=run.logical_date, run_started_at=run.started_at)
    assert deadline is not None
    anchor = "its logical date" if sla.relative_to == "logical_date" else "the run's start"
    what = f"Task {run.dag.dag_id}.{task_id}" if task_id else f"Run of DAG {run.dag.dag_id}"
    late = (
        f"finished {format_duration(finished_at - deadline, compact=True)} late"
        if finished_at is not None
        else "still not finished"
    )
    allowed = format_duration(sla.seconds, compact=True)
    message = (
        f"{what} missed its SLA of {allowed} after {anchor}: {late} "
        f"(deadline {datetime.fromtimestamp(deadline, UTC).isoformat()})"
    )
    rec = run.tasks.get(task_id) if task_id else None
    try_number = rec.try_number if rec is not None and rec.try_number else None
    details = {"deadline": deadline, "sla_seconds": sla.seconds}
    return run_alert(
        "sla_miss", run, message, now, url, task_id=task_id, try_number=try_number, details=details
    )


def freshness_alert(found: FreshnessMissed, now: float, url: str | None) -> Alert:
    """An asset was not written within its ``fresh_within``."""
    last = found.last
    since = (
        f"its last event ({last.dag_id}.{last.task_id}, run {last.run_id})"
        if last is not None
        else "it was declared, with no event yet"
    )
    message = (
        f"Asset {found.uri} is not fresh: no new event within "
        f"{format_duration(found.fresh_within, compact=True)} of {since}; overdue "
        f"{format_duration(found.overdue, compact=True)}"
    )
    return Alert(
        kind="freshness_miss",
        dag_id=(last.dag_id or "") if last is not None else "",
        run_id=(last.run_id or "") if last is not None else "",
        message=message,
        url=url,
        at=now,
        details={
            "fresh_within": found.fresh_within,
            "deadline": found.deadline,
            "overdue": found.overdue,
            "last_event_seq": last.seq if last is not None else None,
        },
        asset=found.uri,
    )


def schema_change_alert(found: SchemaChanged, now: float, url: str | None) -> Alert:
    """An asset event reported a schema that differs from the asset's previous one."""
    ev = found.event
    what = describe_schema_changes(found.changes)
    message = (
        f"Asset {ev.uri} changed its schema in the event of {ev.dag_id}.{ev.task_id} "
        f"(run {ev.run_id}): {what}"
    )
    return Alert(
        kind="schema_change",
        dag_id=ev.dag_id or "",
        run_id=ev.run_id or "",
        task_id=ev.task_id,
        try_number=ev.try_number,
        message=message,
        url=url,
        at=now,
        details={**found.changes, "seq": ev.seq},
        asset=ev.uri,
    )


__all__ = [
    "ALERT_KINDS",
    "DEFAULT_ON",
    "Alert",
    "AlertKind",
    "freshness_alert",
    "last_line",
    "recovery_alert",
    "run_alert",
    "run_failure_alert",
    "schema_change_alert",
    "sla_miss_alert",
    "slowdown_alert",
    "task_failure_alert",
]
