"""The runs an engine is serving, in memory: ``ActiveRun`` and its ``TaskRecord`` objects.

``ActiveRun`` is the one source of truth for its tasks' states. They live in one dict that the run's
scheduler (``RunProgress``) works on directly; a ``TaskRecord`` reads its state from there. Every change
of a task's state is a method of ``ActiveRun`` below, which keeps the record fields (times, tries,
errors) and the scheduler's counters in step. Nothing here writes to the store: the caller records
what a transition changed (``Recorder``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from . import serialization
from .dag import DAG
from .dag_builder import TaskNode
from .limits import LimitKey
from .models import Run, TaskInstance, epoch_to_datetime
from .scheduler import GraphSpec, RunProgress, graph_spec
from .states import FINISHED_TASK_STATES, RunState, TaskState

if TYPE_CHECKING:
    from .models import RunSource
    from .store.records import TaskRow

Settled = tuple[list[str], list[tuple[str, TaskState]]]

_FAILED_LIKE = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})
"""What a transition let move: tasks now ready to queue, and tasks settled without running."""


class TaskRecord:
    """One task instance of an active run: its try bookkeeping, and its state (read from the run)."""

    __slots__ = (
        "_states",
        "awaiting_resume",
        "cancel_reason",
        "checkpoint",
        "error",
        "finished_at",
        "next_try_at",
        "node",
        "parent",
        "queued_at",
        "result",
        "scope",
        "settled",
        "started_at",
        "task_id",
        "traceback",
        "try_number",
        "try_offset",
    )

    def __init__(
        self,
        node: TaskNode,
        states: dict[str, TaskState],
        *,
        task_id: str | None = None,
        parent: str | None = None,
    ) -> None:
        self.node = node
        self.task_id = task_id or node.task_id
        self.parent = parent  # a mapped instance's task (``process`` for ``process[3]``)
        self._states = states
        self.try_number = 0
        self.queued_at: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.next_try_at: float | None = None
        self.result: bytes | None = None
        self.error: str | None = None
        self.traceback: str | None = None
        self.checkpoint: bytes | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancel_reason: str | None = None
        self.try_offset = 0  # tries before the last rerun/resume; retries count from here
        self.settled: anyio.Event | None = None  # set when the running try has been recorded
        # The failure that paused its run (``on_failure="pause"``): recorded ``failed``, but not
        # final for the scheduler (``paused``), so its downstream tasks wait for an operator.
        self.awaiting_resume = False

    @property
    def state(self) -> TaskState:
        """The task's recorded state."""
        state = self._states[self.task_id]
        return TaskState.FAILED if self.awaiting_resume else state

    @property
    def attempt(self) -> int:
        """Tries since the last rerun or resume (what the retry policy counts)."""
        return self.try_number - self.try_offset

    def load(self, row: TaskRow) -> TaskState:
        """Take the stored fields of ``row``; returns its stored state (the caller places it)."""
        self.try_number = row.try_number
        self.queued_at = row.queued_at
        self.started_at = row.started_at
        self.finished_at = row.finished_at
        self.next_try_at = row.next_try_at
        self.result = row.result
        self.error = row.error
        self.traceback = row.traceback
        self.checkpoint = row.checkpoint
        self.try_offset = row.try_offset
        return TaskState(row.state)

    def limit_keys(self, dag_id: str) -> tuple[LimitKey, ...]:
        options = self.node.options
        # a mapped instance counts against its task's ``concurrency``, with its siblings
        keys: list[LimitKey] = [("dag", dag_id), ("task", dag_id, self.parent or self.task_id)]
        if options.pool is not None:
            keys.append(("pool", options.pool))
        return tuple(keys)

    def snapshot(self) -> TaskInstance:
        return TaskInstance(
            task_id=self.task_id,
            state=self.state,
            try_number=self.try_number,
            result=serialization.loads(self.result),
            error=self.error,
            traceback=self.traceback,
            queued_at=self.queued_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            next_try_at=self.next_try_at,
            checkpoint=serialization.loads(self.checkpoint),
        )


