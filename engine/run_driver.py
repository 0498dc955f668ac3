"""The ``RunDriver``: moves each active run forward.

It applies the scheduler's decisions (tasks to queue, tasks settled by trigger rules), records how
each try ended (success, failure, retry later, pause the run, cancellation, interrupted by a
shutdown), cancels runs and tasks, and notices when a run reaches its final state, which it hands to
``on_run_finished`` (the ``RunBook``). Every state change goes through an ``ActiveRun`` method and
is then written by the ``Recorder``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from .assets import task_outputs
from .clock import Clock
from .context import Context
from .dispatcher import Dispatcher
from .executor import Outcome, TryResult
from .mapping import DEFAULT_MAX_MAP_LENGTH, MapError, instance_nodes
from .recorder import Recorder
from .retry_timer import RetryTimer
from .run_state import ActiveRun, Settled, TaskRecord, pauses_on_failure
from .states import RunState, TaskState

log = logging.getLogger("podium.engine")

BACKFILL_PRIORITY = -1000  # backfill tasks yield to live runs' tasks in the ready queue
INTERRUPTED = "interrupted by engine shutdown"

Spawn = Callable[..., None]
"""Start a background job in the engine's task group: ``spawn(async_fn, *args)``."""


class ServedRuns(Protocol):
    """What the driver needs of the ``RunBook``."""

    def get(self, run_id: str) -> ActiveRun | None: ...

    async def complete(self, run: ActiveRun) -> None: ...


_FINAL = {
    Outcome.SUCCESS: TaskState.SUCCESS,
    Outcome.FAILED: TaskState.FAILED,
    Outcome.SKIPPED: TaskState.SKIPPED,
    Outcome.CANCELLED: TaskState.CANCELLED,
}


