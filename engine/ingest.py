"""The event bus and the router loop: events from sensors become runs, exactly once per event.

Sensors publish ``EventBatch`` objects onto a bounded memory stream (the bus). One router loop takes
them in order, decides per subscribed DAG (``router.route``), drops events whose run already exists
(the run key is the event id), records every event's outcome, creates the runs, and commits all of
it in one transaction. Only then is the batch marked stored, and the sensor acknowledges its source.

Backpressure: with more unfinished runs than ``high_water`` the sink stops ``accepting`` until they
drop to ``low_water``; sensors pause their sources meanwhile, and a full bus blocks ``publish``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sensors.base import Event, EventBatch, SourceAsset

from . import serialization
from .clock import Clock
from .errors import ParamError
from .router import Decision, Outcome, Subscription, route, summarize
from .store import queries as q

if TYPE_CHECKING:
    from .run_state import ActiveRun
    from .store import Store, StoreWriter

log = logging.getLogger("podium.ingest")


class RunIntake(Protocol):
    """What the ingest needs of the runs (the ``RunBook``): create, reserve and serve runs."""

    def __len__(self) -> int:
        """Unfinished runs served (what backpressure measures)."""
        ...

    def by_key(self, dag_id: str, key: str) -> ActiveRun | None: ...

    def create(
        self,
        dag_id: str,
        params: dict[str, Any],
        *,
        key: str | None,
        logical_date: float | None,
        event: Any,
        trigger: str,
    ) -> ActiveRun: ...

    def forget(self, runs: Sequence[ActiveRun]) -> None: ...

    def activate(self, run: ActiveRun) -> None: ...


class EventIngest:
    """The engine's ``EventSink``: the bus, the router loop, and the backpressure gate."""

    def __init__(
        self,
        *,
        intake: RunIntake,
        store: Store,
        clock: Clock,
        bus_size: int,
        high_water: int,
        low_water: int,
    ) -> None:
        if not 0 <= low_water < high_water:
            raise ValueError("need 0 <= low_water < high_water")
        self._intake = intake
        self._store = store
        self._clock = clock
        self.high_water = high_water
        self.low_water = low_water
        self.bus_size = bus_size
        self._send: MemoryObjectSendStream[EventBatch] | None = None
        self._receive: MemoryObjectReceiveStream[EventBatch] | None = None
        self.subscriptions: dict[str, list[Subscription]] = {}
        self._saturated = False
        self._resumed = anyio.Event()
        self.counts: dict[str, int] = {o.value: 0 for o in Outcome}

    def open(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[EventBatch](self.bus_size)

    def close(self) -> None:
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()

    def subscribe(self, subscription: str, sub: Subscription) -> None:
        self.subscriptions.setdefault(subscription, []).append(sub)

    # -- EventSink ------------------------------------------------------------------------------------

    async def publish(self, batch: EventBatch) -> None:
        assert self._send is not None, "the engine is not running"
        await self._send.send(batch)

    @property
    def accepting(self) -> bool:
        if self._saturated:
            self.work_finished()  # the store may have recovered with nothing left to finish
        if not self._saturated and (
            len(self._intake) >= self.high_water or not self._store_healthy
        ):
            self._saturated = True
            log.info(
                "backpressure on: %d unfinished runs (high-water mark %d)%s",
                len(self._intake),
                self.high_water,
                "" if self._store_healthy else ", state store failing",
            )
        return not self._saturated

    async def wait_accepting(self) -> None:
        while not self.accepting:
            with anyio.move_on_after(
                0.5
            ):  # re-check: a store fault can clear with no run finishing
                await self._resumed.wait()

    async def load_cursor(self, cursor_id: str) -> Any:
        return await self._store.load_cursor(cursor_id)

    @property
    def _store_healthy(self) -> bool:
        return self._store.writer.healthy

    def work_finished(self) -> None:
        """Called by the engine when a run finishes: lift backpressure below the low-water mark."""
        if self._saturated and len(self._intake) <= self.low_water and self._store_healthy:
            self._saturated = False
            log.info("backpressure off: %d unfinished runs", len(self._intake))
            self._resumed.set()
            self._resumed = anyio.Event()

    @property
    def bus_depth(self) -> int:
        return 0 if self._send is None else self._send.statistics().current_buffer_used

    # -- the router loop ------------------------------------------------------------------------------

    async def serve(self) -> None:
        assert self._receive is not None
        async with self._receive:
            async for batch in self._receive:
                try:
                    await self.ingest(batch)
                except Exception as exc:
                    log.exception(
                        "could not store %d event(s) of %s", len(batch.events), batch.subscription
                    )
                    batch.mark_stored(exc)

    async def ingest(
        self, batch: EventBatch, subscriptions: Sequence[Subscription] | None = None
    ) -> None:
        """Route, record and commit one batch; ``subscriptions`` narrows the DAGs it may start
        (default: every subscriber of the batch's source)."""
        intake = self._intake
        writer = self._store.writer
        subs = (
            self.subscriptions.get(batch.subscription, [])
            if subscriptions is None
            else subscriptions
        )
        now = self._clock.now()
        decided = [route(event, subs) for event in batch.events]
        keys = [e.event_id for e, ds in zip(batch.events, decided, strict=True) if _any_ran(ds)]
        existing = await self._store.existing_keys(keys) if keys else {}
        created: list[ActiveRun] = []
        outcomes: list[str] = []
        for event, decisions in zip(batch.events, decided, strict=True):
            final: list[Decision] = []
            for sub, d in zip(subs, decisions, strict=True):
                run_id: str | None = None
                if d.outcome is Outcome.RAN:
                    run_id = existing.get((d.dag_id, event.event_id))
                    reserved = intake.by_key(d.dag_id, event.event_id)
                    if run_id is None and reserved is not None:
                        run_id = reserved.run_id
                    if run_id is not None:
                        d = Decision(d.dag_id, Outcome.DEDUPLICATED)
                    else:
                        try:
                            run = intake.create(
                                d.dag_id,
                                d.params or {},
                                key=event.event_id,
                                logical_date=event.logical_date,
                                event=_event_json(event),
                                trigger=event.source,
                            )
                        except (TypeError, ValueError, OverflowError, ParamError) as exc:
                            # this event can never be stored (e.g. nested too deep for JSON):
                            # it is dead, and the rest of the batch goes on
                            d = Decision(d.dag_id, Outcome.DEAD, error=f"cannot store event: {exc}")
                            run_id = None
                        else:
                            created.append(run)
                            run_id = run.run_id
                            if isinstance(sub.trigger, SourceAsset):  # issue 12: lineage input
                                _record_source_input(writer, sub.trigger, event, run_id, now)
                writer.record_event(
                    event.event_id,
                    d.dag_id,
                    event.source,
                    now,
                    d.outcome.value,
                    run_id,
                    d.error,
                    _dead_payload(event) if d.outcome is Outcome.DEAD else None,
                )
                if d.outcome is Outcome.DEAD:
                    log.warning("dead event %s for %s: %s", event.event_id, d.dag_id, d.error)
                final.append(d)
            if not decisions:
                writer.record_event(
                    event.event_id, "", event.source, now, Outcome.FILTERED.value, None,
                    "no DAG subscribes to this source", None,
                )  # fmt: skip
            outcome = summarize(final) if final else Outcome.FILTERED
            outcomes.append(outcome.value)
        if batch.cursor is not None:
            cursor_id, value = batch.cursor
            writer.save_cursor(cursor_id, serialization.dumps(value), now)
        try:
            await writer.flush()
        except BaseException:
            intake.forget(created)
            raise
        for run in created:
            intake.activate(run)
        for outcome_value in outcomes:  # counted once stored and served: a safe signal to wait on
            self.counts[outcome_value] += 1
        batch.outcomes = outcomes
        batch.mark_stored()

    async def deliver_completion(self, run: ActiveRun) -> None:
        """Hand a finished run to the DAGs that trigger on it (``AfterDag``) and want its state."""
        subscription = f"dag:{run.dag.dag_id}"
        payload = {
            "dag_id": run.dag.dag_id,
            "run_id": run.run_id,
            "state": run.state.value,
            "params": run.params,
        }
        matching = [
            s for s in self.subscriptions.get(subscription, ()) if s.trigger.matches(payload)
        ]
        if not matching:
            return
        event = Event(
            source="dag",
            event_id=f"dag:{run.dag.dag_id}:{run.run_id}",
            payload=payload,
            logical_date=run.logical_date,
        )
        await self.ingest(EventBatch(subscription, [event]), matching)


def _record_source_input(
    writer: StoreWriter, trigger: SourceAsset, event: Event, run_id: str, now: float
) -> None:
    """The source asset (Kafka topic, S3 prefix) of a new run, in the run's transaction."""
    uri = trigger.asset_uri
    writer.execute(q.UPSERT_ASSET, (uri, None, None, now))
    writer.execute(q.INSERT_RUN_INPUT, (run_id, uri, "source", "", event.event_id, now))


def _any_ran(decisions: Sequence[Decision]) -> bool:
    return any(d.outcome is Outcome.RAN for d in decisions)


def _event_json(event: Event) -> Any:
    """What a task sees as ``ctx.event``: the source's payload, plus where it came from."""
    if isinstance(event.payload, dict):
        return {"source": event.source, "event_id": event.event_id, **event.payload}
    return {"source": event.source, "event_id": event.event_id, "value": event.payload}


def _dead_payload(event: Event) -> bytes | None:
    if event.raw is not None:
        return event.raw
    try:
        return serialization.dumps_for_display(event.payload)
    except (TypeError, ValueError, OverflowError):
        return repr(event.payload)[:10_000].encode()
