"""What the alerting watch checks about assets: freshness misses and schema changes.

``AssetWatch.check(now)`` follows the committed asset events by seq (so it sees each event once,
in order, and only once it is committed) and the assets declared with ``fresh_within``:

- a **schema change**: an event whose reported ``schema`` differs from the asset's previous
  reported schema (events without a schema do not count); the finding names the added, removed
  and changed columns;
- a **freshness miss**: an asset with ``fresh_within`` whose last event (or, before any, its first
  declaration) is older than that; one finding per miss, i.e. per deadline: a new event starts a
  new deadline.

Events committed before the watch started are history: they set the baselines and raise nothing.

This module only finds: ``engine.alerting`` (its watch) turns each finding into an alert, worded by
``engine.alerts``, and sends it if that kind is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import serialization
from .assets import freshness, schema_changes
from .lineage import declared_assets
from .store.records import AssetEventRow

if TYPE_CHECKING:
    from .observe import EngineView
    from .store import Store

BATCH = 500


@dataclass(frozen=True, slots=True)
class SchemaChanged:
    """An asset event whose schema differs from the asset's previous one."""

    event: AssetEventRow
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FreshnessMissed:
    """An asset not written within its ``fresh_within``; ``last`` is its last event, if any."""

    uri: str
    fresh_within: float
    deadline: float
    overdue: float
    last: AssetEventRow | None


Finding = SchemaChanged | FreshnessMissed


@dataclass(slots=True)
class _Fresh:
    fresh_within: float
    since: float  # the asset's first declaration
    last: AssetEventRow | None
    alerted_deadline: float | None = None


class AssetWatch:
    """Follows asset events and declared freshness for ``engine.alerting.Alerting`` (see the module
    doc)."""

    def __init__(self, engine: EngineView) -> None:
        self._engine = engine
        self._seq: int | None = None
        self._schemas: dict[str, Any] = {}  # uri -> its latest reported schema, once looked up
        self._fresh: dict[str, _Fresh] = {}

    @property
    def _store(self) -> Store:
        return self._engine.store

    async def check(self, now: float) -> list[Finding]:
        """The findings due as of ``now`` (each raised once)."""
        found: list[Finding] = []
        if self._seq is None:
            self._seq = await self._store.max_asset_seq()  # history raises nothing
        await self._follow_declarations(now)
        while True:
            events = await self._store.asset_events_after(self._seq, limit=BATCH)
            for event in events:
                self._seq = event.seq
                fresh = self._fresh.get(event.uri)
                if fresh is not None:
                    fresh.last = event
                changed = await self._schema_change(event)
                if changed is not None:
                    found.append(changed)
            if len(events) < BATCH:
                break
        for uri, fresh in self._fresh.items():
            state = freshness(
                fresh.fresh_within, fresh.last.ts if fresh.last else None, fresh.since, now
            )
            assert state is not None
            if state["fresh"] or fresh.alerted_deadline == state["deadline"]:
                continue
            fresh.alerted_deadline = state["deadline"]
            found.append(
                FreshnessMissed(
                    uri=uri,
                    fresh_within=fresh.fresh_within,
                    deadline=state["deadline"],
                    overdue=state["overdue"],
                    last=fresh.last,
                )
            )
        return found

    async def _follow_declarations(self, now: float) -> None:
        """Start following the assets the served DAGs declare with ``fresh_within``."""
        for asset in declared_assets(self._engine.dags):
            if asset.fresh_within is None:
                self._fresh.pop(asset.uri, None)
                continue
            known = self._fresh.get(asset.uri)
            if known is not None:
                known.fresh_within = asset.fresh_within
                continue
            row = await self._store.asset(asset.uri)
            last = None
            if row is not None and row.last_seq is not None:
                last = (await self._store.asset_events_by_seq([row.last_seq])).get(row.last_seq)
            since = row.first_seen if row is not None else now
            self._fresh[asset.uri] = _Fresh(asset.fresh_within, since, last)

    async def _schema_change(self, event: AssetEventRow) -> SchemaChanged | None:
        if event.schema is None:
            return None
        current = serialization.loads(event.schema)
        if event.uri in self._schemas:
            previous = self._schemas[event.uri]
        else:
            rows = (await self._store.asset_schemas([(event.uri, event.seq - 1)], 1))[event.uri]
            previous = serialization.loads(rows[0].schema) if rows else None
        self._schemas[event.uri] = current
        changes = schema_changes(previous, current)
        return None if changes is None else SchemaChanged(event, changes)


__all__ = ["AssetWatch", "Finding", "FreshnessMissed", "SchemaChanged"]
