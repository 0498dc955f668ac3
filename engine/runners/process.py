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
import signal
import subprocess
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
from ..errors import ResultError, RunnerError, WorkerDiedError
from . import wire
from .base import RunnerHost, TryCall

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


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (set as its ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}" if self.args else ""


@dataclass(slots=True)
class _Reply:
    value: Any = None
    error: BaseException | None = None
    retire: bool = False


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.pid = process.pid
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

    async def exit_reason(self) -> str:
        code = await self.process.wait()
        return describe_exit(code)

    def signal_group(self, signum: signal.Signals) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already


def describe_exit(code: int) -> str:
    """``SIGSEGV`` for a process killed by a signal, ``exit code 3`` otherwise."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


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
                raise WorkerDiedError(f"worker process died: {await worker.exit_reason()}")
            kind = frame[0]
            if kind == "log":
                _, name, levelno, _levelname, message, created = frame
                record = logging.LogRecord(name, levelno, "", 0, message, None, None)
                record.created = created
                logging.getLogger(name).handle(record)  # into the try's log, as if logged here
            elif kind == "checkpoint":
                error: str | None = None
                try:
                    if call.context is None:
                        raise RunnerError("the task has no Context to checkpoint with")
                    await call.context.checkpoint(serialization.loads(frame[1]))
                except (ResultError, RunnerError) as exc:
                    error = str(exc)
                await worker.send(("ack", error))
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
        process = await anyio.open_process(
            [sys.executable, "-m", "engine.runners.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,  # its own process group: killed whole, never by our Ctrl-C
            env=env,
        )
        worker = _Worker(process)
        self._live[worker.pid] = worker
        try:
            with anyio.CancelScope(shield=True):
                await self._host.ledger.started(worker.pid)  # committed before it takes a try
            root_level = logging.getLogger().getEffectiveLevel()
            await worker.send(("init", list(sys.path), root_level, self._host.max_log_bytes))
            ready = await worker.receive()
            if ready is None or ready[0] != "ready":
                raise RunnerError(f"worker process failed to start: {await worker.exit_reason()}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop(worker, graceful=False)
            raise
        return worker

    async def _stop(self, worker: _Worker, *, graceful: bool = True) -> None:
        """End a worker: close its pipe (an idle worker exits) or SIGTERM its group; SIGKILL the
        group after the grace period; wait for it and forget its PID."""
        process = worker.process
        if process.returncode is None:
            if graceful and process.stdin is not None:
                await process.stdin.aclose()  # an idle worker exits at the end of its input
            else:
                worker.signal_group(signal.SIGTERM)
            with anyio.move_on_after(self.spec.grace):
                await process.wait()
        worker.signal_group(signal.SIGKILL)  # whatever is left of its group, the task's children
        await process.wait()
        await process.aclose()
        self._live.pop(worker.pid, None)
        self._host.ledger.exited(worker.pid)


def _rebuild(frame: tuple[Any, ...]) -> BaseException:
    """The exception a task raised in its worker, with the worker's traceback as its cause."""
    _, payload, name, message, text, _retire = frame
    loaded: Any = None
    if payload is not None:
        try:
            loaded = pickle.loads(payload)
        except Exception:
            loaded = None
    exc: BaseException
    if isinstance(loaded, (Exception, SystemExit)):  # never a KeyboardInterrupt in the engine
        exc = loaded
    else:
        exc = RunnerError(f"{name}: {message}" if message else name)
    exc.__cause__ = RemoteTraceback(text)
    return exc