class ActiveRun:
    """A run this engine is serving: its DAG, params, task records, and their states."""

    def __init__(
        self,
        *,
        dag: DAG,
        run_id: str,
        key: str,
        params: dict[str, Any],
        logical_date: float | None,
        trigger: str,
        event: Any,
        created_at: float,
        started_at: float | None = None,
        state: RunState = RunState.QUEUED,
        seq: int = 0,
    ) -> None:
        self.dag = dag
        self.run_id = run_id
        self.key = key
        self.params = params
        self.logical_date = logical_date
        self.trigger = trigger
        self.event = event
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at: float | None = None
        self.state = state
        self.seq = seq
        self.note: str | None = None
        spec = graph_spec_of(dag)
        self._states: dict[str, TaskState] = dict.fromkeys(spec.order, TaskState.PENDING)
        self.tasks: dict[str, TaskRecord] = {
            tid: TaskRecord(node, self._states) for tid, node in dag.tasks.items()
        }
        self.progress = RunProgress(spec, self._states)
        self.instances: dict[str, list[str]] = {}  # a mapped task -> its instances' ids, in order
        self._unfinished: dict[str, int] = {}  # a mapped task -> its instances not final yet
        self.results: dict[str, bytes | None] = {}
        self.in_flight = 0
        self.admitted = False
        self.cancelling = False
        self.finishing = False
        self.done = anyio.Event()

    # -- loading after a restart --------------------------------------------------------------------

    def load_tasks(
        self, rows: dict[str, TaskRow], *, pauses: set[str], now: float, crash_error: str
    ) -> list[TaskRecord]:
        """Take the stored task rows (before any transition). ``pauses``: the failed tasks whose
        failure paused this run (they wait for ``resume``). A try that was queued runs again; a try
        that was running when the engine died counts, and is retried now if it has tries left, else
        fails with ``crash_error``. Returns the records of those crashed tries."""
        crashed = []
        for tid in rows:
            parent, _ = split_instance_id(tid)
            if tid in self.tasks or parent not in self.tasks or not self.tasks[parent].node.mapped:
                continue
            # a mapped instance stored before the restart: its arguments are set again when its
            # task is expanded again (from the same committed upstream results)
            self.tasks[tid] = TaskRecord(
                self.tasks[parent].node, self._states, task_id=tid, parent=parent
            )
            ids = self.instances.setdefault(parent, [])
            ids.append(tid)
        for ids in self.instances.values():
            ids.sort(key=lambda i: split_instance_id(i)[1])
        for tid, rec in self.tasks.items():
            row = rows.get(tid)
            if row is None:
                continue
            state = rec.load(row)
            if rec.node.mapped and rec.parent is None and not state.finished:
                state = TaskState.PENDING  # expanded before: expanded again, reusing its instances
            elif state is TaskState.QUEUED:
                state = TaskState.PENDING
            elif state is TaskState.RUNNING:
                crashed.append(rec)
                rec.error = crash_error
                if rec.node.options.retry.should_retry(rec.attempt, None):
                    state = TaskState.UP_FOR_RETRY
                    rec.next_try_at = now
                else:
                    state = TaskState.FAILED
                    rec.finished_at = now
            elif state is TaskState.SUCCESS:
                self.results[tid] = rec.result  # downstream tasks read it; it never runs again
            elif state is TaskState.FAILED and tid in pauses:
                state = TaskState.PAUSED
                rec.awaiting_resume = True
            self._states[tid] = state
        self.progress = RunProgress(self.progress.spec, self._states)
        return crashed

    # -- transitions --------------------------------------------------------------------------------

    def start(self) -> Settled:
        """Evaluate every pending task (a new run, or one reloaded or resumed)."""
        return self.progress.start()

    def queue(self, tid: str, now: float) -> TaskRecord:
        """A ready task joins the ready queue (from ``start``/``finish``, or a retry that is due)."""
        self._states[tid] = TaskState.QUEUED
        rec = self.tasks[tid]
        rec.queued_at = now
        return rec

    def mark_settled(self, tid: str, now: float) -> TaskRecord:
        """A task the trigger rules settled without running (skipped, upstream_failed)."""
        rec = self.tasks[tid]
        rec.finished_at = now
        return rec

    def begin_try(self, rec: TaskRecord, now: float) -> None:
        """A queued task starts a try: the try number counts from here."""
        self._states[rec.task_id] = TaskState.RUNNING
        rec.try_number += 1
        rec.started_at = now
        rec.finished_at = None
        rec.next_try_at = None
        rec.scope = anyio.CancelScope()

    def requeue(self, rec: TaskRecord) -> None:
        """A try stopped by a graceful shutdown: it runs again on the next start."""
        self._states[rec.task_id] = TaskState.QUEUED
        rec.cancel_reason = None

    def retry_later(
        self, rec: TaskRecord, due: float, now: float, error: str | None, traceback: str | None
    ) -> None:
        """A failed try with tries left: wait until ``due``."""
        self._states[rec.task_id] = TaskState.UP_FOR_RETRY
        rec.error, rec.traceback = error, traceback
        rec.next_try_at = due
        rec.finished_at = now

    def retry_due(self, rec: TaskRecord, now: float) -> bool:
        """A retry's time has come: queue it (False if the task or run moved on meanwhile)."""
        if self._states[rec.task_id] is not TaskState.UP_FOR_RETRY or self.cancelling:
            return False
        self._states[rec.task_id] = TaskState.PENDING
        if self.state is not RunState.RUNNING:
            return False  # a paused run queues it when it resumes
        self.queue(rec.task_id, now)
        return True

    def expand(self, tid: str, nodes: list[TaskNode], now: float) -> list[TaskRecord]:
        """A mapped task's upstream results are known: one instance per element (``nodes``, with
        their elements bound). Instances stored before a restart are reused, with their states.
        The task itself is ``running`` until its instances are finished. Returns the instances
        that are to be queued."""
        parent = self.tasks[tid]
        self._states[tid] = TaskState.RUNNING
        parent.started_at = parent.started_at or now
        ids = []
        to_queue = []
        for index, node in enumerate(nodes):
            iid = instance_id(tid, index)
            ids.append(iid)
            rec = self.tasks.get(iid)
            if rec is None:
                rec = self.tasks[iid] = TaskRecord(node, self._states, task_id=iid, parent=tid)
                self._states[iid] = TaskState.PENDING
            else:
                rec.node = node
            if self._states[iid] in (TaskState.PENDING, TaskState.QUEUED):
                to_queue.append(rec)
        self.instances[tid] = ids
        self._unfinished[tid] = sum(1 for i in ids if self._states[i] not in FINISHED_TASK_STATES)
        return to_queue

    def pending_instances(self) -> list[TaskRecord]:
        """Instances of expanded mapped tasks that wait to be queued (after a resume)."""
        return [
            self.tasks[i]
            for tid, ids in self.instances.items()
            if self._states[tid] is TaskState.RUNNING
            for i in ids
            if self._states[i] is TaskState.PENDING
        ]

    def mapped_outcome(self, tid: str) -> tuple[TaskState, bytes] | None:
        """A mapped task's final state and result (the list of its instances' results, in
        order) once every instance is final; None while some are not."""
        states = [self._states[i] for i in self.instances.get(tid, ())]
        if not all(s in FINISHED_TASK_STATES for s in states):
            return None
        failed = any(s in _FAILED_LIKE for s in states)
        parts = [self.results.get(i) or b"null" for i in self.instances.get(tid, ())]
        return (TaskState.FAILED if failed else TaskState.SUCCESS), b"[" + b",".join(parts) + b"]"

    def finish(
        self,
        rec: TaskRecord,
        state: TaskState,
        now: float,
        *,
        error: str | None = None,
        traceback: str | None = None,
    ) -> tuple[Settled, TaskRecord | None]:
        """Move a task to a final state; returns what its downstream tasks may do now, and the
        mapped task that this instance's end finished (to be recorded too), if any."""
        rec.finished_at = now
        if state is not TaskState.SUCCESS:
            rec.error, rec.traceback = error, traceback
        rec.awaiting_resume = False
        if self.cancelling:
            self._states[rec.task_id] = state
            return ([], []), None
        if rec.parent is None:
            return self.progress.finish(rec.task_id, state), None
        was_final = self._states[rec.task_id] in FINISHED_TASK_STATES
        self._states[rec.task_id] = state
        if not was_final:
            self._unfinished[rec.parent] -= 1
        if (
            self._unfinished[rec.parent] > 0
        ):  # O(1) per instance; the outcome is read once, at the end
            return ([], []), None
        outcome = self.mapped_outcome(rec.parent)
        if outcome is None:
            return ([], []), None
        return self.finish_mapped(rec.parent, outcome, now), self.tasks[rec.parent]

    def finish_mapped(self, tid: str, outcome: tuple[TaskState, bytes], now: float) -> Settled:
        """End a mapped task with its instances' combined outcome."""
        state, result = outcome
        parent = self.tasks[tid]
        parent.finished_at = now
        if state is TaskState.SUCCESS:
            parent.result = self.results[tid] = result
        else:
            failed = [i for i in self.instances[tid] if self._states[i] in _FAILED_LIKE]
            parent.error = f"{len(failed)} of {len(self.instances[tid])} instance(s) failed: " + (
                ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
            )
        return self.progress.finish(tid, state)

    def pause_on_failure(
        self, rec: TaskRecord, now: float, error: str | None, traceback: str | None
    ) -> list[TaskRecord]:
        """A failure with ``on_failure="pause"``: the run pauses; the task and everything waiting
        downstream of it hold until ``resume``. Returns the records whose state changed."""
        tid = rec.task_id
        rec.finished_at = now
        rec.error, rec.traceback = error, traceback
        rec.awaiting_resume = True
        self._states[tid] = TaskState.PAUSED
        changed = [rec]
        # a failed instance holds its mapped task's downstream tasks
        stack = list(self.progress.spec.downstream[rec.parent or tid])
        while stack:
            child = stack.pop()
            if self._states[child] is TaskState.PENDING:
                self._states[child] = TaskState.PAUSED
                changed.append(self.tasks[child])
                stack.extend(self.progress.spec.downstream[child])
        self.state = RunState.PAUSED
        self.note = f"paused: task {tid} failed; resume with `podium resume {self.run_id}`"
        return changed

    def resume(self) -> list[TaskRecord]:
        """Failed-and-paused tasks become pending with a fresh retry budget; held ones pending.
        Returns the records whose state changed; call ``start()`` next."""
        changed = []
        for tid, rec in self.tasks.items():
            if self._states[tid] is not TaskState.PAUSED:
                continue
            self._states[tid] = TaskState.PENDING
            if rec.awaiting_resume:
                rec.awaiting_resume = False
                rec.try_offset = rec.try_number
                rec.error = rec.traceback = None
                rec.finished_at = None
            changed.append(rec)
        self.state = RunState.RUNNING
        self.note = None
        return changed

    def cancel_waiting(self, rec: TaskRecord, reason: str, now: float) -> None:
        """A task that is not running is cancelled while its run is being cancelled."""
        self._states[rec.task_id] = TaskState.CANCELLED
        rec.awaiting_resume = False
        rec.finished_at = now
        rec.error = reason

    # -- views --------------------------------------------------------------------------------------

    def state_of(self, tid: str) -> TaskState:
        return self.tasks[tid].state

    def failed_tasks(self) -> list[str]:
        return [tid for tid, rec in self.tasks.items() if rec.state is TaskState.FAILED]

    def snapshot(self, source: RunSource, *, with_tasks: bool = False) -> Run:
        """The run as a ``Run``; task instances only on request (they cost O(tasks))."""
        return Run(
            run_id=self.run_id,
            dag_id=self.dag.dag_id,
            key=self.key,
            state=self.state,
            params=dict(self.params),
            logical_date=epoch_to_datetime(self.logical_date),
            trigger=self.trigger,
            event=self.event,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            note=self.note,
            seq=self.seq,
            tasks={tid: rec.snapshot() for tid, rec in self.tasks.items()} if with_tasks else {},
            _source=source,
        )


