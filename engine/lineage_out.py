"""OpenLineage out: a RunEvent for every run and every task try, sent in the background through the
official ``openlineage-python`` client (``podium[openlineage]``; docs/lineage.md).

Off by default, and then it costs nothing: the engine holds no ``LineageEmitter`` and this module
(and so ``openlineage``) is never imported. On with ``Engine(lineage=True)`` (a client configured
the client's way: ``openlineage.yml``, ``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__...``) or
``Engine(openlineage_client=...)``.

What is emitted:

- a run: job ``{namespace}`` / ``{dag_id}``; START when it starts running, then COMPLETE, FAIL or
  ABORT (cancelled). Its inputs are the run's source and consumed asset events (``run_inputs``),
  its outputs the asset events its tasks recorded, read from the store once committed.
- a task try: job ``{dag_id}.{task_id}``, run id of the try; START when the try starts, then
  COMPLETE (its asset events as outputs), FAIL (also a try that will be retried) or ABORT (cancelled
  while running, or stopped by a shutdown). The parent-run facet points to the run (and its root).
  Inputs: the task's declared inlets.

How it never slows or fails a run: the recorder calls ``task_changed`` / ``run_changed`` on the
loop, which only put a small record on a bounded queue (``send_nowait``; a full queue drops the
record and counts it: waiting there would stall the engine). One task (``serve``, in the engine's
task group) builds each event and calls the client's ``emit`` (blocking I/O) in a worker thread,
one at a time. A failed emit is tried again ``retries`` times, ``backoff`` apart (a receiver that
is down), then dropped and logged. ``counts`` (emitted, retried, dropped) feed ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    JobFacet,
    OutputDatasetFacet,
    RunFacet,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

from .asset_triggers import event_from_row
from .assets import AssetEvent
from .clock import Clock
from .errors import describe_exception
from .lineage_events import LineageOptions, dataset_of, run_uuid, schema_fields, try_uuid
from .states import RunState as PodiumRunState
from .states import TaskState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .run_state import ActiveRun, TaskRecord
    from .store import Store

log = logging.getLogger("podium.lineage")

_TASK_END = {
    TaskState.SUCCESS: RunState.COMPLETE,
    TaskState.FAILED: RunState.FAIL,
    TaskState.UP_FOR_RETRY: RunState.FAIL,
    TaskState.CANCELLED: RunState.ABORT,
}
_RUN_END = {
    PodiumRunState.SUCCESS: RunState.COMPLETE,
    PodiumRunState.FAILED: RunState.FAIL,
    PodiumRunState.CANCELLED: RunState.ABORT,
}


@dataclass(frozen=True, slots=True)
class Change:
    """What the observer saw, queued for the emitter: small, built on the loop without I/O."""

    event_type: RunState
    ts: float
    run_id: str
    dag_id: str
    logical_date: float | None
    task_id: str | None = None  # None: the run itself
    job_task: str | None = None  # a mapped instance's task (``process`` for ``process[3]``)
    try_number: int = 0
    error: str | None = None
    inlets: tuple[str, ...] = ()
    outputs: tuple[AssetEvent, ...] = ()


class LineageEmitter:
    """An ``Observer`` (and ``AssetObserver``) that emits OpenLineage events in the background."""

    def __init__(
        self,
        *,
        options: LineageOptions,
        store: Store,
        flush: Callable[[], Awaitable[None]],
        clock: Clock,
        client: OpenLineageClient | None = None,
    ) -> None:
        self.options = options
        self._store = store
        self._flush = flush
        self._clock = clock
        self.client = client
        send, receive = anyio.create_memory_object_stream[Change](options.queue_size)
        self._send: MemoryObjectSendStream[Change] = send
        self._receive: MemoryObjectReceiveStream[Change] = receive
        self.counts: dict[str, int] = {"emitted": 0, "retried": 0, "dropped": 0}
        self._pending = 0
        self._idle: anyio.Event | None = None
        self._started_runs: set[str] = set()  # START emitted, end not yet (this process)
        self._open_tries: set[tuple[str, str, int]] = set()
        self._outputs: dict[tuple[str, str], tuple[AssetEvent, ...]] = {}
        self._failing = False

    # -- Observer (on the loop, synchronous: cheap, never blocks) -----------------------------------

    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        state = task.state
        key = (run.run_id, task.task_id, task.try_number)
        if state is TaskState.RUNNING:
            if key in self._open_tries:
                return
            self._open_tries.add(key)
            event_type = RunState.START
        elif state in (TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY):
            if task.try_number < 1:
                return  # failed before any try (e.g. a bad expansion): no run to report
            self._open_tries.discard(key)
            event_type = _TASK_END[state]
        elif key in self._open_tries:  # cancelled, or requeued by a shutdown: the try ended
            self._open_tries.discard(key)
            event_type = RunState.ABORT
        else:
            return
        outputs = self._outputs.pop((run.run_id, task.task_id), ())
        self._put(
            Change(
                event_type=event_type,
                ts=self._clock.now(),
                run_id=run.run_id,
                dag_id=run.dag.dag_id,
                logical_date=run.logical_date,
                task_id=task.task_id,
                job_task=task.parent or task.task_id,
                try_number=task.try_number,
                error=task.error if event_type is RunState.FAIL else None,
                inlets=tuple(a.uri for a in task.node.options.inlets),
                outputs=outputs if state is TaskState.SUCCESS else (),
            )
        )

    def run_changed(self, run: ActiveRun) -> None:
        state = run.state
        if state is PodiumRunState.RUNNING:
            if run.run_id in self._started_runs:
                return  # resumed after a pause: the same OpenLineage run goes on
            self._started_runs.add(run.run_id)
            event_type = RunState.START
        elif state in _RUN_END:
            self._started_runs.discard(run.run_id)
            event_type = _RUN_END[state]
        else:
            return
        self._put(
            Change(
                event_type=event_type,
                ts=self._clock.now(),
                run_id=run.run_id,
                dag_id=run.dag.dag_id,
                logical_date=run.logical_date,
                error=run.note if event_type is RunState.FAIL else None,
            )
        )

    def asset_events_recorded(
        self, run: ActiveRun, task: TaskRecord, events: Sequence[AssetEvent]
    ) -> None:
        # the task's success is recorded right after: its COMPLETE event carries these
        self._outputs[(run.run_id, task.task_id)] = tuple(events)

    def _put(self, change: Change) -> None:
        try:
            self._send.send_nowait(change)
        except anyio.WouldBlock:
            self.counts["dropped"] += 1
            if self.counts["dropped"] == 1 or self.counts["dropped"] % 1000 == 0:
                log.warning(
                    "OpenLineage queue full (%d events): dropping events (%d so far)",
                    self.options.queue_size,
                    self.counts["dropped"],
                )
            return
        self._pending += 1

    # -- the background job -------------------------------------------------------------------------

    async def serve(self) -> NoReturn:
        """Build and send the queued events, one at a time (run it in the engine's task group)."""
        broken: str | None = None
        if self.client is None:  # reads openlineage.yml / the environment: off the loop
            try:
                self.client = await anyio.to_thread.run_sync(OpenLineageClient)
            except Exception as exc:  # a bad configuration must not stop the engine
                broken = describe_exception(exc)
                log.error("OpenLineage is off: the client cannot be configured: %s", broken)
        while True:
            change = await self._receive.receive()
            try:
                if broken is None:
                    await self._deliver(change)
                else:
                    self.counts["dropped"] += 1
            finally:
                self._pending -= 1
                if self._pending == 0 and self._idle is not None:
                    self._idle.set()

    async def _deliver(self, change: Change) -> None:
        try:
            event = await self.build(change)
        except Exception as exc:  # a bug here must not stop lineage (nor the engine)
            self.counts["dropped"] += 1
            log.exception("could not build the OpenLineage event of %s: %s", change, exc)
            return
        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await anyio.to_thread.run_sync(self._emit, event, abandon_on_cancel=True)
            except Exception as exc:
                if attempt == attempts:
                    self.counts["dropped"] += 1
                    level = logging.DEBUG if self._failing else logging.WARNING
                    log.log(
                        level,
                        "OpenLineage %s event of %s dropped after %d tries: %s",
                        event.eventType.value if event.eventType else "?",
                        event.job.name,
                        attempts,
                        describe_exception(exc),
                    )
                    self._failing = True
                    return
                self.counts["retried"] += 1
                delay = self.options.backoff.delay(attempt)
                log.debug("OpenLineage emit failed (%s); retrying in %.2fs", exc, delay)
                await self._clock.sleep_until(self._clock.now() + delay)
            else:
                self.counts["emitted"] += 1
                if self._failing:
                    log.info("OpenLineage events are delivered again")
                    self._failing = False
                return

    def _emit(self, event: RunEvent) -> None:
        assert self.client is not None
        self.client.emit(event)

    async def drain(self) -> None:
        """Wait (up to ``drain_timeout``) until the queued events are sent or dropped."""
        if self._pending == 0:
            return
        self._idle = anyio.Event()
        with anyio.move_on_after(self.options.drain_timeout):
            await self._idle.wait()

    async def close(self) -> None:
        """The engine stopped: count what is still queued as dropped, close the client."""
        if self._pending:
            log.warning(
                "OpenLineage: %d event(s) not sent before the engine stopped", self._pending
            )
            self.counts["dropped"] += self._pending
            self._pending = 0
        self._send.close()
        self._receive.close()
        client = self.client
        if client is not None:
            with anyio.move_on_after(self.options.drain_timeout, shield=True):
                await anyio.to_thread.run_sync(client.close, 0.0, abandon_on_cancel=True)

    # -- events -------------------------------------------------------------------------------------

    async def build(self, change: Change) -> RunEvent:
        """The OpenLineage RunEvent of one change (reads the store for a run's inputs/outputs)."""
        ns = self.options.namespace
        run_facets: dict[str, RunFacet] = {}
        if change.logical_date is not None:
            run_facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
                nominalStartTime=_iso(change.logical_date)
            )
        if change.error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=change.error, programmingLanguage="PYTHON"
            )
        run_id = run_uuid(change.run_id)
        inputs: list[InputDataset]
        outputs: list[OutputDataset]
        if change.task_id is None:
            name = change.dag_id
            job_type = "DAG"
            inputs, outputs = await self._run_datasets(change)
        else:
            name = f"{change.dag_id}.{change.job_task or change.task_id}"
            job_type = "TASK"
            parent = parent_run.Run(runId=run_id)
            parent_job = parent_run.Job(namespace=ns, name=change.dag_id)
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent,
                job=parent_job,
                root=parent_run.Root(
                    run=parent_run.RootRun(runId=run_id),
                    job=parent_run.RootJob(namespace=ns, name=change.dag_id),
                ),
            )
            run_id = try_uuid(change.run_id, change.task_id, change.try_number)
            inputs = [self._input(uri) for uri in dict.fromkeys(change.inlets)]
            outputs = [self._output(ev) for ev in change.outputs]
        job_facets: dict[str, JobFacet] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="PODIUM", jobType=job_type
            )
        }
        return RunEvent(
            eventType=change.event_type,
            eventTime=_iso(change.ts),
            run=Run(runId=run_id, facets=run_facets),
            job=Job(namespace=ns, name=name, facets=job_facets),
            inputs=inputs,
            outputs=outputs,
            producer=self.options.producer,
        )

    async def _run_datasets(self, change: Change) -> tuple[list[InputDataset], list[OutputDataset]]:
        if change.event_type is not RunState.START:
            with anyio.move_on_after(self.options.drain_timeout):
                await self._flush()  # the run's last asset events are committed
        rows = await self._store.run_inputs(change.run_id)
        inputs = [self._input(uri) for uri in dict.fromkeys(r.uri for r in rows)]
        if change.event_type is RunState.START:
            return inputs, []
        written = await self._store.run_outputs(change.run_id)
        return inputs, [self._output(event_from_row(r)) for r in written]

    def _input(self, uri: str) -> InputDataset:
        namespace, name = dataset_of(uri, self.options.namespace)
        return InputDataset(namespace=namespace, name=name)

    def _output(self, ev: AssetEvent) -> OutputDataset:
        namespace, name = dataset_of(ev.uri, self.options.namespace)
        facets: dict[str, Any] = {}
        fields = schema_fields(ev.schema)
        if fields:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
            )
        output_facets: dict[str, OutputDatasetFacet] = {}
        rows = (ev.metadata or {}).get("rows")
        if isinstance(rows, int) and not isinstance(rows, bool):
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
            )
        return OutputDataset(
            namespace=namespace, name=name, facets=facets, outputFacets=output_facets
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


__all__ = ["Change", "LineageEmitter"]
