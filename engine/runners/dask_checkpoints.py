"""The Dask worker's end of ``ctx.checkpoint`` (``Dask(address=...)``): the value goes to the engine,
and the call returns once the engine has committed it, as on the other runners.

One round trip, for the try whose Dask key is ``key`` (the engine's end is in ``dask.py``):

1. the task's thread encodes the value as JSON (a value that is not JSON fails right there, with
   the ``ResultError`` the other runners raise), parks the bytes in this process's table under the
   key with the try's next sequence number, and sends a small ``checkpoint`` event on the engine's
   topic (``Worker.log_event``, the way its log lines go, so it arrives after them);
2. the engine takes the bytes from this worker (``Client.run(take, key, seq)``: the scheduler
   forwards the call to this worker and the bytes back, storing nothing), commits the value, and
   answers (``Client.run(answer, key, seq, error)``) with None, or why it could not commit;
3. the task's thread, waiting on a ``threading.Event`` (no polling), wakes and returns or raises.

Nothing is left on the scheduler: no variables, queues or topics per checkpoint. A try's entry in
the table lives from its first checkpoint until ``run_job`` returns.

A try the scheduler lets go of while it runs (the engine cancelled it or its timeout struck, the
engine's client disconnected or died) must not wait for an answer that will never come: a worker
plugin (``StopWatch``, added to the worker at its first checkpointing try) sees the try's key leave
``executing``, answers the pending checkpoint with a refusal and marks the try, whose later
checkpoints then raise at once. A worker that closes (its scheduler went away) refuses its tries'
checkpoints the same way. So a checkpoint is also where a Dask task, which Dask cannot interrupt,
learns that its try was stopped.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import ResultError, RunnerError
from ..serialization import encode_result

PLUGIN_NAME = "podium-checkpoints"
STOPPED = (
    "ctx.checkpoint: this try was stopped (cancelled, timed out, or its engine let go of it) while "
    "it runs on a Dask worker; the engine did not confirm the checkpoint"
)
CLOSING = "ctx.checkpoint: the Dask worker is closing; the engine did not confirm the checkpoint"
_STILL_RUNNING = frozenset({"executing", "long-running"})
_ENDED = frozenset({"memory", "error", "executing", "long-running"})  # not a stop: the task ended
_TRACK_TIMEOUT = 60.0


@dataclass(slots=True)
class _Waiting:
    """A checkpoint sent to the engine and not answered yet."""

    seq: int
    data: bytes
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None  # the engine could not commit it (its words)
    refused: str | None = None  # the try was stopped, or the worker closes


@dataclass(slots=True)
class _TryState:
    """One try of this process that checkpoints (by its Dask key)."""

    worker: str
    seq: int = 0
    stopped: str | None = None
    waiting: _Waiting | None = None
    serial: threading.Lock = field(default_factory=threading.Lock)  # one checkpoint at a time


_lock = threading.Lock()  # guards _tries and what is in it; never held while waiting
_tries: dict[str, _TryState] = {}


def _stop(key: str, reason: str) -> None:
    with _lock:
        state = _tries.get(key)
        if state is None or state.stopped is not None:
            return
        state.stopped = reason
        waiting = state.waiting
        if waiting is not None and not waiting.done.is_set():
            waiting.refused = reason
            waiting.done.set()


class StopWatch(WorkerPlugin):
    """Refuses the checkpoints of tries whose task the worker let go of (see the module)."""

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start in _STILL_RUNNING and finish not in _ENDED and isinstance(key, str):
            _stop(key, STOPPED)

    def teardown(self, worker: Any) -> None:
        with _lock:
            keys = [k for k, state in _tries.items() if state.worker == worker.address]
        for key in keys:
            _stop(key, CLOSING)


async def _track(worker: Any, key: str) -> None:
    """On the worker's loop, where task transitions happen: watch the worker, then add the try
    (already stopped if its task no longer executes, so no stop goes unseen in between)."""
    if PLUGIN_NAME not in worker.plugins:
        await worker.plugin_add(plugin=StopWatch(), name=PLUGIN_NAME)
    task = worker.state.tasks.get(key)
    with _lock:
        state = _tries.setdefault(key, _TryState(worker.address))
        if task is None or task.state not in _STILL_RUNNING:
            state.stopped = STOPPED


def checkpoint(worker: Any, send: Any, key: str, task_id: str, value: Any) -> None:
    """Send ``value`` to the engine and return once it is committed (from the task's thread).
    ``send(kind, **fields)`` puts an event on the engine's topic."""
    data = encode_result(value, what=f"checkpoint of task {task_id!r}", max_bytes=None)
    with _lock:
        state = _tries.get(key)
    if state is None:
        tracking = asyncio.run_coroutine_threadsafe(_track(worker, key), worker.loop.asyncio_loop)
        try:
            tracking.result(_TRACK_TIMEOUT)
        except TimeoutError:
            tracking.cancel()
            raise RunnerError(f"{CLOSING} (its event loop does not answer)") from None
        with _lock:
            state = _tries[key]
    with state.serial:
        with _lock:
            if state.stopped is not None:
                raise RunnerError(state.stopped)
            state.seq += 1
            waiting = state.waiting = _Waiting(state.seq, data)
        try:
            send("checkpoint", seq=waiting.seq, worker=worker.address)
            waiting.done.wait()
        finally:
            with _lock:
                state.waiting = None
    if waiting.refused is not None:
        raise RunnerError(waiting.refused)
    if waiting.error is not None:
        raise ResultError(waiting.error)


def forget(key: str) -> None:
    """The try's ``run_job`` returns: drop its entry."""
    with _lock:
        _tries.pop(key, None)


def take(key: str, seq: int) -> bytes | None:
    """The engine's first call (on the worker's loop): the checkpoint's bytes, or None if the try
    no longer waits for it."""
    with _lock:
        state = _tries.get(key)
        waiting = state.waiting if state is not None else None
        if waiting is None or waiting.seq != seq or waiting.done.is_set():
            return None
        return waiting.data


def answer(key: str, seq: int, error: str | None) -> bool:
    """The engine's second call: the checkpoint is committed (``error`` None) or not (why); wakes
    the task's thread. False if it no longer waits."""
    with _lock:
        state = _tries.get(key)
        waiting = state.waiting if state is not None else None
        if waiting is None or waiting.seq != seq or waiting.done.is_set():
            return False
        waiting.error = error
        waiting.done.set()
        return True


__all__ = [
    "CLOSING",
    "PLUGIN_NAME",
    "STOPPED",
    "StopWatch",
    "answer",
    "checkpoint",
    "forget",
    "take",
]
