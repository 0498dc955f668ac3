"""Reading assets and lineage: the catalog's list, an asset's events, what a run read and wrote,
and the lineage graph one hop at a time.

Read-only over the store and the DAGs' declarations (the served DAGs, or, for the CLI, the
descriptions the engine stored). ``Engine.assets``, ``Engine.asset``, ``Engine.asset_events``,
``Engine.run_lineage`` and ``Engine.lineage`` delegate here. Lists are paged by key (a URI, an
event's seq), never by offset, and the graph is read one node's neighbours at a time, so every
read stays small at thousands of assets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sensors.assets import OnAssets

from . import serialization
from .assets import Asset, assets_of, freshness, schema_changes
from .errors import RunNotFoundError
from .lineage_events import run_uuid
from .store.records import AssetEventRow, AssetRow, LineageRunRow, RunInputRow

if TYPE_CHECKING:
    from .dag import DAG
    from .store import Store

HOP_LIMIT = 100
"""Neighbours listed per side of one node; the rest are counted (``more_upstream``, ...)."""

NodeKind = Literal["asset", "task", "dag"]
TaskRef = tuple[str, str]  # (dag_id, task_id)


def declared_assets(dags: Mapping[str, DAG]) -> list[Asset]:
    """Every asset the DAGs name (inlets, outlets, asset triggers), first declaration first; the
    name, metadata and freshness of several declarations of one URI are merged (first wins)."""
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
    if known is None:
        found[a.uri] = a
        return
    found[a.uri] = dataclasses.replace(
        known,
        name=known.name if known.name is not None else a.name,
        metadata=known.metadata or a.metadata,
        fresh_within=known.fresh_within if known.fresh_within is not None else a.fresh_within,
    )


@dataclass
class Usage:
    """Who declares what: per URI its producers and consumers (tasks) and the DAGs it triggers;
    per task its inlets and outlets; per DAG the assets its trigger names."""

    producers: dict[str, list[TaskRef]] = field(default_factory=dict)
    consumers: dict[str, list[TaskRef]] = field(default_factory=dict)
    triggers: dict[str, list[str]] = field(default_factory=dict)
    inlets: dict[TaskRef, list[str]] = field(default_factory=dict)
    outlets: dict[TaskRef, list[str]] = field(default_factory=dict)
    trigger_assets: dict[str, list[str]] = field(default_factory=dict)

    def add_task(
        self, dag_id: str, task_id: str, inlets: Iterable[str], outlets: Iterable[str]
    ) -> None:
        ref = (dag_id, task_id)
        for uri in inlets:
            self.consumers.setdefault(uri, []).append(ref)
            self.inlets.setdefault(ref, []).append(uri)
        for uri in outlets:
            self.producers.setdefault(uri, []).append(ref)
            self.outlets.setdefault(ref, []).append(uri)

    def add_trigger(self, dag_id: str, uris: Iterable[str]) -> None:
        for uri in uris:
            self.triggers.setdefault(uri, []).append(dag_id)
            self.trigger_assets.setdefault(dag_id, []).append(uri)

    def dag_outlets(self, dag_id: str) -> list[str]:
        """The assets a DAG's tasks write, in task order, each once."""
        found = (u for (d, _), uris in self.outlets.items() if d == dag_id for u in uris)
        return list(dict.fromkeys(found))

    def of_asset(self, uri: str) -> dict[str, list[str]]:
        """``producers`` and ``consumers`` (``dag.task``) and ``triggers`` (DAG ids) of one URI."""
        return {
            "producers": [f"{d}.{t}" for d, t in self.producers.get(uri, ())],
            "consumers": [f"{d}.{t}" for d, t in self.consumers.get(uri, ())],
            "triggers": list(self.triggers.get(uri, ())),
        }


def usage_of_dags(dags: Mapping[str, DAG]) -> Usage:
    """The ``Usage`` the DAGs declare."""
    found = Usage()
    for dag_id, d in dags.items():
        for tid, node in d.tasks.items():
            found.add_task(
                dag_id,
                tid,
                (a.uri for a in node.options.inlets),
                (a.uri for a in node.options.outlets),
            )
        for trig in d.triggers:
            if isinstance(trig, OnAssets):
                found.add_trigger(dag_id, trig.uris)
    return found


def usage_of_descriptions(descriptions: Iterable[Mapping[str, Any]]) -> Usage:
    """The ``Usage`` of stored DAG descriptions (``DAG.describe()``; older ones name no assets)."""
    found = Usage()
    for desc in descriptions:
        dag_id = desc["dag_id"]
        for t in desc.get("tasks", []):
            found.add_task(dag_id, t["task_id"], t.get("inlets", []), t.get("outlets", []))
        found.add_trigger(dag_id, desc.get("trigger_assets", []))
    return found


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


def asset_node(uri: str, name: str | None = None) -> dict[str, Any]:
    return {"kind": "asset", "id": f"asset:{uri}", "uri": uri, "label": name or uri}


def task_node(dag_id: str, task_id: str) -> dict[str, Any]:
    return {
        "kind": "task",
        "id": f"task:{dag_id}:{task_id}",
        "dag_id": dag_id,
        "task_id": task_id,
        "label": f"{dag_id}.{task_id}",
    }


def dag_node(dag_id: str) -> dict[str, Any]:
    return {"kind": "dag", "id": f"dag:{dag_id}", "dag_id": dag_id, "label": dag_id}


