"""The timer sensor: fires a DAG's ``Cron`` / ``Every`` slots (any ``Schedule``), resuming from a
persisted cursor."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from engine.clock import Clock

from .base import Event, EventBatch, EventSink, Schedule

log = logging.getLogger("podium.sensors.timer")


def timer_source_key(dag_id: str, index: int) -> str:
    """The subscription (and cursor id) of a DAG's ``index``-th trigger when it is a timer."""
    return f"timer:{dag_id}:{index}"


def timer_event_id(dag_id: str, slot: float) -> str:
    """The identity (and run key) of a timer slot; backfills use the same, so they never double."""
    return f"timer:{dag_id}:{datetime.fromtimestamp(slot, UTC).isoformat()}"


class TimerSource:
    """One timer trigger of one DAG.

    The cursor (the last slot fired) is committed in the same transaction as the runs it created, so
    after a restart ``due_slots(cursor, now)`` yields exactly the slots not yet fired, subject to
    the trigger's ``catchup`` mode. While the engine is saturated the source waits; due slots are
    computed from the cursor when it resumes, so they are fired late rather than lost.
    """

    def __init__(self, dag_id: str, index: int, schedule: Schedule, clock: Clock) -> None:
        self.dag_id = dag_id
        self.schedule = schedule
        self.clock = clock
        self.subscription = timer_source_key(dag_id, index)

    async def run(self, sink: EventSink) -> None:
        cursor = await sink.load_cursor(self.subscription)
        if cursor is None:
            cursor = self.schedule.initial_cursor(self.clock.now())
            batch = EventBatch(self.subscription, [], cursor=(self.subscription, cursor))
            await sink.publish(batch)
            await batch.stored()
        last: float = float(cursor)
        while True:
            now = self.clock.now()
            due = self.schedule.due_slots(last, now)
            if due:
                if not sink.accepting:
                    await sink.wait_accepting()
                    continue  # recompute: more slots may be due by now
                events = [
                    Event(
                        source="timer",
                        event_id=timer_event_id(self.dag_id, slot),
                        payload={
                            "slot": datetime.fromtimestamp(slot, UTC).isoformat(),
                            "schedule": self.schedule.describe(),
                        },
                        logical_date=slot,
                    )
                    for slot in due
                ]
                batch = EventBatch(self.subscription, events, cursor=(self.subscription, due[-1]))
                await sink.publish(batch)
                await batch.stored()
                last = due[-1]
                log.info(
                    "%s fired %d slot(s), last %s",
                    self.subscription,
                    len(due),
                    events[-1].payload["slot"],
                )
                continue
            await self.clock.sleep_until(self.schedule.next_slot(max(last, now)))
