"""The run state machine: which tasks of a run may start, which are skipped, and how the run ends.

Pure logic over plain data: no clock, no I/O, no event loop. Each task keeps counters of its upstream
outcomes, so deciding after a task finishes costs O(downstream), not O(tasks), and a join over a
thousand upstream tasks stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from .states import FINISHED_TASK_STATES, RunState, TaskState, TriggerRule


class Verdict(Enum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """The shape the state machine needs: edges and trigger rules, by task id, in topological order."""

    order: tuple[str, ...]
    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]]
    trigger_rule: Mapping[str, TriggerRule]


_FAILED_LIKE = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})


def evaluate(
    rule: TriggerRule, total: int, done: int, success: int, failed: int, skipped: int
) -> Verdict:
    """Trigger-rule verdict for a pending task from counts of its upstream tasks' final states.

    ``failed`` counts failed, upstream_failed and cancelled upstreams. Semantics follow Airflow:
    ``all_success`` is skipped when an upstream was skipped and fails upstream when one failed.
    """
    if total == 0 or rule is TriggerRule.ALWAYS:
        return Verdict.RUN
    if rule is TriggerRule.ALL_SUCCESS:
        if failed:
            return Verdict.UPSTREAM_FAILED
        if skipped:
            return Verdict.SKIP
        return Verdict.RUN if success == total else Verdict.WAIT
    if rule is TriggerRule.ALL_FAILED:
        if success or skipped:
            return Verdict.SKIP
        return Verdict.RUN if failed == total else Verdict.WAIT
    if rule is TriggerRule.ALL_DONE:
        return Verdict.RUN if done == total else Verdict.WAIT
    if rule is TriggerRule.ONE_SUCCESS:
        if success:
            return Verdict.RUN
        if done == total:
            return Verdict.UPSTREAM_FAILED if failed else Verdict.SKIP
        return Verdict.WAIT
    if rule is TriggerRule.ONE_FAILED:
        if failed:
            return Verdict.RUN
        return Verdict.SKIP if done == total else Verdict.WAIT
    if rule is TriggerRule.NONE_FAILED:
        if failed:
            return Verdict.UPSTREAM_FAILED
        return Verdict.RUN if done == total else Verdict.WAIT
    raise AssertionError(f"unhandled trigger rule {rule}")


class RunProgress:
    """Dependency bookkeeping for one run.

    ``start()`` and ``finish(task_id, state)`` return ``(ready, resolved)``: tasks that may start now, and
    tasks the trigger rules settled without running (``skipped`` / ``upstream_failed``), which the caller
    records. ``outcome()`` is the run's final state once every task is finished.
    """

    __slots__ = ("_counts", "_finished", "_n_cancelled", "_n_failed", "spec", "states")

    def __init__(self, spec: GraphSpec, states: dict[str, TaskState] | None = None) -> None:
        self.spec = spec
        # ``states`` is used as is, not copied: its owner (``ActiveRun``) and the scheduler share it.
        self.states: dict[str, TaskState] = (
            states if states is not None else dict.fromkeys(spec.order, TaskState.PENDING)
        )
        for tid in spec.order:
            self.states.setdefault(tid, TaskState.PENDING)
        # per task: [done, success, failed, skipped] over its upstream tasks
        self._counts: dict[str, list[int]] = {tid: [0, 0, 0, 0] for tid in spec.order}
        self._finished = 0
        self._n_failed = 0
        self._n_cancelled = 0
        for tid in spec.order:
            state = self.states[tid]
            if state in FINISHED_TASK_STATES:
                self._count_finished(tid, state)

    def _count_finished(self, tid: str, state: TaskState) -> None:
        self._finished += 1
        if state is TaskState.FAILED:
            self._n_failed += 1
        elif state is TaskState.CANCELLED:
            self._n_cancelled += 1
        for child in self.spec.downstream[tid]:
            c = self._counts[child]
            c[0] += 1
            if state is TaskState.SUCCESS:
                c[1] += 1
            elif state in _FAILED_LIKE:
                c[2] += 1
            elif state is TaskState.SKIPPED:
                c[3] += 1

    def _verdict(self, tid: str) -> Verdict:
        done, success, failed, skipped = self._counts[tid]
        return evaluate(
            self.spec.trigger_rule[tid],
            len(self.spec.upstream[tid]),
            done,
            success,
            failed,
            skipped,
        )

    def start(self) -> tuple[list[str], list[tuple[str, TaskState]]]:
        """Evaluate every pending task (a new run, or a run reloaded after a restart)."""
        return self._settle(tid for tid in self.spec.order if self.states[tid] is TaskState.PENDING)

    def finish(self, tid: str, state: TaskState) -> tuple[list[str], list[tuple[str, TaskState]]]:
        """Record that ``tid`` reached the final ``state``; evaluate its downstream tasks."""
        if state not in FINISHED_TASK_STATES:
            raise ValueError(f"{state} is not a final task state")
        previous = self.states[tid]
        if previous in FINISHED_TASK_STATES:
            raise ValueError(f"task {tid} is already finished ({previous})")
        self.states[tid] = state
        self._count_finished(tid, state)
        return self._settle(self.spec.downstream[tid])

    def set_state(self, tid: str, state: TaskState) -> None:
        """Record a non-final transition (queued, running, up_for_retry, pending)."""
        if state in FINISHED_TASK_STATES:
            raise ValueError("use finish() for final states")
        self.states[tid] = state

    def _settle(self, candidates: Iterable[str]) -> tuple[list[str], list[tuple[str, TaskState]]]:
        ready: list[str] = []
        resolved: list[tuple[str, TaskState]] = []
        stack = list(candidates)
        stack.reverse()
        while stack:
            tid = stack.pop()
            if self.states[tid] is not TaskState.PENDING:
                continue
            verdict = self._verdict(tid)
            if verdict is Verdict.WAIT:
                continue
            if verdict is Verdict.RUN:
                self.states[tid] = TaskState.QUEUED
                ready.append(tid)
                continue
            final = TaskState.SKIPPED if verdict is Verdict.SKIP else TaskState.UPSTREAM_FAILED
            self.states[tid] = final
            self._count_finished(tid, final)
            resolved.append((tid, final))
            stack.extend(reversed(self.spec.downstream[tid]))
        return ready, resolved

    @property
    def finished(self) -> bool:
        return self._finished == len(self.spec.order)

    def outcome(self) -> RunState | None:
        """The run's final state once all tasks are final: failed if any task failed, else success."""
        if not self.finished:
            return None
        if self._n_failed:
            return RunState.FAILED
        if self._n_cancelled:
            return RunState.CANCELLED
        return RunState.SUCCESS


def graph_spec(
    order: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    trigger_rule: Mapping[str, TriggerRule] | None = None,
) -> GraphSpec:
    """Build a ``GraphSpec`` from upstream lists (downstream lists are derived)."""
    downstream: dict[str, list[str]] = {tid: [] for tid in order}
    for tid in order:
        for up in upstream.get(tid, ()):
            downstream[up].append(tid)
    return GraphSpec(
        order=tuple(order),
        upstream={tid: tuple(upstream.get(tid, ())) for tid in order},
        downstream={tid: tuple(v) for tid, v in downstream.items()},
        trigger_rule={tid: (trigger_rule or {}).get(tid, TriggerRule.ALL_SUCCESS) for tid in order},
    )
