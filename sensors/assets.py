"""``OnAssets``: start a run when assets have new events (``OnAssets(a & (b | c))``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from .base import EventFilter, ParamsMapper, Trigger

if TYPE_CHECKING:
    from engine.assets import Condition
    from engine.clock import Clock

ASSETS_SOURCE = "assets"
"""The one subscription every ``OnAssets`` trigger shares: the engine delivers asset events itself."""


@dataclass(frozen=True)
class OnAssets:
    """Trigger when ``condition`` holds over the assets with events this DAG has not consumed yet.

    ``condition`` is an ``Asset``, a URI, or ``&`` / ``|`` combinations of them (a list means all).
    Each asset event a task records (an outlet, or ``ctx.asset_event``) for an asset of the
    condition is queued for this DAG (outcome ``waiting`` in the events table). When the condition
    becomes true, one run starts and consumes every queued event (outcome ``ran``, with the run);
    ``ctx.event["events"]`` lists them. ``filter`` is asked about each asset event (its payload:
    ``uri``, ``metadata``, ``run_id``, ``dag_id``, ``task_id``, ...): False records it ``filtered``
    and it never counts. ``params`` maps the run's event (``{"condition", "events", "assets"}``) to
    the run's params.
    """

    condition: Any
    _: KW_ONLY
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    _condition: Condition = field(init=False, repr=False, compare=False)
    _uris: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from engine.assets import as_condition, uris_of

        tree = as_condition(self.condition)
        object.__setattr__(self, "_condition", tree)
        object.__setattr__(self, "_uris", uris_of(tree))

    @property
    def tree(self) -> Condition:
        """The condition as a tree of ``Asset``, ``AllOf`` and ``AnyOf``."""
        return self._condition

    @property
    def uris(self) -> tuple[str, ...]:
        """The URIs of the assets the condition names."""
        return self._uris

    @property
    def schedule(self) -> None:
        return None

    @property
    def consumer_key(self) -> None:
        return None

    def source_key(self, dag_id: str, index: int) -> str:
        """``assets``: every asset trigger hears the engine's own asset events."""
        return ASSETS_SOURCE

    def describe(self) -> str:
        from engine.assets import describe

        return f"on assets {describe(self._condition)}"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """True for an event of an asset the condition names."""
        return payload.get("uri") in self._uris

    def source(
        self, *, dag_id: str, index: int, clock: Clock, sharing: Sequence[Trigger] = ()
    ) -> None:
        """None: the engine delivers asset events itself."""
        return None

    def __repr__(self) -> str:
        return f"OnAssets({self.describe().removeprefix('on assets ')})"
