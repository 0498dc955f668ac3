"""OpenLineage in: RunEvents of other tools' jobs (dbt, Spark, Airflow, ...) join Podium's lineage.

``POST /api/v1/lineage`` (the path Marquez serves, so any OpenLineage HTTP transport can point at
Podium) hands the parsed JSON to ``Engine.ingest_lineage``, which validates it
(``lineage_events.parse_run_event``) and stores, in one transaction:

- the job's run in ``lineage_runs`` (its state is the latest ``eventType`` by event time);
- every input dataset as an asset (``{namespace}/{name}``) and a ``run_inputs`` row of that run
  (kind ``openlineage``), whatever the event type;
- for a COMPLETE event, every output dataset as an asset event
  (``event_id = openlineage:{runId}:{uri}``; its metadata names the job, its schema and row count
  come from the schema and outputStatistics facets). Outputs of START/RUNNING events are plans, and
  of FAIL/ABORT events not written: they are not events. Each asset event is queued for the DAGs
  whose ``OnAssets`` condition names its asset, exactly like a task's, so an external job's output
  can start a Podium DAG.

Exactly once: the asset event id is derived from the run and the dataset, so an event sent twice
(a client retrying after a timeout) adds nothing; events are accepted one at a time (a lock), each
checking which of its asset events exist before writing, and an ``events`` row a run consumed
(``ran``) is never reset to ``waiting`` (``UPSERT_EVENT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .assets import AssetEvent
from .clock import Clock
from .lineage_events import ExternalDataset, ExternalRunEvent, parse_run_event
from .store import queries as q

if TYPE_CHECKING:
    from .recorder import Recorder
    from .store import Store

KIND = "openlineage"
"""The ``run_inputs.kind`` of a dataset an external job read."""


def output_event(ev: ExternalRunEvent, ds: ExternalDataset) -> AssetEvent:
    """The asset event of one output of a COMPLETE event."""
    metadata: dict[str, Any] = {
        "openlineage": {
            "job": {"namespace": ev.namespace, "name": ev.job},
            "run_id": ev.run_id,
            "producer": ev.producer,
        }
    }
    if ds.rows is not None:
        metadata["rows"] = ds.rows
    return AssetEvent(
        event_id=f"openlineage:{ev.run_id}:{ds.uri}",
        uri=ds.uri,
        ts=ev.event_time,
        run_id=ev.run_id,
        metadata=metadata,
        schema=ds.schema,
    )


class LineageIntake:
    """Stores accepted OpenLineage RunEvents (see the module docstring)."""

    def __init__(self, *, store: Store, recorder: Recorder, clock: Clock) -> None:
        self._store = store
        self._recorder = recorder
        self._clock = clock
        self._lock = anyio.Lock()
        self.accepted = 0

    async def accept(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and store one RunEvent; returns what was stored. ``LineageEventError`` (nothing
        stored) if it is not a valid RunEvent."""
        ev = parse_run_event(data)
        async with self._lock:
            new: list[AssetEvent] = []
            if ev.event_type == "COMPLETE":
                for ds in ev.outputs:
                    out = output_event(ev, ds)
                    if not await self._store.asset_event_exists(out.event_id):
                        new.append(out)
            # no await from here to the flush: everything below is one transaction
            now = self._clock.now()
            recorder = self._recorder
            recorder.execute(
                q.UPSERT_LINEAGE_RUN,
                (
                    ev.run_id, ev.namespace, ev.job, ev.event_type, ev.event_time, ev.producer,
                    ev.parent_run_id, now, now,
                ),
            )  # fmt: skip
            for ds in ev.inputs:
                recorder.execute(q.UPSERT_ASSET, (ds.uri, None, None, now))
                recorder.execute(q.INSERT_RUN_INPUT, (ev.run_id, ds.uri, KIND, "", "", now))
            recorder.external_asset_events(new, now)
            await recorder.flush()
            self.accepted += 1
        return {
            "run_id": ev.run_id,
            "job": {"namespace": ev.namespace, "name": ev.job},
            "eventType": ev.event_type,
            "inputs": [ds.uri for ds in ev.inputs],
            "outputs": [ds.uri for ds in ev.outputs] if ev.event_type == "COMPLETE" else [],
            "asset_events": [e.event_id for e in new],
        }


__all__ = ["KIND", "LineageIntake", "output_event"]
