"""Trigger matching: which DAGs an event starts, with which params, and why not.

Pure logic: an event and the subscriptions of its source in, one decision per subscription out.
Each trigger is asked through the ``sensors.base.Trigger`` protocol: ``matches`` (its own narrowing,
e.g. an S3 key prefix), then its ``filter`` predicate, then its ``params`` mapper. User code (a
trigger's ``filter=`` or ``params=``, or a trigger class of one's own) runs here; whatever it raises
makes the event ``dead`` for that DAG with the error, it never escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sensors.base import Event, Trigger

from .dag import DAG
from .errors import ParamError, describe_exception


class Outcome(StrEnum):
    """What became of one event for one DAG (recorded in the ``events`` table)."""

    RAN = "ran"
    DEDUPLICATED = "deduplicated"
    FILTERED = "filtered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One trigger of one DAG, listening to a source."""

    dag: DAG
    trigger: Trigger


@dataclass(frozen=True, slots=True)
class Decision:
    dag_id: str
    outcome: Outcome
    params: dict[str, Any] | None = None
    error: str | None = None


def route(event: Event, subscriptions: Sequence[Subscription]) -> list[Decision]:
    """Decide, for each subscribed DAG, whether ``event`` starts a run and with which params."""
    return [_decide(event, sub) for sub in subscriptions]


def _decide(event: Event, sub: Subscription) -> Decision:
    dag_id = sub.dag.dag_id
    if event.error is not None:
        return Decision(dag_id, Outcome.DEAD, error=event.error)
    payload = event.payload if isinstance(event.payload, Mapping) else {"value": event.payload}
    trigger = sub.trigger
    try:
        wanted = trigger.matches(payload)  # e.g. one S3 prefix among those sharing a queue
    except Exception as exc:
        return Decision(
            dag_id, Outcome.DEAD, error=f"trigger matches() raised {describe_exception(exc)}"
        )
    if not wanted:
        return Decision(dag_id, Outcome.FILTERED)
    predicate = trigger.filter
    if predicate is not None:
        try:
            keep = predicate(payload)
        except Exception as exc:
            return Decision(dag_id, Outcome.DEAD, error=f"filter raised {describe_exception(exc)}")
        if not keep:
            return Decision(dag_id, Outcome.FILTERED)
    params: Mapping[str, Any] = event.params or {}
    mapper = trigger.params
    if mapper is not None:
        try:
            params = mapper(payload)
        except Exception as exc:
            return Decision(
                dag_id, Outcome.DEAD, error=f"params mapper raised {describe_exception(exc)}"
            )
        if not isinstance(params, Mapping):
            return Decision(
                dag_id,
                Outcome.DEAD,
                error=f"params mapper returned {type(params).__name__}, expected a mapping",
            )
    try:
        run_params = sub.dag.validate_params(params, strict=False)
    except ParamError as exc:
        return Decision(dag_id, Outcome.DEAD, error=str(exc))
    except Exception as exc:  # whatever a mapper returned, one event must never block a source
        return Decision(dag_id, Outcome.DEAD, error=f"invalid params: {describe_exception(exc)}")
    return Decision(dag_id, Outcome.RAN, params=run_params)


def summarize(decisions: Sequence[Decision]) -> Outcome:
    """One outcome per event for its sensor: dead wins (so it reaches a dead-letter topic), then
    ran, then deduplicated, else filtered."""
    outcomes = {d.outcome for d in decisions}
    for outcome in (Outcome.DEAD, Outcome.RAN, Outcome.DEDUPLICATED):
        if outcome in outcomes:
            return outcome
    return Outcome.FILTERED
