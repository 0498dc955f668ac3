"""The DAGs' event sources, supervised: each trigger subscribed on the ingest, one source started per
subscription (triggers that share a consumer share it), and a source that fails restarted after a
growing pause."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from sensors.base import EventSource

from .backoff import Backoff
from .clock import Clock
from .dag import DAG
from .ingest import EventIngest
from .router import Subscription

log = logging.getLogger("podium.engine")


class SourceSupervisor:
    """Subscribes the triggers of ``dags`` on ``ingest`` and, when ``enabled``, runs their sources
    in the engine's task group until ``stopping()``."""

    def __init__(
        self,
        *,
        dags: Mapping[str, DAG],
        ingest: EventIngest,
        clock: Clock,
        enabled: bool,
        stopping: Callable[[], bool],
    ) -> None:
        self._dags = dags
        self._ingest = ingest
        self._clock = clock
        self._enabled = enabled
        self._stopping = stopping
        self.sources: dict[str, EventSource] = {}

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Subscribe every trigger; start one supervised source per subscription."""
        from sensors.sources import source_for, subscription_of

        shared: dict[str, list[tuple[DAG, int, Any]]] = {}
        for d in self._dags.values():
            for index, trig in enumerate(d.triggers):
                subscription = subscription_of(trig, dag_id=d.dag_id, index=index)
                self._ingest.subscribe(subscription, Subscription(d, trig))
                shared.setdefault(subscription, []).append((d, index, trig))
        if not self._enabled:
            return
        for subscription, triggers in shared.items():
            d, index, first = triggers[0]
            source = source_for(
                first,
                dag_id=d.dag_id,
                index=index,
                clock=self._clock,
                sharing=[t for _, _, t in triggers[1:]],
            )
            if source is not None:
                self.sources[subscription] = source
                tg.start_soon(self._supervise, source)

    async def _supervise(self, source: EventSource) -> None:
        """Run a sensor; if it fails, log why and start it again after a pause."""
        delays = Backoff(0.5, cap=30.0).delays()
        while not self._stopping():
            started = self._clock.now()
            try:
                await source.run(self._ingest)
                return
            except Exception:
                if self._clock.now() - started > 60:
                    delays.reset()  # it ran well for a while: this is a new failure, not a streak
                delay = next(delays)
                log.exception("sensor %s failed; restarting in %.1fs", source.subscription, delay)
            await anyio.sleep(delay)
