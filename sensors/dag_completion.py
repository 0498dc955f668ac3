"""``AfterDag``: start a run when a run of another DAG finishes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

from .base import EventFilter, ParamsMapper

_STATES = ("success", "failed", "cancelled")


@dataclass(frozen=True)
class AfterDag:
    """Trigger when a run of ``dag_id`` finishes in one of ``state`` (``"success"`` by default;
    ``"any"`` for every final state). The event (``ctx.event``) names the upstream run:
    ``{"dag_id", "run_id", "state", "params", "logical_date"}``; the new run inherits its logical date.
    """

    dag_id: str
    _: KW_ONLY
    state: str | Sequence[str] = "success"
    filter: EventFilter | None = None
    params: ParamsMapper | None = None

    def __post_init__(self) -> None:
        from engine.errors import TriggerError

        for s in self.states:
            if s not in _STATES:
                raise TriggerError(
                    f"AfterDag({self.dag_id!r}): unknown state {s!r} (one of {', '.join(_STATES)}, any)"
                )

    @property
    def states(self) -> tuple[str, ...]:
        if self.state == "any":
            return _STATES
        if isinstance(self.state, str):
            return (self.state,)
        return tuple(self.state)

    @property
    def subscription(self) -> str:
        return f"dag:{self.dag_id}"

    def describe(self) -> str:
        return f"after {self.dag_id} ({'/'.join(self.states)})"
