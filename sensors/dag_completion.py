"""``AfterDag``: start a run when a run of another DAG finishes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

from .base import EventFilter, ParamsMapper, Trigger

if TYPE_CHECKING:
    from engine.clock import Clock

_STATES = ("success", "failed", "cancelled")


@dataclass(frozen=True)
class AfterDag:
    """Trigger when a run of ``dag_id`` finishes in one of ``state`` (``"success"`` by default;
    ``"any"`` for every final state). The event (``ctx.event``) names the upstream run:
    ``{"dag_id", "run_id", "state", "params", "logical_date"}``; the new run inherits its logical date.

    There is no sensor: the engine delivers each finished run of ``dag_id`` on the source
    ``dag:{dag_id}`` (``source()`` is None), and :meth:`matches` keeps the runs in ``state``.
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

    @property
    def schedule(self) -> None:
        return None

    @property
    def consumer_key(self) -> None:
        return None

    def source_key(self, dag_id: str, index: int) -> str:
        """``dag:{upstream dag_id}``, shared by every trigger on that DAG's completions."""
        return self.subscription

    def describe(self) -> str:
        return f"after {self.dag_id} ({'/'.join(self.states)})"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """True for a finished upstream run in one of :attr:`states`."""
        return payload.get("state") in self.states

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> None:
        """None: the engine announces finished runs itself."""
        return None
