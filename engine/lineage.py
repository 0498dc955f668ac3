"""Reading assets and lineage: the catalog's list, an asset's events, what a run read and wrote.

Read-only over the store and the served DAGs' declarations; ``Engine.assets``,
``Engine.asset_events`` and ``Engine.run_lineage`` delegate here. Lists are paged by key (a URI,
an event's seq), never by offset, so they stay fast at thousands of assets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sensors.assets import OnAssets

from . import serialization
from .assets import Asset, assets_of
from .errors import RunNotFoundError
from .lineage_events import run_uuid
from .store.records import AssetEventRow, LineageRunRow, RunInputRow

if TYPE_CHECKING:
    from .dag import DAG
    from .store import Store


def declared_assets(dags: Mapping[str, DAG]) -> list[Asset]:
    """Every asset the DAGs name (inlets, outlets, asset triggers), first declaration first."""
    found: dict[str, Asset] = {}
    for d in dags.values():
        for node in d.tasks.values():
            for a in (*node.options.inlets, *node.options.outlets):
                _keep(found, a)
        for trig in d.triggers:
            if isinstance(trig, OnAssets):
                for a in assets_of(trig.tree):
                    _keep(found, a)
    return list(found.values())


def _keep(found: dict[str, Asset], a: Asset) -> None:
    known = found.get(a.uri)
    if known is None or (known.name is None and not known.metadata):
        found[a.uri] = a  # a declaration with a name or metadata wins over a bare URI


def usage(dags: Mapping[str, DAG]) -> dict[str, dict[str, list[str]]]:
    """Per URI: ``producers`` and ``consumers`` (``dag.task``), ``triggers`` (DAG ids)."""
    out: dict[str, dict[str, list[str]]] = {}

    def entry(uri: str) -> dict[str, list[str]]:
        return out.setdefault(uri, {"producers": [], "consumers": [], "triggers": []})

    for dag_id, d in dags.items():
        for tid, node in d.tasks.items():
            for a in node.options.outlets:
                entry(a.uri)["producers"].append(f"{dag_id}.{tid}")
            for a in node.options.inlets:
                entry(a.uri)["consumers"].append(f"{dag_id}.{tid}")
        for trig in d.triggers:
            if isinstance(trig, OnAssets):
                for uri in trig.uris:
                    entry(uri)["triggers"].append(dag_id)
    return out


def asset_event_json(row: AssetEventRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "event_id": row.event_id,
        "uri": row.uri,
        "ts": row.ts,
        "run_id": row.run_id,
        "dag_id": row.dag_id,
        "task_id": row.task_id,
        "try_number": row.try_number,
        "metadata": serialization.loads(row.metadata),
        "schema": serialization.loads(row.schema),
    }


def run_input_json(row: RunInputRow) -> dict[str, Any]:
    return {
        "uri": row.uri,
        "kind": row.kind,
        "task_id": row.task_id or None,
        "event_id": row.event_id or None,
        "ts": row.ts,
    }


class Lineage:
    """The read API on assets and lineage."""

    def __init__(self, *, store: Store, dags: Mapping[str, DAG]) -> None:
        self._store = store
        self._dags = dags

    async def assets(self, *, after: str = "", limit: int = 100) -> list[dict[str, Any]]:
        """Known assets by URI (those after ``after``), with their latest event, producers,
        consumers and the DAGs they trigger."""
        rows = await self._store.assets(after=after, limit=limit)
        seqs = [r.last_seq for r in rows if r.last_seq is not None]
        last = await self._store.asset_events_by_seq(seqs) if seqs else {}
        uses = usage(self._dags)
        empty: dict[str, list[str]] = {"producers": [], "consumers": [], "triggers": []}
        out = []
        for r in rows:
            event = last.get(r.last_seq) if r.last_seq is not None else None
            out.append(
                {
                    "uri": r.uri,
                    "name": r.name or r.uri,
                    "metadata": serialization.loads(r.metadata) or {},
                    "first_seen": r.first_seen,
                    "last_event": asset_event_json(event) if event is not None else None,
                    **uses.get(r.uri, empty),
                }
            )
        return out

    async def asset_events(
        self, uri: str, *, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Events of one asset, newest first; page with ``before=`` the last one's ``seq``."""
        rows = await self._store.asset_events(uri, before=before, limit=limit)
        return [asset_event_json(r) for r in rows]

    async def run_lineage(self, run_id: str) -> dict[str, Any]:
        """What a run read (``inputs``: its source event, the asset events it consumed, its tasks'
        inlets) and wrote (``outputs``: its tasks' asset events), with its OpenLineage run id.
        Also the run of another tool's job known from OpenLineage events (by its OpenLineage run
        id: ``dag_id`` None, and ``external`` with its job)."""
        try:
            run = await self._store.get_run(run_id)
        except RunNotFoundError:
            external = await self._store.lineage_run(run_id)
            if external is None:
                raise
            return await self._external_run_lineage(external)
        inputs = await self._store.run_inputs(run_id)
        outputs = await self._store.run_outputs(run_id)
        return {
            "run_id": run_id,
            "dag_id": run.dag_id,
            "openlineage_run_id": run_uuid(run_id),
            "inputs": [run_input_json(r) for r in inputs],
            "outputs": [asset_event_json(r) for r in outputs],
        }

    async def _external_run_lineage(self, row: LineageRunRow) -> dict[str, Any]:
        """The lineage of another tool's run, known from its OpenLineage events (``lineage_in``)."""
        inputs = await self._store.run_inputs(row.run_id)
        outputs = await self._store.run_outputs(row.run_id)
        return {
            "run_id": row.run_id,
            "dag_id": None,
            "external": {
                "namespace": row.namespace,
                "job": row.job,
                "state": row.state,
                "event_time": row.event_time,
                "producer": row.producer,
                "parent_run_id": row.parent_run_id,
            },
            "inputs": [run_input_json(r) for r in inputs],
            "outputs": [asset_event_json(r) for r in outputs],
        }