class Lineage:
    """The read API on assets and lineage.

    ``dags``: the served DAGs, whose declarations say who produces and consumes what; None reads
    the DAG descriptions the engine stored (the CLI, without the DAGs' code). ``now``: the clock
    freshness is measured by."""

    def __init__(
        self,
        *,
        store: Store,
        dags: Mapping[str, DAG] | None,
        now: Callable[[], float],
    ) -> None:
        self._store = store
        self._dags = dags
        self._now = now

    async def usage(self) -> Usage:
        if self._dags is not None:
            return usage_of_dags(self._dags)
        rows = await self._store.dag_rows()
        return usage_of_descriptions(serialization.loads(r.description) for r in rows)

    async def assets(
        self, *, after: str = "", limit: int = 100, matching: str | None = None
    ) -> list[dict[str, Any]]:
        """Known assets by URI (those after ``after``; ``matching``: whose URI or name contains
        it), with their latest event, producers, consumers, the DAGs they trigger, freshness and
        the latest reported schema with its changes since the schema reported before it."""
        rows = await self._store.assets(after=after, limit=limit, matching=matching)
        return await self._describe(rows)

    async def asset(self, uri: str) -> dict[str, Any] | None:
        """One asset as ``assets`` lists it, plus the DAGs whose runs it started as a source
        (``sources``: ``[{"dag_id", "runs"}]``); None if the catalog does not know it."""
        row = await self._store.asset(uri)
        if row is None:
            return None
        (found,) = await self._describe([row])
        uses = await self._store.source_uses(uri, limit=HOP_LIMIT)
        found["started"] = [{"dag_id": u.dag_id, "runs": u.runs} for u in uses]
        return found

    async def _describe(self, rows: Sequence[AssetRow]) -> list[dict[str, Any]]:
        seqs = [r.last_seq for r in rows if r.last_seq is not None]
        last = await self._store.asset_events_by_seq(seqs) if seqs else {}
        schemas = await self._store.asset_schemas(
            [(r.uri, r.last_seq) for r in rows if r.last_seq is not None]
        )
        uses = await self.usage()
        now = self._now()
        out = []
        for r in rows:
            event = last.get(r.last_seq) if r.last_seq is not None else None
            reported = schemas.get(r.uri, [])
            current = serialization.loads(reported[0].schema) if reported else None
            previous = serialization.loads(reported[1].schema) if len(reported) > 1 else None
            out.append(
                {
                    "uri": r.uri,
                    "name": r.name or r.uri,
                    "metadata": serialization.loads(r.metadata) or {},
                    "first_seen": r.first_seen,
                    "last_event": asset_event_json(event) if event is not None else None,
                    "freshness": freshness(
                        r.fresh_within,
                        event.ts if event is not None else None,
                        r.first_seen,
                        now,
                    ),
                    "schema": current,
                    "schema_seq": reported[0].seq if reported else None,
                    "schema_changes": schema_changes(previous, current),
                    **uses.of_asset(r.uri),
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

    async def hop(
        self, *, uri: str | None = None, dag_id: str | None = None, task_id: str | None = None
    ) -> dict[str, Any]:
        """One node of the lineage graph and its neighbours one hop each way.

        An asset (``uri``): upstream, the tasks that declare it as an outlet (and the task that
        wrote its last event, if undeclared); downstream, the tasks that read it (inlets), the
        DAGs it triggers (``OnAssets``) and those whose runs it started as a source. A task
        (``dag_id`` and ``task_id``): its inlets upstream, its outlets downstream. A DAG
        (``dag_id``): the assets its trigger names upstream, what its tasks write downstream.
        At most ``HOP_LIMIT`` per side; ``more_upstream`` / ``more_downstream`` count the rest."""
        uses = await self.usage()
        up: list[dict[str, Any]]
        down: list[dict[str, Any]]
        if uri is not None:
            row = await self._store.asset(uri)
            node = asset_node(uri, row.name if row is not None else None)
            writers = list(uses.producers.get(uri, ()))
            if row is not None and row.last_seq is not None:
                last = (await self._store.asset_events_by_seq([row.last_seq])).get(row.last_seq)
                if last is not None and last.dag_id and last.task_id:
                    if (last.dag_id, last.task_id) not in writers:
                        writers.append((last.dag_id, last.task_id))
            up = [task_node(d, t) for d, t in writers]
            down = [task_node(d, t) for d, t in uses.consumers.get(uri, ())]
            started = await self._store.source_uses(uri, limit=HOP_LIMIT)
            dags = dict.fromkeys([*uses.triggers.get(uri, ()), *(u.dag_id for u in started)])
            down += [dag_node(d) for d in dags]
            node["known"] = row is not None
        elif dag_id is not None and task_id is not None:
            node = task_node(dag_id, task_id)
            up = [asset_node(u) for u in uses.inlets.get((dag_id, task_id), ())]
            down = [asset_node(u) for u in uses.outlets.get((dag_id, task_id), ())]
        elif dag_id is not None:
            node = dag_node(dag_id)
            up = [asset_node(u) for u in uses.trigger_assets.get(dag_id, ())]
            down = [asset_node(u) for u in uses.dag_outlets(dag_id)]
        else:
            raise ValueError("a lineage hop needs a uri, a dag_id, or a dag_id and a task_id")
        more_up, more_down = max(len(up) - HOP_LIMIT, 0), max(len(down) - HOP_LIMIT, 0)
        up, down = up[:HOP_LIMIT], down[:HOP_LIMIT]
        shown = [n for n in (*up, *down) if n["kind"] == "asset"]
        names = await self._store.asset_names([n["uri"] for n in shown]) if shown else {}
        for n in shown:
            n["label"] = names.get(n["uri"], n["label"])
        return {
            "node": node,
            "upstream": up,
            "downstream": down,
            "more_upstream": more_up,
            "more_downstream": more_down,
        }