class RunDriver:
    def __init__(
        self,
        *,
        recorder: Recorder,
        dispatcher: Dispatcher,
        clock: Clock,
        spawn: Spawn,
    ) -> None:
        self._recorder = recorder
        self._dispatcher = dispatcher
        self._clock = clock
        self._spawn = spawn
        self._runs: ServedRuns | None = None
        self.retries = RetryTimer(clock, self.retry_due)
        self.stopping = False
        self.max_map_length = DEFAULT_MAX_MAP_LENGTH
        dispatcher.on_outcome = self.try_ended

    def attach(self, runs: ServedRuns) -> None:
        """Connect the run book, which owns the runs this driver moves and takes the finished ones."""
        self._runs = runs

    # -- moving forward -----------------------------------------------------------------------------

    def start(self, run: ActiveRun) -> None:
        """Queue what may start in a newly admitted (or resumed) run."""
        self._apply(run, run.start())
        self._maybe_finish(run)

    def _apply(self, run: ActiveRun, settled: Settled) -> None:
        ready, resolved = settled
        now = self._clock.now()
        recorder = self._recorder
        for tid, _ in resolved:  # settled by trigger rules without running
            recorder.task(run, run.mark_settled(tid, now))
        if not ready:
            return
        dispatcher = self._dispatcher
        for tid in ready:
            if run.tasks[tid].node.mapped:
                self._expand(run, tid, now)
                continue
            rec = run.queue(tid, now)
            recorder.task(run, rec)
            dispatcher.push(run, rec, _priority(run, rec))
        dispatcher.wake()

    def _expand(self, run: ActiveRun, tid: str, now: float) -> None:
        """A mapped task is ready: one instance per element of its mapped inputs, queued."""
        parent = run.tasks[tid]
        try:
            nodes = instance_nodes(parent.node, run.results, run.params, self.max_map_length)
        except MapError as exc:
            settled, _ = run.finish(parent, TaskState.FAILED, now, error=f"MapError: {exc}")
            self._recorder.task(run, parent)
            log.error("%s/%s cannot be mapped: %s", run.run_id, tid, exc)
            self._apply(run, settled)
            return
        to_queue = run.expand(tid, nodes, now)
        self._recorder.ensure_tasks(run.run_id, run.instances[tid])
        self._recorder.task(run, parent)
        outcome = run.mapped_outcome(tid)
        if outcome is not None:  # nothing to map over, or every instance finished before a restart
            self._apply(run, run.finish_mapped(tid, outcome, now))
            self._recorder.task(run, parent)
            return
        dispatcher = self._dispatcher
        for rec in to_queue:
            run.queue(rec.task_id, now)
            self._recorder.task(run, rec)
            dispatcher.push(run, rec, _priority(run, rec))

    def _maybe_finish(self, run: ActiveRun, force: RunState | None = None) -> None:
        if run.finishing:
            return
        outcome = force or run.progress.outcome()
        if outcome is None:
            return
        run.finishing = True
        run.state = outcome
        run.finished_at = self._clock.now()
        if outcome is RunState.FAILED and run.note is None:
            failed = run.failed_tasks()
            run.note = f"failed task(s): {', '.join(failed)}" if failed else None
        self._recorder.run(run)
        assert self._runs is not None
        self._spawn(self._runs.complete, run)

    def fail_run(self, run: ActiveRun, note: str) -> None:
        """End a run that cannot start (e.g. its stored params are no longer valid)."""
        run.note = note
        self._maybe_finish(run, force=RunState.FAILED)

    # -- a try ended ---------------------------------------------------------------------------------

    def try_ended(
        self, run: ActiveRun, rec: TaskRecord, outcome: TryResult, ctx: Context | None
    ) -> None:
        """Record how a try ended and let the run react."""
        now = self._clock.now()
        recorder = self._recorder
        if outcome.outcome is Outcome.CANCELLED and rec.cancel_reason == "shutdown":
            # Stopped by a graceful shutdown: not the task's fault; it runs again on the next start.
            recorder.try_ended(run, rec, TaskState.CANCELLED, now, INTERRUPTED)
            run.requeue(rec)
            recorder.task(run, rec)
            return
        if outcome.outcome is Outcome.FAILED and not run.cancelling and not self.stopping:
            policy = rec.node.options.retry
            if policy.should_retry(rec.attempt, outcome.error):
                delay = policy.delay_before(rec.attempt)
                run.retry_later(rec, now + delay, now, outcome.message, outcome.traceback)
                recorder.try_ended(
                    run, rec, TaskState.FAILED, now, outcome.message, outcome.traceback
                )
                recorder.task(run, rec)
                self.retries.schedule(run.run_id, rec.task_id, now + delay)
                log.warning(
                    "%s/%s try %d failed (%s); retrying in %.1fs",
                    run.run_id, rec.task_id, rec.try_number, outcome.message, delay,
                )  # fmt: skip
                self._callbacks(run, rec, ctx, "on_retry", outcome.error)
                return
        state = _FINAL[outcome.outcome]
        message = outcome.message
        if state is TaskState.CANCELLED:
            message = rec.cancel_reason or message
        if state is TaskState.SUCCESS:
            run.results[rec.task_id] = outcome.result
            self._record_assets(run, rec, ctx, now)  # issue 12: committed with the success
        rec.result = outcome.result
        recorder.try_ended(run, rec, state, now, message, outcome.traceback)
        if state is TaskState.FAILED:
            log.error("%s/%s failed: %s", run.run_id, rec.task_id, message)
            if pauses_on_failure(run.dag, rec.parent or rec.task_id) and not run.cancelling:
                for changed in run.pause_on_failure(rec, now, message, outcome.traceback):
                    recorder.task(run, changed)
                recorder.run(run)
                log.warning(
                    "run %s of %s paused: task %s failed", run.run_id, run.dag.dag_id, rec.task_id
                )
                self._callbacks(run, rec, ctx, "on_failure", outcome.error)
                return
        self.finish_task(run, rec, state, error=message, traceback=outcome.traceback, now=now)
        if state is TaskState.SUCCESS:
            self._callbacks(run, rec, ctx, "on_success", None)
        elif state is TaskState.FAILED:
            self._callbacks(run, rec, ctx, "on_failure", outcome.error)

    def _record_assets(
        self, run: ActiveRun, rec: TaskRecord, ctx: Context | None, now: float
    ) -> None:
        """Record the asset events (outlets, ``ctx.asset_event``) and inlets of a successful try."""
        options = rec.node.options
        reported = ctx.asset_events if ctx is not None else []
        if not (options.outlets or options.inlets or reported):
            return
        events = task_outputs(
            options.outlets, reported, run_id=run.run_id, dag_id=run.dag.dag_id,
            task_id=rec.task_id, try_number=rec.try_number, now=now,
        )  # fmt: skip
        self._recorder.asset_events(run, rec, events, now)

    def finish_task(
        self,
        run: ActiveRun,
        rec: TaskRecord,
        state: TaskState,
        *,
        error: str | None = None,
        traceback: str | None = None,
        now: float | None = None,
    ) -> None:
        """Move a task to a final state, record it, and let its downstream tasks react."""
        settled, mapped = run.finish(
            rec, state, now if now is not None else self._clock.now(), error=error,
            traceback=traceback,
        )  # fmt: skip
        self._recorder.task(run, rec)
        if mapped is not None:  # the last instance of a mapped task: the task is done too
            self._recorder.task(run, mapped)
        if run.cancelling:
            self._finish_if_cancelled(run)
            return
        self._apply(run, settled)
        self._maybe_finish(run)

    def retry_due(self, run_id: str, task_id: str) -> None:
        """The ``RetryTimer`` says a retry's time has come."""
        assert self._runs is not None
        run = self._runs.get(run_id)
        if run is None or self.stopping:
            return
        rec = run.tasks[task_id]
        if run.retry_due(rec, self._clock.now()):
            self._recorder.task(run, rec)
            self._dispatcher.push(run, rec, _priority(run, rec))
            self._dispatcher.wake()

    # -- operator actions on a run ------------------------------------------------------------------

    def cancel(self, run: ActiveRun, reason: str) -> None:
        """Cancel a run: waiting tasks become ``cancelled``, running ones are cancelled through
        their cancel scope and recorded as they unwind."""
        run.cancelling = True
        run.note = reason
        self._dispatcher.drop_queued(lambda payload: payload[0] is run)
        now = self._clock.now()
        for rec in run.tasks.values():
            if rec.state.finished:
                continue
            if rec.scope is not None:
                rec.cancel_reason = reason
                rec.scope.cancel()
            else:
                run.cancel_waiting(rec, reason, now)
                self._recorder.task(run, rec)
        self._finish_if_cancelled(run)

    async def cancel_task(self, run: ActiveRun, rec: TaskRecord, reason: str) -> None:
        """Cancel one task; its downstream tasks follow their trigger rules."""
        if rec.scope is not None:
            rec.cancel_reason = reason
            settled = rec.settled = rec.settled or anyio.Event()
            rec.scope.cancel()
            await settled.wait()  # the try records itself as it unwinds
        else:
            self._dispatcher.drop_queued(lambda payload: payload[1] is rec)
            self.finish_task(run, rec, TaskState.CANCELLED, error=reason)

    def resume(self, run: ActiveRun) -> None:
        """Continue a run paused by a failure."""
        for rec in run.resume():
            self._recorder.task(run, rec)
        self._recorder.run(run)
        now = self._clock.now()
        for rec in run.pending_instances():  # instances of tasks expanded before the pause
            run.queue(rec.task_id, now)
            self._recorder.task(run, rec)
            self._dispatcher.push(run, rec, _priority(run, rec))
        self._dispatcher.wake()
        self.start(run)

    def _finish_if_cancelled(self, run: ActiveRun) -> None:
        if run.in_flight == 0 and not run.finishing:
            self._maybe_finish(run, force=RunState.CANCELLED)

    # -- callbacks ----------------------------------------------------------------------------------

    def _callbacks(
        self,
        run: ActiveRun,
        rec: TaskRecord,
        ctx: Context | None,
        which: str,
        error: BaseException | None,
    ) -> None:
        own = getattr(rec.node.options, which)
        dag_wide = run.dag.on_retry if which == "on_retry" else None
        if not callable(own) and not callable(dag_wide):
            return  # the common case, on every try: nothing to call
        callbacks = [c for c in (own, dag_wide) if callable(c)]
        if ctx is None:
            ctx = self._dispatcher.context(run, rec)
        ctx.error = error
        for cb in callbacks:
            self._spawn(call_callback, cb, ctx, f"task {run.dag.dag_id}.{rec.task_id} {which}")


def _priority(run: ActiveRun, rec: TaskRecord) -> int:
    boost = BACKFILL_PRIORITY if run.trigger == "backfill" else 0
    return rec.node.options.priority + boost


async def call_callback(callback: Callable[..., Any], arg: Any, what: str) -> None:
    """Run a user callback; its failure is logged with its traceback and changes nothing else."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(arg)
        else:
            await anyio.to_thread.run_sync(callback, arg)
    except Exception:
        log.exception("%s callback %r failed", what, getattr(callback, "__name__", callback))
