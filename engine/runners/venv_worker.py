"""The engine's end of one warm ``Virtualenv`` worker: the environment's Python running
``venv_bootstrap.py``, serving one try after another over JSON lines (the bootstrap's docstring has
the channel).

What the worker writes to its stderr below Python (a C library, a crash) is read for the worker's
whole life: during a try into that try's log as warnings, between tries into the engine's log. The
bootstrap ends each try's stderr output with the job's ``end_marker``, and a try returns only once
that line has been read, so no line of a try lands in another's log. A worker whose marker never
comes (its task closed or took over file descriptor 2) is replaced after the try.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from .. import serialization
from ..errors import ResultError, RunnerError, WorkerDiedError
from ..logs import TryLog, current_try
from .base import TryCall, WorkerLedger
from .children import Child, commit_checkpoint, emit_log, remote_exception
from .pool import Reply
from .venv_build import BuiltEnv

log = logging.getLogger("podium.runners")

BOOTSTRAP = Path(__file__).with_name("venv_bootstrap.py")
_MAX_LINE = 1 << 30
_STDERR_LINES = 20  # the last lines of stderr a death message quotes
_LAST_WORDS = 5.0  # seconds to wait for a dead worker's stderr, and for a try's end marker


class VenvWorker:
    """One worker process of a virtualenv, its channel, and its stderr reader."""

    def __init__(self, child: Child) -> None:
        process = child.process
        assert process.stdin is not None and process.stdout is not None
        self.child = child
        self.pid = child.pid
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._tail: deque[str] = deque(maxlen=_STDERR_LINES)
        self._stderr_done = anyio.Event()
        self._try: TryLog | None = None  # whose log gets stderr lines (None: between tries)
        self._marker: str | None = None
        self._marked = anyio.Event()

    @classmethod
    async def start(
        cls, env: BuiltEnv, *, ledger: WorkerLedger, tg: anyio.abc.TaskGroup
    ) -> VenvWorker:
        """Start a worker of ``env`` (its stderr read in ``tg``) and wait for it to be ready."""
        child = await Child.start(
            [str(env.python), "-I", str(BOOTSTRAP)],
            ledger=ledger,
            env=_child_env(env),
            stderr=subprocess.PIPE,
        )
        worker = cls(child)
        tg.start_soon(worker._read_stderr)
        try:
            ready = await worker._receive()
            if ready is None or ready[0] != "ready":
                raise await worker._died("virtualenv worker process failed to start")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await child.stop(grace=0, graceful=False)
            raise
        return worker

    async def run_try(self, job: dict[str, Any], call: TryCall) -> Reply:
        """Send the job, serve log lines and checkpoints, and return the try's ``Reply`` once the
        worker has answered and its stderr output for the try has been read."""
        self._try = current_try.get()
        self._marker = f"podium-end-of-try-{secrets.token_hex(16)}"
        self._marked = anyio.Event()
        self._tail.clear()
        try:
            reply = await self._exchange({**job, "end_marker": self._marker}, call)
            with anyio.move_on_after(_LAST_WORDS):
                await self._marked.wait()
            if not self._marked.is_set():
                log.warning(
                    "virtualenv worker %d did not end task %r's stderr output; replacing it",
                    self.pid,
                    call.task_id,
                )
                reply.retire = True
            return reply
        finally:
            self._try = None
            self._marker = None

    async def _exchange(self, job: dict[str, Any], call: TryCall) -> Reply:
        try:
            await self._stdin.send(serialization.dumps(job) + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # it died: said below
        while True:
            message = await self._receive()
            if message is None:
                raise await self._died("virtualenv worker process died")
            kind = message[0]
            if kind == "log":
                _, name, levelno, text, created = message
                emit_log(name, levelno, text, created)
            elif kind == "checkpoint":
                error = await commit_checkpoint(call.context, message[1])
                await self._stdin.send(orjson.dumps(["ack", error]) + b"\n")
            elif kind == "ok":
                return Reply(value=message[1], retire=bool(message[2]))
            elif kind == "raised":
                return Reply(error=_rebuild(message), retire=bool(message[4]))
            else:
                raise RunnerError(f"unexpected message from virtualenv worker {self.pid}: {kind!r}")

    async def _receive(self) -> Any:
        """The worker's next message, or None once its stdout is closed (it exited or died)."""
        try:
            line = await self._stdout.receive_until(b"\n", _MAX_LINE)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            return None
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, list) or not message:
            raise RunnerError(
                f"unreadable message from virtualenv worker {self.pid}: {line[:200]!r}"
            )
        return message

    async def _died(self, what: str) -> WorkerDiedError:
        reason = await self.child.exit_reason()
        with anyio.move_on_after(_LAST_WORDS):  # its last words (a process it left may hold stderr)
            await self._stderr_done.wait()
        said = "\n".join(self._tail)
        return WorkerDiedError(
            f"{what}: {reason}" + (f"; its stderr ended with:\n{said}" if said else "")
        )

    async def _read_stderr(self) -> None:
        """Until the worker's stderr closes: each line into the running try's log as a warning (the
        last lines kept for a death message), or into the engine's log between tries."""
        stream = self.child.process.stderr
        assert stream is not None
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                try:
                    raw = await reader.receive_until(b"\n", 64 * 1024)
                except anyio.DelimiterNotFound:
                    raw = await reader.receive(64 * 1024)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                line = raw.decode("utf-8", "replace")
                if self._marker is not None and line == self._marker:
                    self._marked.set()
                    continue
                self._tail.append(line)
                token = current_try.set(self._try)  # this task may have started in a try's
                try:
                    if self._try is not None:
                        emit_log("podium.task.stderr", logging.WARNING, line, time.time())
                    else:
                        log.warning("virtualenv worker %d wrote between tries: %s", self.pid, line)
                finally:
                    current_try.reset(token)
        finally:
            self._stderr_done.set()


def _rebuild(message: list[Any]) -> BaseException:
    """A builtin exception (``ValueError``...) comes back as itself, so retry rules by type work;
    other types as a ``RunnerError`` naming them; the task's traceback is the cause."""
    _, name, text, traceback_text, _retire = message
    loaded: BaseException | None = None
    if name == "ResultError":
        loaded = ResultError(text)
    else:
        kind = getattr(builtins, name, None) if "." not in name else None
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                loaded = kind(text)
            except Exception:
                loaded = None
    return remote_exception(name, text, traceback_text, loaded)


def _child_env(env: BuiltEnv) -> dict[str, str]:
    """The engine's environment, with the virtualenv's ``bin`` first on ``PATH``."""
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out["VIRTUAL_ENV"] = str(env.path)
    out["PATH"] = os.pathsep.join([str(env.path / "bin"), out.get("PATH", "")])
    return out


__all__ = ["BOOTSTRAP", "VenvWorker"]
