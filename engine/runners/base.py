"""Where the body of a try runs: the ``Runner`` protocol.

A ``Runner`` is a setting (a frozen, hashable description such as ``Process(workers=4)``), given per
task (``@task(runner=...)``), per DAG (``@dag(runner=...)``) or per engine (``Engine(runner=...)``).
While an engine serves, each distinct runner it uses has one open ``RunnerSession`` (a pool of worker
processes, say), entered when the engine starts and closed when it stops.

The executor hands a session a ``TryCall`` (the function, its resolved arguments, the try's
``Context``) once the try's ``running`` row is committed, and records whatever it returns or raises
exactly as for a task run in the engine's own process. So the durability rules (start after commit,
result committed before downstream) stay in the dispatcher and the run driver; a runner only runs a
body. Cancellation reaches a session as the cancellation of its ``call``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

import anyio

if TYPE_CHECKING:
    from ..context import Context
    from ..dag_builder import TaskNode


@dataclass(frozen=True, slots=True)
class TryCall:
    """The body of one try, as the executor hands it to a runner."""

    node: TaskNode
    args: list[Any]
    kwargs: dict[str, Any]
    context: Context | None  # the try's Context, if the task asked for one (it is in args/kwargs)
    run_id: str = ""  # which try this is (a Dask key names it): the run, and the try's number
    try_number: int = 0

    @property
    def task_id(self) -> str:
        return self.node.task_id

    def argument_names(self) -> list[str]:
        """The parameter name of each positional argument, in order (``*args[i]`` past them)."""
        names = [
            name
            for name, p in self.node.definition.signature.parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return [names[i] if i < len(names) else f"*args[{i}]" for i in range(len(self.args))]


class WorkerLedger(Protocol):
    """Where a runner records the processes it starts, so a restart after a kill -9 can reap them
    (``engine.runners.reaper``)."""

    async def started(self, pid: int) -> None:
        """Record ``pid`` (with its start time); returns once that is committed."""

    def exited(self, pid: int) -> None:
        """Forget ``pid``: it has exited and been waited for."""


T = TypeVar("T")


@dataclass(slots=True)
class _Shared:
    manager: AbstractAsyncContextManager[Any]
    value: Any
    users: int = 0


class SharedResources:
    """What several runner sessions of one engine share (the warm pool of a virtualenv, whatever
    setting names it): each under a key, entered by its first user and exited when its last user
    leaves."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Shared] = {}
        self._lock = anyio.Lock()

    async def enter(self, key: Hashable, make: Callable[[], AbstractAsyncContextManager[T]]) -> T:
        """The resource under ``key``, entered from ``make()`` if no session uses it yet; each
        ``enter`` is paired with a ``leave``."""
        async with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                manager = make()
                entry = _Shared(manager, await manager.__aenter__())
                self._entries[key] = entry
            entry.users += 1
        return cast(T, entry.value)

    async def leave(self, key: Hashable) -> None:
        """One user of ``key`` is done with it; the last one exits it."""
        entry = self._entries[key]
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]
            await entry.manager.__aexit__(None, None, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerHost:
    """What the engine lends a runner's session."""

    ledger: WorkerLedger
    max_log_bytes: int  # a try's log budget: a worker stops sending lines past it
    shared: SharedResources = field(default_factory=SharedResources)  # one per engine


class RunnerSession(Protocol):
    """An open runner, for one engine: runs try bodies until the engine stops."""

    async def call(self, call: TryCall) -> Any:
        """Run the body; return its value or raise what it raised (or a ``RunnerError``)."""


@runtime_checkable
class Runner(Protocol):
    """A description of where a try runs; hashable (equal runners share one session)."""

    def open(self, host: RunnerHost) -> AbstractAsyncContextManager[RunnerSession]:
        """The session of this runner for one engine (entered when the engine starts)."""


@dataclass(frozen=True, slots=True)
class Local:
    """The default runner: async functions on the engine's event loop, sync functions in its worker
    threads (``Engine(max_threads=...)``). Use it to keep one task in the engine when its DAG or the
    engine names another runner. It has no session: the executor runs these bodies itself."""

    def open(self, host: RunnerHost) -> AbstractAsyncContextManager[RunnerSession]:
        raise TypeError("Local() runs in the engine itself and has no session")


__all__ = [
    "Local",
    "Runner",
    "RunnerHost",
    "RunnerSession",
    "SharedResources",
    "TryCall",
    "WorkerLedger",
]
