"""In-memory state of the runs an engine is serving (the mutable mirror of their stored rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from .dag import DAG, TaskNode
from .limits import LimitKey
from .models import Run, TaskInstance, epoch_to_datetime
from .scheduler import GraphSpec, RunProgress, graph_spec
from .states import RunState, TaskState

if TYPE_CHECKING:
    from .models import RunSource


class TaskRecord:
    """One task instance of an active run."""

    __slots__ = (
        "cancel_reason",
        "checkpoint",
        "error",
        "finished_at",
        "next_try_at",
        "node",
        "queued_at",
        "result",
        "scope",
        "settled",
        "started_at",
        "state",
        "task_id",
        "traceback",
        "try_number",
        "try_offset",
    )

    def __init__(self, node: TaskNode) -> None:
        self.node = node
        self.task_id = node.task_id
        self.state = TaskState.PENDING
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

    def load(self, row: Any) -> None:
        (_, _, state, self.try_number, self.queued_at, self.started_at, self.finished_at,
         self.next_try_at, self.result, self.error, self.traceback, self.checkpoint,
         self.try_offset) = row  # fmt: skip
        self.state = TaskState(state)

    def limit_keys(self, dag_id: str) -> tuple[LimitKey, ...]:
        options = self.node.options
        keys: list[LimitKey] = [("dag", dag_id), ("task", dag_id, self.task_id)]
        if options.pool is not None:
            keys.append(("pool", options.pool))
        return tuple(keys)

    def snapshot(self) -> TaskInstance:
        from . import serialization

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
    """A run this engine is serving: its DAG, params, task records and dependency progress."""

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
        self.tasks: dict[str, TaskRecord] = {}
        self.progress: RunProgress = RunProgress(graph_spec_of(dag))
        self.results: dict[str, bytes | None] = {}
        self.in_flight = 0
        self.admitted = False
        self.cancelling = False
        self.finishing = False
        self.done = anyio.Event()

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
