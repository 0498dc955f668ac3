"""Running tasks: the dispatcher, one try from start to record, retries, and task callbacks.

``TaskRunner`` is a mixin of ``Engine`` (see ``engine.py`` for the durability rules it keeps): a
try starts only once its ``running`` row is committed, and its outcome is recorded, then handed to
the run's state machine, which says what may start next.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from . import serialization
from .context import Context
from .executor import Outcome, TryResult, run_try
from .limits import LimitKey
from .logs import TryLog, current_try
from .models import epoch_to_datetime
from .observe import Observer
from .run_state import ActiveRun, TaskRecord
from .states import RunState, TaskState

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("podium.engine")


class TaskRunner:
    """Dispatching and running task tries (mixed into ``Engine``)."""

    def _wake_dispatcher(self) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._dispatch_wakeup.set()

    async def _dispatch_loop(self) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        assert eng._tg is not None
        while True:
            await eng._dispatch_wakeup.wait()
            eng._dispatch_wakeup = anyio.Event()
            if eng._stopping:
                return
            startable = eng._ready.pop_startable()
            if not startable:
                continue
            now = eng.clock.now()
            batch = []
            for (run, rec), limits in startable:
                if rec.state is not TaskState.QUEUED or run.cancelling:
                    eng._release(limits)
                    continue
                rec.try_number += 1
                rec.state = TaskState.RUNNING
                rec.started_at = now
                rec.finished_at = None
                rec.next_try_at = None
                rec.scope = anyio.CancelScope()
                run.progress.states[rec.task_id] = TaskState.RUNNING
                run.in_flight += 1
                eng._in_flight += 1
                eng._write_task(run, rec)
                batch.append((run, rec, limits))
            if batch:
                # Start the tries once their `running` rows are committed, without holding up the
                # next dispatch round: slots freed meanwhile are filled by the next commit.
                eng._tries.spawn(eng._start_when_committed(batch))

    async def _start_when_committed(
        self, batch: list[tuple[ActiveRun, TaskRecord, tuple[LimitKey, ...]]]
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        await eng._store.writer.flush()
        for run, rec, limits in batch:
            eng._tries.spawn(eng._run_task(run, rec, limits))

    def _release(self, limits: tuple[LimitKey, ...]) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._ready.release(limits)
        eng._wake_dispatcher()

    async def _run_task(
        self, run: ActiveRun, rec: TaskRecord, limits: tuple[LimitKey, ...]
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        assert eng._thread_limiter is not None and rec.scope is not None
        node = rec.node
        ctx: Context | None = None

        def make_context() -> Context:
            nonlocal ctx
            ctx = eng._context(run, rec)
            return ctx

        token = current_try.set(
            TryLog(eng._log_handler, run.run_id, rec.task_id, rec.try_number)
            if eng._log_handler is not None
            else None
        )
        try:
            outcome = await run_try(
                node,
                scope=rec.scope,
                results=run.results,
                params=run.params,
                context_factory=make_context,
                thread_limiter=eng._thread_limiter,
                max_result_bytes=eng.max_result_bytes,
            )
        finally:
            current_try.reset(token)
            rec.scope = None
            run.in_flight -= 1
            eng._in_flight -= 1
            eng._release(limits)
            if eng._in_flight == 0:
                eng._idle.set()
                eng._idle = anyio.Event()
        eng._record_outcome(run, rec, outcome, ctx)
        if rec.settled is not None:
            rec.settled.set()
            rec.settled = None

    def _record_outcome(
        self, run: ActiveRun, rec: TaskRecord, outcome: TryResult, ctx: Context | None
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        now = eng.clock.now()
        tid = rec.task_id
        if outcome.outcome is Outcome.CANCELLED and rec.cancel_reason == "shutdown":
            # Stopped by a graceful shutdown: not the task's fault; it runs again on the next start.
            eng._store.writer.record_try(
                run.run_id, tid, rec.try_number, TaskState.CANCELLED.value,
                rec.started_at, now, "interrupted by engine shutdown", None,
            )  # fmt: skip
            rec.state = TaskState.QUEUED
            rec.cancel_reason = None
            eng._write_task(run, rec)
            return
        if outcome.outcome is Outcome.FAILED and not run.cancelling and not eng._stopping:
            policy = rec.node.options.retry
            attempt = rec.try_number - rec.try_offset
            if policy.should_retry(attempt, outcome.error):
                delay = policy.delay_before(attempt)
                rec.state = TaskState.UP_FOR_RETRY
                rec.error, rec.traceback = outcome.message, outcome.traceback
                rec.next_try_at = now + delay
                rec.finished_at = now
                run.progress.set_state(tid, TaskState.UP_FOR_RETRY)
                eng._record_try_final(run, rec, TaskState.FAILED, outcome, now)
                eng._write_task(run, rec)
                eng._schedule_retry(run, rec, rec.next_try_at)
                log.warning(
                    "%s/%s try %d failed (%s); retrying in %.1fs",
                    run.run_id, tid, rec.try_number, outcome.message, delay,
                )  # fmt: skip
                eng._callbacks(run, rec, ctx, "on_retry", outcome.error)
                return
        state = {
            Outcome.SUCCESS: TaskState.SUCCESS,
            Outcome.FAILED: TaskState.FAILED,
            Outcome.SKIPPED: TaskState.SKIPPED,
            Outcome.CANCELLED: TaskState.CANCELLED,
        }[outcome.outcome]
        if state is TaskState.CANCELLED:
            outcome.message = rec.cancel_reason or outcome.message
        if state is TaskState.SUCCESS:
            run.results[tid] = outcome.result
        rec.result = outcome.result
        if state is TaskState.FAILED:
            log.error("%s/%s failed: %s", run.run_id, tid, outcome.message)
        eng._record_try_final(run, rec, state, outcome, now)
        if state is TaskState.FAILED and _pauses_on_failure(run, rec) and not run.cancelling:
            rec.state = state
            rec.finished_at = now
            rec.error, rec.traceback = outcome.message, outcome.traceback
            eng._write_task(run, rec)
            eng._pause_on_failure(run, tid)
            eng._callbacks(run, rec, ctx, "on_failure", outcome.error)
            return
        eng._finish_task(
            run, rec, state, error=outcome.message, traceback=outcome.traceback, now=now
        )
        if state is TaskState.SUCCESS:
            eng._callbacks(run, rec, ctx, "on_success", None)
        elif state is TaskState.FAILED:
            eng._callbacks(run, rec, ctx, "on_failure", outcome.error)

    def _finish_task(
        self,
        run: ActiveRun,
        rec: TaskRecord,
        state: TaskState,
        *,
        error: str | None = None,
        traceback: str | None = None,
        now: float | None = None,
    ) -> None:
        """Move a task that ran to its final state, record it, and let its downstream tasks react."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        rec.state = state
        rec.finished_at = now if now is not None else eng.clock.now()
        if state is not TaskState.SUCCESS:
            rec.error, rec.traceback = error, traceback
        eng._write_task(run, rec)
        if run.cancelling:
            eng._finish_cancelled(run)
            return
        ready, resolved = run.progress.finish(rec.task_id, state)
        eng._apply(run, ready, resolved)
        eng._maybe_finish(run)

    def _finish_cancelled(self, run: ActiveRun) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        if run.in_flight == 0 and not run.finishing:
            eng._maybe_finish(run, force=RunState.CANCELLED)

    def _record_try_final(
        self, run: ActiveRun, rec: TaskRecord, state: TaskState, outcome: TryResult, now: float
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._store.writer.record_try(
            run.run_id, rec.task_id, rec.try_number, state.value,
            rec.started_at, now, outcome.message if state is not TaskState.SUCCESS else None,
            outcome.traceback,
        )  # fmt: skip

    def _write_task(self, run: ActiveRun, rec: TaskRecord) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._store.writer.update_task(
            run.run_id, rec.task_id, rec.state, rec.try_number, rec.queued_at,
            rec.started_at, rec.finished_at, rec.next_try_at, rec.result, rec.error,
            rec.traceback, rec.try_offset,
        )  # fmt: skip
        for observer in eng._observers:
            observer.task_changed(run, rec)

    def _write_run(self, run: ActiveRun) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._store.writer.update_run(
            run.run_id, run.state.value, run.started_at, run.finished_at, run.note
        )
        for observer in eng._observers:
            observer.run_changed(run)

    def add_observer(self, observer: Observer) -> None:
        """Hear about every recorded task and run change (see ``engine.observe``)."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._observers.append(observer)

    def _context(self, run: ActiveRun, rec: TaskRecord) -> Context:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        writer = eng._store.writer
        max_bytes = eng.max_result_bytes

        async def save_checkpoint(value: Any) -> None:
            data = serialization.encode_result(
                value, what=f"checkpoint of task {rec.task_id!r}", max_bytes=max_bytes
            )
            rec.checkpoint = data
            writer.save_checkpoint(run.run_id, rec.task_id, data)
            await writer.flush()

        return Context(
            dag_id=run.dag.dag_id,
            run_id=run.run_id,
            task_id=rec.task_id,
            params=run.params,
            try_number=rec.try_number,
            logical_date=epoch_to_datetime(run.logical_date),
            event=run.event,
            last_checkpoint=serialization.loads(rec.checkpoint),
            save_checkpoint=save_checkpoint,
        )

    def _callbacks(
        self,
        run: ActiveRun,
        rec: TaskRecord,
        ctx: Context | None,
        which: str,
        error: BaseException | None,
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        callbacks = [getattr(rec.node.options, which)]
        if which == "on_retry":
            callbacks.append(run.dag.on_retry)
        callbacks = [c for c in callbacks if callable(c)]
        if not callbacks:
            return
        if ctx is None:
            ctx = eng._context(run, rec)
        ctx.error = error
        assert eng._tg is not None
        for cb in callbacks:
            eng._tg.start_soon(
                call_callback, cb, ctx, f"task {run.dag.dag_id}.{rec.task_id} {which}"
            )

    def _schedule_retry(self, run: ActiveRun, rec: TaskRecord, due: float) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._retry_seq += 1
        heapq.heappush(eng._retry_heap, (due, eng._retry_seq, run.run_id, rec.task_id))
        eng._retry_wakeup.set()

    async def _retry_loop(self) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        while True:
            if not eng._retry_heap:
                await eng._retry_wakeup.wait()
                eng._retry_wakeup = anyio.Event()
                continue
            due = eng._retry_heap[0][0]
            if due > eng.clock.now():
                eng._retry_wakeup = anyio.Event()
                with anyio.move_on_after(math.inf) as scope:
                    async with anyio.create_task_group() as tg:

                        async def wake_on_new_entry() -> None:
                            await eng._retry_wakeup.wait()
                            scope.cancel()

                        tg.start_soon(wake_on_new_entry)
                        await eng.clock.sleep_until(due)
                        tg.cancel_scope.cancel()
                continue
            _, _, run_id, tid = heapq.heappop(eng._retry_heap)
            run = eng._active.get(run_id)
            if run is None or eng._stopping:
                continue
            rec = run.tasks[tid]
            if rec.state is not TaskState.UP_FOR_RETRY or run.cancelling:
                continue
            rec.state = TaskState.PENDING
            run.progress.states[tid] = TaskState.PENDING
            if run.state is RunState.RUNNING:
                eng._apply(run, [tid], [])


def _pauses_on_failure(run: ActiveRun, rec: TaskRecord) -> bool:
    return rec.node.options.on_failure == "pause" or run.dag.on_failure == "pause"


async def call_callback(callback: Callable[..., Any], arg: Any, what: str) -> None:
    """Run a user callback; its failure is logged with its traceback and changes nothing else."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(arg)
        else:
            await anyio.to_thread.run_sync(callback, arg)
    except Exception:
        log.exception("%s callback %r failed", what, getattr(callback, "__name__", callback))
