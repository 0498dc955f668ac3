"""``podium render``: what every task's templates become for given params, event and logical date,
without running anything.

Each task gets the ``Context`` its first try would get (``run_id`` is a placeholder, there is no run),
and each ``Template`` in its arguments is rendered by ``engine.templating`` exactly as when a try
starts. A template that fails is reported with the message the try would fail with, and the other
fields are still rendered.

Params: the DAG's defaults, under the params the event suggests (``event_params``), under the ones
given. Without a logical date, ``ds`` is undefined as in a manual run; a timer event's ``slot`` is
its logical date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .context import Context
from .dag import DAG
from .errors import PodiumError, describe_exception
from .templating import RenderedField, render_fields

PREVIEW_RUN_ID = "<run_id>"
S3_PARAMS = ("bucket", "key", "size", "etag")


@dataclass(frozen=True)
class TaskRendering:
    task_id: str
    fields: list[RenderedField]


@dataclass(frozen=True)
class DagRendering:
    """The rendered templates of every task of a DAG, in the DAG's order."""

    dag_id: str
    params: dict[str, Any]
    logical_date: datetime | None
    event: Mapping[str, Any] | None
    tasks: list[TaskRendering] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f.error for t in self.tasks for f in t.fields if f.error is not None]

    def as_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "params": self.params,
            "logical_date": self.logical_date.isoformat() if self.logical_date else None,
            "event": self.event,
            "tasks": {
                t.task_id: {
                    f.field: {"error": f.error} if f.error is not None else {"value": f.value}
                    for f in t.fields
                }
                for t in self.tasks
            },
        }


def parse_logical_date(text: str) -> datetime:
    """``2026-11-25`` (midnight UTC) or an ISO datetime (UTC when it has no offset) as aware UTC."""
    try:
        moment = datetime.fromisoformat(text) if "T" in text else None
        if moment is None:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        raise PodiumError(
            f"--logical-date: {text!r} is not an ISO date or datetime (e.g. 2026-11-25)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def event_params(dag: DAG, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The params an event would start a run of ``dag`` with: its event trigger's ``params=``
    mapper if it has one; else a Kafka message's JSON object value (``payload["value"]``) or an S3
    object's ``bucket``, ``key``, ``size`` and ``etag``; else none."""
    for trigger in dag.triggers:
        mapper = trigger.params if trigger.schedule is None else None
        if mapper is not None:
            try:
                mapped = mapper(payload)
            except Exception as exc:
                raise PodiumError(f"the params mapper raised {describe_exception(exc)}") from None
            if not isinstance(mapped, Mapping):
                raise PodiumError(f"the params mapper returned {type(mapped).__name__}")
            return dict(mapped)
    value = payload.get("value")
    if isinstance(value, Mapping):
        return dict(value)
    if "bucket" in payload and "key" in payload:
        return {k: payload[k] for k in S3_PARAMS if k in payload}
    return {}


async def _no_checkpoint(value: Any) -> None:
    raise PodiumError("podium render runs nothing: there is no checkpoint to save")


def render_dag(
    dag: DAG,
    params: Mapping[str, Any] | None = None,
    *,
    event: Mapping[str, Any] | None = None,
    logical_date: datetime | None = None,
) -> DagRendering:
    """Render every task's templates; raises ``ParamError`` for params the DAG refuses."""
    given = {**(event_params(dag, event) if event is not None else {}), **(params or {})}
    run_params = dag.validate_params(given, strict=event is None)
    if logical_date is None and event is not None and isinstance(event.get("slot"), str):
        logical_date = parse_logical_date(event["slot"])  # a timer event: its slot
    rendering = DagRendering(dag.dag_id, run_params, logical_date, event)
    for task_id, node in dag.tasks.items():
        ctx = Context(
            dag_id=dag.dag_id,
            run_id=PREVIEW_RUN_ID,
            task_id=task_id,
            params=run_params,
            try_number=1,
            logical_date=logical_date,
            event=event,
            last_checkpoint=None,
            save_checkpoint=_no_checkpoint,
        )
        rendering.tasks.append(TaskRendering(task_id, render_fields(node, ctx)))
    return rendering
