"""The ``Dispatcher``: starts ready tasks under every limit, one try each, and hands back outcomes.

It owns the ready queue (priority, then arrival; global, pool, DAG and task limits), the set of
running tries, and the thread limiter for sync tasks. Its loop takes every task that may start,
records each try as ``running``, and starts the tries only once those rows are committed, so a crash
never re-runs a try that was not counted. When a try ends, its slots are released and its outcome
goes to ``on_outcome`` (the ``RunDriver``), which records it and decides what comes next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from . import serialization
from .clock import Clock
from .context import Context
from .executor import TryResult, run_try
from .limits import LimitKey, ReadyQueue
from .logs import TaskLogHandler, TryLog, current_try
from .models import epoch_to_datetime
from .recorder import Recorder
from .run_state import ActiveRun, TaskRecord
from .states import TaskState
from .taskset import TaskSet

if TYPE_CHECKING:
    from .runners.sessions import Runners
    from .tracing import Tracing

OutcomeHandler = Callable[[ActiveRun, TaskRecord, TryResult, "Context | None"], None]
Started = tuple[ActiveRun, TaskRecord, tuple[LimitKey, ...]]


class Dispatcher:
    def __init__(
        self,
        *,
        ready: ReadyQueue,
        recorder: Recorder,
        clock: Clock,
        max_threads: int,
        max_result_bytes: int | None,
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self.ready = ready
        self._recorder = recorder
        self._clock = clock
        self._max_threads = max_threads
        self._max_result_bytes = max_result_bytes
        self._tries = TaskSet(on_crash)
        self._thread_limiter: anyio.CapacityLimiter | None = None
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self.in_flight = 0
        self.stopping = False
        self.log_handler: TaskLogHandler | None = None
        self.on_outcome: OutcomeHandler | None = None
        self.tracing: Tracing | None = None  # engine/tracing.py; None when tracing is off
        self.runners: Runners | None = None  # engine/runners: where each task's body runs

    # -- the ready queue ----------------------------------------------------------------------------

    def push(self, run: ActiveRun, rec: TaskRecord, priority: int) -> None:
        self.ready.push((run, rec), priority=priority, limits=rec.limit_keys(run.dag.dag_id))

    def wake(self) -> None:
        self._wakeup.set()

    def drop_queued(self, predicate: Callable[[tuple[ActiveRun, TaskRecord]], bool]) -> None:
        """Take tasks that have not started out of the ready queue (a cancelled run or task)."""
        self.ready.remove(predicate)

    def set_capacity(self, key: LimitKey, capacity: int) -> None:
        self.ready.set_capacity(key, capacity)
        self.wake()

    # -- the loop -----------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Start tasks as slots allow, until the engine stops."""
        self._thread_limiter = anyio.CapacityLimiter(self._max_threads)
        recorder = self._recorder
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            if self.stopping:
                return
            startable = self.ready.pop_startable()
            if not startable:
                continue
            now = self._clock.now()
            batch: list[Started] = []
            for (run, rec), limits in startable:
                if rec.state is not TaskState.QUEUED or run.cancelling:
                    self._release(limits)
                    continue
                run.begin_try(rec, now)
                run.in_flight += 1
                self.in_flight += 1
                recorder.task(run, rec)
                batch.append((run, rec, limits))
            if batch:
                # Start the tries once their `running` rows are committed, without holding up the
                # next dispatch round: slots freed meanwhile are filled by the next commit.
                self._tries.spawn(self._start_when_committed(batch))

    async def _start_when_committed(self, batch: list[Started]) -> None:
        await self._recorder.flush()
        for run, rec, limits in batch:
            self._tries.spawn(self._run_try(run, rec, limits))

    def _release(self, limits: tuple[LimitKey, ...]) -> None:
        self.ready.release(limits)
        self._wakeup.set()

    async def _run_try(self, run: ActiveRun, rec: TaskRecord, limits: tuple[LimitKey, ...]) -> None:
        assert self._thread_limiter is not None and rec.scope is not None
        ctx: Context | None = None

        def make_context() -> Context:
            nonlocal ctx
            ctx = self.context(run, rec)
            return ctx

        handler = self.log_handler
        token = current_try.set(
            TryLog(handler, run.run_id, rec.task_id, rec.try_number) if handler else None
        )
        # tracing: the try's span is current while it runs (this asyncio task is the try's own)
        traced = self.tracing.start_try(run, rec) if self.tracing is not None else None
        outcome: TryResult | None = None
        runners = self.runners  # runners: None (the built-in path) unless the task names one
        try:
            outcome = await run_try(
                rec.node,
                scope=rec.scope,
                results=run.results,
                params=run.params,
                context_factory=make_context,
                thread_limiter=self._thread_limiter,
                max_result_bytes=self._max_result_bytes,
                runner=runners.session_for(run.dag, rec.node) if runners is not None else None,
                run_id=run.run_id,  # runners (dask): the try a runner session runs
                try_number=rec.try_number,
            )
        finally:
            if traced is not None:
                traced.end(rec, outcome)
            current_try.reset(token)
            rec.scope = None
            run.in_flight -= 1
            self.in_flight -= 1
            self._release(limits)
            if self.in_flight == 0:
                self._idle.set()
                self._idle = anyio.Event()
        assert self.on_outcome is not None
        self.on_outcome(run, rec, outcome, ctx)
        if rec.settled is not None:
            rec.settled.set()
            rec.settled = None

    def context(self, run: ActiveRun, rec: TaskRecord) -> Context:
        """The ``Context`` a task (or its callback) receives."""
        recorder = self._recorder
        max_bytes = self._max_result_bytes

        async def save_checkpoint(value: Any) -> None:
            data = serialization.encode_result(
                value, what=f"checkpoint of task {rec.task_id!r}", max_bytes=max_bytes
            )
            rec.checkpoint = data
            recorder.checkpoint(run.run_id, rec.task_id, data)
            await recorder.flush()

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

    # -- stopping -----------------------------------------------------------------------------------

    def cancel_in_flight(self, runs: list[ActiveRun], reason: str) -> int:
        """Cancel the running tries of ``runs`` through their cancel scopes."""
        cancelled = 0
        for run in runs:
            for rec in run.tasks.values():
                if rec.scope is not None and rec.cancel_reason is None:
                    rec.cancel_reason = reason
                    rec.scope.cancel()
                    cancelled += 1
        return cancelled

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every running try to end; True if none is left."""
        if self.in_flight:
            with anyio.move_on_after(timeout):
                await self._idle.wait()
        return self.in_flight == 0

    async def cancel_and_wait(self, timeout: float) -> None:
        """Cancel whatever try coroutines are left (engine teardown) and wait for them."""
        await self._tries.cancel_and_wait(timeout=timeout)
