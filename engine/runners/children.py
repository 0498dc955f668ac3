"""What the runners that start processes share (``Process``'s workers, ``Virtualenv``'s task
processes): a child in its own process group, recorded in the engine's ledger while it lives, and
stopped with SIGTERM, a grace period, then SIGKILL of its whole group; and the engine's end of the
messages a child sends while a try runs (log records, checkpoints)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from ..context import Context
from ..errors import ResultError, RunnerError
from .base import WorkerLedger


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process (set as its ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}" if self.args else ""


def remote_exception(
    name: str, message: str, text: str, loaded: BaseException | None = None
) -> BaseException:
    """The exception a task raised in another process: ``loaded`` if it could be sent whole (never
    a ``KeyboardInterrupt`` in the engine), else a ``RunnerError`` naming its type; the other
    process's traceback is its cause."""
    exc: BaseException
    if isinstance(loaded, (Exception, SystemExit)):
        exc = loaded
    else:
        exc = RunnerError(f"{name}: {message}" if message else name)
    exc.__cause__ = RemoteTraceback(text)
    return exc


def describe_exit(code: int) -> str:
    """``SIGSEGV`` for a process killed by a signal, ``exit code 3`` otherwise."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Child:
    """One child process, the leader of its own process group (``start_new_session``: killed
    whole, never by the engine's Ctrl-C), its PID in the ledger from before it is used until it has
    exited and been waited for. ``start`` and ``stop`` are its only owners."""

    def __init__(self, process: anyio.abc.Process, ledger: WorkerLedger) -> None:
        self.process = process
        self.pid = process.pid
        self._ledger = ledger

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        ledger: WorkerLedger,
        env: Mapping[str, str],
        stderr: int | None = None,
    ) -> Child:
        """Start ``argv`` with pipes on stdin and stdout; returns once its PID is committed."""
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env=dict(env),
        )
        child = cls(process, ledger)
        try:
            with anyio.CancelScope(shield=True):
                await ledger.started(child.pid)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await child.stop(grace=0, graceful=False)
            raise
        return child

    async def exit_reason(self) -> str:
        return describe_exit(await self.process.wait())

    def signal_group(self, signum: signal.Signals) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    async def stop(self, *, grace: float, graceful: bool = True) -> None:
        """End the child: close its stdin (an idle child exits at the end of its input) or SIGTERM
        its group; SIGKILL the group after ``grace`` seconds; wait for it and forget its PID.
        Call it shielded from cancellation."""
        process = self.process
        if process.returncode is None:
            if graceful and process.stdin is not None:
                await process.stdin.aclose()
            else:
                self.signal_group(signal.SIGTERM)
            with anyio.move_on_after(grace):
                await process.wait()
        self.signal_group(signal.SIGKILL)  # whatever is left of its group: the task's children
        await process.wait()
        await process.aclose()
        self._ledger.exited(self.pid)


def emit_log(name: str, levelno: int, message: str, created: float) -> None:
    """A log record a child sent, into the try's log as if it was logged here."""
    record = logging.LogRecord(name, levelno, "", 0, message, None, None)
    record.created = created
    logging.getLogger(name).handle(record)


async def commit_checkpoint(context: Context | None, value: Any) -> str | None:
    """Commit a checkpoint a child asked for; None once committed, else why not (sent back to the
    child, where ``checkpoint`` raises it)."""
    try:
        if context is None:
            raise RunnerError("the task has no Context to checkpoint with")
        await context.checkpoint(value)
    except (ResultError, RunnerError) as exc:
        return str(exc)
    return None


def context_facts(ctx: Context) -> dict[str, Any]:
    """What a child needs to build the try's ``Context`` on its side."""
    return {
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "task_id": ctx.task_id,
        "params": dict(ctx.params),
        "try_number": ctx.try_number,
        "logical_date": ctx.logical_date,
        "event": ctx.event,
        "last_checkpoint": ctx.last_checkpoint,
    }


__all__ = [
    "Child",
    "RemoteTraceback",
    "commit_checkpoint",
    "context_facts",
    "describe_exit",
    "emit_log",
    "remote_exception",
]
