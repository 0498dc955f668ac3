"""A pool of warm worker processes, one try per worker at a time: what ``Process`` (workers running
``engine.runners.worker``) and ``Virtualenv`` (its environment's interpreter running
``venv_bootstrap.py``) share. The kind of worker (how it starts, how a try is exchanged with it)
is theirs; when workers start, are reused, replaced and stopped is the pool's.

- ``size`` workers at most, each a ``Child`` (its own process group, its PID in the ledger). An
  ``eager`` pool starts them all when it opens (``Process``); a lazy one starts a worker when a
  try finds none idle and the pool has room, in that try's own task, so a worker that cannot start
  fails the try with the reason instead of leaving it waiting (``Virtualenv``: its environment may
  still be building when the engine starts, and an environment no task uses costs nothing).
- A try takes the idle worker used last (its imports are the warmest), else starts one if there
  is room, else waits for one to come back.
- A worker goes back to idle after a try that ended normally. One that died, was cancelled or
  timed out mid-try (SIGTERM to its group, ``grace`` seconds, SIGKILL), or asked to be retired
  (its task changed a process-wide limit), is stopped and replaced in the background; if the
  replacement cannot start, that is logged and the room is left for the next try to start one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
import anyio.abc

from ..errors import RunnerError
from .children import Child

log = logging.getLogger("podium.runners")


class PoolWorker(Protocol):
    """A worker process the pool can hand out: its ``Child``."""

    @property
    def child(self) -> Child: ...


W = TypeVar("W", bound=PoolWorker)


@dataclass(slots=True)
class Reply:
    """How a try ended on its worker: a value or an exception, and whether to retire the worker."""

    value: Any = None
    error: BaseException | None = None
    retire: bool = False


class WorkerPool(Generic[W]):
    """Up to ``size`` warm workers made by ``spawn`` (an async context manager; ``run`` hands a
    worker to one try's exchange)."""

    def __init__(
        self,
        *,
        what: str,
        size: int,
        grace: float,
        spawn: Callable[[], Awaitable[W]],
        eager: bool,
    ) -> None:
        self.what = what  # "process", "virtualenv": named in messages
        self.size = size  # may grow while open (a second setting sharing the pool asks for more)
        self.grace = grace  # for the workers still alive when the pool closes
        self._spawn = spawn
        self._eager = eager
        self._idle: list[W] = []
        self._live: dict[int, W] = {}
        self._starting = 0
        self._changed = anyio.Event()  # set (and replaced) whenever a worker or room frees up
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        """The PIDs of the live workers (idle or busy)."""
        return sorted(self._live)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self._eager:
            for _ in range(self.size):
                self._starting += 1
                self._tg.start_soon(self._replace)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closing = True
        self._notify()  # tries waiting for a worker fail
        self._tg.cancel_scope.cancel()  # workers still starting
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                self._idle.clear()
                with anyio.move_on_after(max(self.grace, 1.0) + 5):
                    async with anyio.create_task_group() as tg:
                        for worker in list(self._live.values()):
                            tg.start_soon(self._stop, worker, self.grace, True)

    async def run(self, exchange: Callable[[W], Awaitable[Reply]], *, grace: float) -> Any:
        """Run one try: ``exchange`` with a worker, then return its value or raise its error. A
        worker the exchange did not finish with (it died, or the try was cancelled) is stopped
        (SIGTERM, ``grace``, SIGKILL) and replaced."""
        worker = await self._acquire()
        reply: Reply | None = None
        try:
            reply = await exchange(worker)
        finally:
            if reply is not None and not reply.retire and not self._closing:
                self._idle.append(worker)
                self._notify()
            else:  # died, cancelled, timed out, or asked to be replaced
                with anyio.CancelScope(shield=True):
                    await self._stop(worker, grace, reply is not None)
                if not self._closing and self._tg is not None:
                    self._starting += 1
                    self._tg.start_soon(self._replace)
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def _acquire(self) -> W:
        while True:
            if self._closing:
                raise RunnerError(f"the {self.what} pool is closed")
            if self._idle:
                return self._idle.pop()
            if len(self._live) + self._starting < self.size:
                self._starting += 1
                try:
                    return await self._start()  # in the try's task: its failure is the try's
                finally:
                    self._notify()  # a failed start leaves room for a waiting try
            await self._changed.wait()

    async def _start(self) -> W:
        """Start one worker (counted in ``_starting`` by the caller) and register it."""
        try:
            worker = await self._spawn()
        finally:
            self._starting -= 1
        self._live[worker.child.pid] = worker
        if self._closing:
            with anyio.CancelScope(shield=True):
                await self._stop(worker, self.grace, True)
            raise RunnerError(f"the {self.what} pool is closed")
        return worker

    async def _replace(self) -> None:
        """Start a worker in the background (when the pool opens, or for one that was stopped)
        and make it idle; if it cannot start, say so and leave the room to the next try."""
        try:
            worker = await self._start()
        except Exception:
            if not self._closing:
                log.exception("cannot start a %s worker; the next try will start one", self.what)
            self._notify()
            return
        self._idle.append(worker)
        self._notify()

    async def _stop(self, worker: W, grace: float, graceful: bool) -> None:
        """End a worker (``Child.stop``: an idle one exits when its pipe closes, a busy one gets
        SIGTERM, then SIGKILL of its group after the grace period) and forget it."""
        await worker.child.stop(grace=grace, graceful=graceful)
        self._live.pop(worker.child.pid, None)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


__all__ = ["PoolWorker", "Reply", "WorkerPool"]
