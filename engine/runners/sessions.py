"""``Runners``: the open runner sessions of one engine, and which one runs a given task.

A task runs on its own ``runner=``, else its DAG's, else the engine's, else ``Local()`` (the
executor's built-in path: async on the loop, sync in a thread). Each distinct runner any of them
names is opened once, when the engine starts, after the workers a killed predecessor left behind
are reaped; all are closed when the engine stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import RunnerError
from .base import Local, Runner, RunnerHost, RunnerSession, TryCall
from .reaper import ProcessLedger, reap_leftovers

if TYPE_CHECKING:
    from ..dag import DAG
    from ..dag_builder import TaskNode
    from ..store import Store


def runner_of(dag: DAG, node: TaskNode, default: Runner | None) -> Runner | None:
    """The runner ``node`` runs on, or None for the executor's built-in path."""
    runner = node.options.runner or dag.runner or default
    return None if runner is None or isinstance(runner, Local) else runner


class Runners:
    def __init__(
        self,
        *,
        dags: Mapping[str, DAG],
        default: Runner | None,
        store: Store,
        max_log_bytes: int,
    ) -> None:
        self._dags = dags
        self._default = default
        self._store = store
        self._max_log_bytes = max_log_bytes
        self._sessions: dict[Runner, RunnerSession] = {}

    def wanted(self) -> list[Runner]:
        """Every runner the engine's DAGs use (besides ``Local``), each once."""
        found: dict[Runner, None] = {}
        for d in self._dags.values():
            for node in d.tasks.values():
                runner = runner_of(d, node, self._default)
                if runner is not None:
                    found[runner] = None
        return list(found)

    def session_for(self, dag: DAG, node: TaskNode) -> RunnerSession | None:
        runner = runner_of(dag, node, self._default)
        if runner is None:
            return None
        return self._sessions.get(runner) or _NotOpen(runner)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Reap leftovers, open every runner, report started, and keep them open until cancelled."""
        await reap_leftovers(self._store)
        host = RunnerHost(ledger=ProcessLedger(self._store), max_log_bytes=self._max_log_bytes)
        try:
            async with AsyncExitStack() as stack:
                for runner in self.wanted():
                    self._sessions[runner] = await stack.enter_async_context(runner.open(host))
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._sessions.clear()


class _NotOpen:
    """Stands for a runner the engine did not open (a DAG registered after it started): its tries
    fail with a clear message instead of reaching the engine."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def call(self, call: TryCall) -> Any:
        raise RunnerError(f"task {call.task_id!r}: runner {self._runner!r} is not open")
