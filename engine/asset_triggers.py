"""``AssetTriggers``: runs triggered by data (``@dag(triggers=[OnAssets(a & (b | c))])``).

How an asset event becomes a run, exactly once, across a kill -9:

1. A task succeeds. In the transaction that records its success, the recorder writes its asset
   events and, for each DAG whose ``OnAssets`` condition names the asset, an ``events`` row with
   outcome ``waiting`` (or ``filtered`` / ``dead`` by the trigger's filter): the DAG's queue.
   (``route``, called by the recorder, decides which.)
2. Once that is committed, the one evaluation loop here (``serve``) reads the DAG's waiting events
   and evaluates its condition against the set of their assets (``engine.assets.evaluate``, pure).
3. If the condition holds, one run is created and every waiting event of the DAG is marked ``ran``
   with that run (and listed in ``run_inputs``), in the same transaction as the run row. Its
   ``ctx.event`` lists the events it consumed.

A kill between 1 and 3 loses nothing: the events stay ``waiting`` and every DAG is evaluated again
when the engine starts. A kill during 3 leaves either both the run and the marks or neither. The
run key is derived from the consumed event ids, and evaluations are serialized in one loop, so no
event is used twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from sensors.assets import OnAssets

from . import serialization
from .assets import AssetEvent, describe, evaluate, explain, missing
from .backoff import Backoff
from .clock import Clock
from .errors import DAGNotFoundError, ParamError, describe_exception
from .recorder import WAITING, Recorder
from .store import queries as q

if TYPE_CHECKING:
    from .dag import DAG
    from .ingest import RunIntake
    from .run_state import ActiveRun
    from .store import Store
    from .store.records import AssetEventRow

log = logging.getLogger("podium.assets")

SOURCE = "asset"
"""The ``events.source`` of asset events queued for a DAG."""


class AssetTriggers:
    """The asset router (``route``, for the recorder) and the loop that starts asset-triggered runs."""

    def __init__(
        self,
        *,
        dags: Mapping[str, DAG],
        intake: RunIntake,
        store: Store,
        recorder: Recorder,
        clock: Clock,
    ) -> None:
        self._intake = intake
        self._store = store
        self._recorder = recorder
        self._clock = clock
        self._dags = dags
        self._triggers = {
            dag_id: trig
            for dag_id, d in dags.items()
            for trig in d.triggers
            if isinstance(trig, OnAssets)
        }
        self._dirty: set[str] = set()
        self._wakeup = anyio.Event()
        self.runs_started = 0

    def triggers(self) -> dict[str, OnAssets]:
        """The ``OnAssets`` trigger of each DAG that has one."""
        return dict(self._triggers)

    # -- AssetRouting (called by the recorder, in the success's transaction) ------------------------

    def route(self, event: AssetEvent) -> list[tuple[str, str, str | None]]:
        """(dag_id, outcome, error) for each DAG whose condition names ``event``'s asset."""
        payload = event.payload()
        out: list[tuple[str, str, str | None]] = []
        for dag_id, trig in self._triggers.items():
            if not trig.matches(payload):
                continue
            if trig.filter is not None:
                try:
                    keep = trig.filter(payload)
                except Exception as exc:
                    out.append((dag_id, "dead", f"filter raised {describe_exception(exc)}"))
                    continue
                if not keep:
                    out.append((dag_id, "filtered", None))
                    continue
            out.append((dag_id, WAITING, None))
        return out

    def queued(self, dag_ids: set[str]) -> None:
        self._dirty |= dag_ids
        self._wakeup.set()

    def wake_all(self) -> None:
        """Evaluate every asset-triggered DAG (at start: events queued before a kill)."""
        self.queued(set(self._triggers))

    # -- the evaluation loop ------------------------------------------------------------------------

    async def serve(self) -> NoReturn:
        delays = Backoff(0.25, cap=10.0).delays()
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            dirty, self._dirty = self._dirty, set()
            failed = False
            for dag_id in sorted(dirty):
                try:
                    await self._recorder.flush()  # the events that woke us are committed
                    await self.evaluate(dag_id)
                except Exception:
                    log.exception("could not evaluate the asset trigger of %s; will retry", dag_id)
                    self._dirty.add(dag_id)
                    failed = True
            if failed:
                await anyio.sleep(next(delays))
                self._wakeup.set()
            else:
                delays.reset()

    async def evaluate(self, dag_id: str) -> ActiveRun | None:
        """Start a run of ``dag_id`` if its condition holds over its waiting asset events,
        consuming them all; returns the run created, if any."""
        trig = self._triggers.get(dag_id)
        if trig is None:
            return None
        rows = await self._store.waiting_asset_events(dag_id)
        if not rows or not evaluate(trig.tree, {r.uri for r in rows}):
            return None
        events = [event_from_row(r) for r in rows]
        key = run_key(events)
        payload = {
            "condition": describe(trig.tree),
            "assets": sorted({e.uri for e in events}),
            "events": [e.payload() for e in events],
        }
        error: str | None = None
        params: dict[str, Any] = {}
        try:
            params = self._params(dag_id, trig, payload)
        except ParamError as exc:
            error = str(exc)
        existing = await self._store.existing_keys([key])
        run_id = existing.get((dag_id, key))
        reserved = self._intake.by_key(dag_id, key)
        if run_id is None and reserved is not None:
            run_id = reserved.run_id
        created: ActiveRun | None = None
        if error is None and run_id is None:
            try:
                created = self._intake.create(
                    dag_id,
                    params,
                    key=key,
                    logical_date=None,
                    event={"source": "assets", "event_id": key, **payload},
                    trigger="assets",
                )
            except (TypeError, ValueError, OverflowError, ParamError) as exc:
                error = f"cannot store the run's event: {exc}"
            else:
                run_id = created.run_id
        now = self._clock.now()
        writer = self._store.writer
        for ev in events:
            if error is not None:
                writer.record_event(ev.event_id, dag_id, SOURCE, now, "dead", None, error, None)
                continue
            writer.record_event(ev.event_id, dag_id, SOURCE, now, "ran", run_id, None, None)
            writer.execute(q.INSERT_RUN_INPUT, (run_id, ev.uri, "asset", "", ev.event_id, now))
        try:
            await self._recorder.flush()
        except BaseException:
            if created is not None:
                self._intake.forget([created])
            raise
        if error is not None:
            log.warning("asset events for %s are dead: %s", dag_id, error)
            return None
        if created is not None:
            self.runs_started += 1
            self._intake.activate(created)
            log.info(
                "run %s of %s started by %d asset event(s) (%s)",
                created.run_id, dag_id, len(events), payload["condition"],
            )  # fmt: skip
        return created

    def _params(self, dag_id: str, trig: OnAssets, payload: dict[str, Any]) -> dict[str, Any]:
        d = self._dags.get(dag_id)
        if d is None:
            raise DAGNotFoundError(dag_id)
        given: Mapping[str, Any] = {}
        if trig.params is not None:
            try:
                given = trig.params(payload)
            except Exception as exc:
                raise ParamError(f"params mapper raised {describe_exception(exc)}") from None
            if not isinstance(given, Mapping):
                raise ParamError(
                    f"params mapper returned {type(given).__name__}, expected a mapping"
                )
        try:
            return d.validate_params(given, strict=False)
        except ParamError:
            raise
        except Exception as exc:
            raise ParamError(f"invalid params: {describe_exception(exc)}") from None

    # -- "why has it not run?" ----------------------------------------------------------------------

    async def condition(self, dag_id: str) -> dict[str, Any]:
        """Where ``dag_id``'s asset condition stands: which parts are met by the events waiting
        for it, which assets are missing, and the waiting events per asset."""
        trig = self._triggers.get(dag_id)
        if trig is None:
            if dag_id not in self._dags:
                raise DAGNotFoundError(f"no DAG {dag_id!r}")
            return {"dag_id": dag_id, "condition": None, "met": False, "tree": None}
        rows = await self._store.waiting_asset_events(dag_id)
        present = {r.uri for r in rows}
        waiting: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = waiting.setdefault(r.uri, {"events": 0, "first_ts": r.ts})
            entry["events"] += 1
            entry["last_ts"] = r.ts
        return {
            "dag_id": dag_id,
            "condition": describe(trig.tree),
            "met": evaluate(trig.tree, present),
            "tree": explain(trig.tree, present),
            "missing": missing(trig.tree, present),
            "waiting": waiting,
        }


def event_from_row(row: AssetEventRow) -> AssetEvent:
    return AssetEvent(
        event_id=row.event_id,
        uri=row.uri,
        ts=row.ts,
        run_id=row.run_id,
        dag_id=row.dag_id,
        task_id=row.task_id,
        try_number=row.try_number,
        metadata=serialization.loads(row.metadata),
        schema=serialization.loads(row.schema),
        seq=row.seq,
    )


def run_key(events: list[AssetEvent]) -> str:
    """The key of the run that consumes ``events``: the same events always give the same key."""
    digest = hashlib.sha256("\n".join(sorted(e.event_id for e in events)).encode()).hexdigest()
    last = max((e.seq or 0) for e in events)
    return f"assets:{last}:{digest[:16]}"