def instance_id(task_id: str, index: int) -> str:
    """The id of a mapped task's instance: ``process[3]``."""
    return f"{task_id}[{index}]"


def split_instance_id(task_id: str) -> tuple[str, int]:
    """``process[3]`` -> (``process``, 3); another id -> (the id, -1)."""
    if task_id.endswith("]") and "[" in task_id:
        base, _, index = task_id[:-1].rpartition("[")
        if index.isdigit():
            return base, int(index)
    return task_id, -1


def pauses_on_failure(dag: DAG, task_id: str) -> bool:
    """Whether a failure of ``task_id`` pauses its run (``on_failure="pause"``) instead of failing."""
    node = dag.tasks.get(task_id)
    return dag.on_failure == "pause" or (node is not None and node.options.on_failure == "pause")


_SPECS: dict[int, tuple[DAG, GraphSpec]] = {}


def graph_spec_of(dag: DAG) -> GraphSpec:
    """The state machine's view of a DAG (computed once per DAG object)."""
    cached = _SPECS.get(id(dag))
    if cached is not None and cached[0] is dag:
        return cached[1]
    spec = graph_spec(
        dag.order,
        {tid: node.upstream for tid, node in dag.tasks.items()},
        {tid: node.options.trigger_rule for tid, node in dag.tasks.items()},
    )
    _SPECS[id(dag)] = (dag, spec)
    return spec
