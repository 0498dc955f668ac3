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
from anyio.streams.buffered import BufferedByteReceiveStream

from .. import serialization
from ..errors import RunnerError, WorkerDiedError
from . import wire
from .base import RunnerHost, TryCall
from .children import Child, commit_checkpoint, emit_log, remote_exception
from .pool import Reply, WorkerPool

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
    """The open ``Process`` runner of one engine (an async context manager): a ``WorkerPool``
    started whole when the engine starts."""

    def __init__(self, spec: Process, host: RunnerHost) -> None:
        self.spec = spec
        self._host = host
        self._pool = WorkerPool[_Worker](
            what="process", size=spec.workers, grace=spec.grace, spawn=self._spawn, eager=True
        )

    @property
    def pids(self) -> list[int]:
        """The PIDs of the live workers (idle or busy)."""
        return self._pool.pids

    async def __aenter__(self) -> Self:
        await self._pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._pool.__aexit__(exc_type, exc, tb)

    async def call(self, call: TryCall) -> Any:
        job = wire.job_for(call)  # a RunnerError here fails the try before it starts
        return await self._pool.run(
            lambda worker: self._exchange(worker, job, call), grace=self.spec.grace
        )

    async def _exchange(self, worker: _Worker, job: wire.Job, call: TryCall) -> Reply:
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
                return Reply(value=serialization.loads(frame[1]), retire=frame[2])
            elif kind == "raised":
                return Reply(error=_rebuild(frame), retire=frame[5])
            else:
                raise RunnerError(f"unexpected frame from worker {worker.pid}: {kind!r}")

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_ENGINE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        )
        child = await Child.start(
            [sys.executable, "-m", "engine.runners.worker"], ledger=self._host.ledger, env=env
        )
        worker = _Worker(child)
        try:
            root_level = logging.getLogger().getEffectiveLevel()
            await worker.send(("init", list(sys.path), root_level, self._host.max_log_bytes))
            ready = await worker.receive()
            if ready is None or ready[0] != "ready":
                reason = await child.exit_reason()
                raise RunnerError(f"worker process failed to start: {reason}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await child.stop(grace=self.spec.grace, graceful=False)
            raise
        return worker


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
