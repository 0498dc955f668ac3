"""``Process(workers=N)``: each try runs in a worker process of a warm pool, so CPU-bound tasks run
in parallel without holding the engine's GIL, and a task that crashes takes only its try down.

The pool (one per engine and ``Process`` setting) starts its workers when the engine starts and
stops them when it stops. A worker runs one try at a time:

- the function travels by reference (``module:qualname``) when the worker can import it, by value
  (cloudpickle) otherwise; each argument is cloudpickled, and one that cannot be fails the try before
  it starts, naming the argument and its type;
- the result comes back as JSON (the engine stores results as JSON anyway), an exception whole
  (with the worker's traceback as its cause);
- ``logging`` records and printed lines reach the try's log while it runs; ``ctx.checkpoint`` asks the
  engine to commit and waits for it;
- a worker that dies (segfault, OOM kill, ``os._exit``) fails its try with the signal or exit code
  named, and the pool starts a replacement;
- a timeout or a cancellation sends SIGTERM to the worker's process group (the task's ``finally``
  blocks run), then SIGKILL after ``grace`` seconds, and the worker is replaced.

Every worker is its own process group (``start_new_session``), and its PID is recorded in the state
file before it takes a try, so the next engine start reaps it after a kill -9 (``reaper.py``).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .. import serialization
from ..backoff import Backoff
from ..errors import RunnerError, WorkerDiedError
from . import wire
from .base import RunnerHost, TryCall
from .children import Child, commit_checkpoint, emit_log, remote_exception

log = logging.getLogger("podium.runners")

_ENGINE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the engine package


@dataclass(frozen=True, kw_only=True)
class Process:
    """Run tries in a warm pool of ``workers`` Python processes (default: 4).

    ``grace``: seconds a cancelled or timed-out try's worker gets between SIGTERM and SIGKILL.
    Equal settings share one pool per engine."""

    workers: int = 4
    grace: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise RunnerError(f"Process(workers=...) needs an int >= 1, got {self.workers!r}")
        if not self.grace >= 0:
            raise RunnerError(f"Process(grace=...) needs seconds >= 0, got {self.grace!r}")

    def open(self, host: RunnerHost) -> ProcessPool:
        return ProcessPool(self, host)


@dataclass(slots=True)
class _Reply:
    value: Any = None
    error: BaseException | None = None
    retire: bool = False


class _Worker:
    """One worker process (a ``Child``) and its framed pipe."""

    def __init__(self, child: Child) -> None:
        process = child.process
        assert process.stdin is not None and process.stdout is not None
        self.child = child
        self.pid = child.pid
        self._send = process.stdin
        self._receive = BufferedByteReceiveStream(process.stdout)

    async def send(self, frame: tuple[Any, ...]) -> None:
        await self._send.send(wire.encode(frame))

    async def receive(self) -> tuple[Any, ...] | None:
        """The next frame, or None once the worker's end is closed (it exited or died)."""
        try:
            header = await self._receive.receive_exactly(wire.HEADER.size)
            (size,) = wire.HEADER.unpack(header)
            return wire.decode(await self._receive.receive_exactly(size))
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            return None


class ProcessPool:
    """The open ``Process`` runner of one engine (an async context manager)."""

    def __init__(self, spec: Process, host: RunnerHost) -> None:
        self.spec = spec
        self._host = host
        self._idle_send, self._idle_receive = anyio.create_memory_object_stream[_Worker](
            spec.workers
        )
        self._live: dict[int, _Worker] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        """The PIDs of the live workers (idle or busy)."""
        return sorted(self._live)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for _ in range(self.spec.workers):
            self._tg.start_soon(self._refill)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closing = True
        self._tg.cancel_scope.cancel()  # workers still starting
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                self._idle_send.close()
                self._idle_receive.close()
                with anyio.move_on_after(max(self.spec.grace, 1.0) + 5):
                    async with anyio.create_task_group() as tg:
                        for worker in list(self._live.values()):
                            tg.start_soon(self._stop, worker)

    # -- running a try ------------------------------------------------------------------------------

    async def call(self, call: TryCall) -> Any:
        job = wire.job_for(call)  # a RunnerError here fails the try before it starts
        try:
            worker = await self._idle_receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise RunnerError("the process pool is closed") from None
        reply: _Reply | None = None
        try:
            reply = await self._exchange(worker, job, call)
        finally:
            if reply is not None and not reply.retire:
                self._idle_send.send_nowait(worker)
            else:  # died, cancelled, timed out, or asked to be replaced
                with anyio.CancelScope(shield=True):
                    await self._stop(worker, graceful=reply is not None)
                if not self._closing and self._tg is not None:
                    self._tg.start_soon(self._refill)
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def _exchange(self, worker: _Worker, job: wire.Job, call: TryCall) -> _Reply:
        await worker.send(("run", job))
        while True:
            frame = await worker.receive()
            if frame is None:
                reason = await worker.child.exit_reason()
                raise WorkerDiedError(f"worker process died: {reason}")
            kind = frame[0]
            if kind == "log":
                _, name, levelno, _levelname, message, created = frame
                emit_log(name, levelno, message, created)
            elif kind == "checkpoint":
                value = serialization.loads(frame[1])
                await worker.send(("ack", await commit_checkpoint(call.context, value)))
            elif kind == "ok":
                return _Reply(value=serialization.loads(frame[1]), retire=frame[2])
            elif kind == "raised":
                return _Reply(error=_rebuild(frame), retire=frame[5])
            else:
                raise RunnerError(f"unexpected frame from worker {worker.pid}: {kind!r}")

    # -- workers ------------------------------------------------------------------------------------

    async def _refill(self) -> None:
        """Start one worker and make it available; on failure, log and try again."""
        delays = Backoff(0.5, cap=30.0).delays()
        while True:
            try:
                worker = await self._spawn()
            except Exception:
                delay = next(delays)
                log.exception("cannot start a worker process; trying again in %.1fs", delay)
                await anyio.sleep(delay)
                continue
            self._idle_send.send_nowait(worker)
            return

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_ENGINE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        )
        child = await Child.start(
            [sys.executable, "-m", "engine.runners.worker"], ledger=self._host.ledger, env=env
        )
        worker = _Worker(child)
        self._live[worker.pid] = worker
        try:
            root_level = logging.getLogger().getEffectiveLevel()
            await worker.send(("init", list(sys.path), root_level, self._host.max_log_bytes))
            ready = await worker.receive()
            if ready is None or ready[0] != "ready":
                reason = await child.exit_reason()
                raise RunnerError(f"worker process failed to start: {reason}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(worker, graceful=False)
            raise
        return worker

    async def _stop(self, worker: _Worker, *, graceful: bool = True) -> None:
        """End a worker (``Child.stop``: an idle one exits when its pipe closes, a busy one gets
        SIGTERM, then SIGKILL of its group after the grace period) and forget it."""
        await worker.child.stop(grace=self.spec.grace, graceful=graceful)
        self._live.pop(worker.pid, None)


def _rebuild(frame: tuple[Any, ...]) -> BaseException:
    """The exception a task raised in its worker, with the worker's traceback as its cause."""
    _, payload, name, message, text, _retire = frame
    loaded: Any = None
    if payload is not None:
        try:
            loaded = pickle.loads(payload)
        except Exception:
            loaded = None
    return remote_exception(name, message, text, loaded)
