"""A worker process of the ``Process`` runner: ``python -m engine.runners.worker``.

It reads frames (``engine.runners.wire``) on stdin and writes frames on what was its stdout; the
task's own stdout and stderr become log lines of the try (file descriptor 1 is pointed at 2, so
output written below Python goes to the engine's stderr, never into the pipe). ``logging`` records
and printed lines are sent while a try runs, up to the try's log budget. Before each try, what the
previous one changed of the process's set-up (working directory, output, logging, SIGTERM handler)
is put back; a try that changed a process-wide limit asks to be replaced (``Baseline``, shared with
the ``Virtualenv`` bootstrap). SIGTERM unwinds the task (its ``finally`` blocks run) and ends the
process; the engine follows with SIGKILL of the process group after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

import cloudpickle

from ..context import Context
from ..errors import ResultError
from ..serialization import encode_result
from . import wire
from .venv_bootstrap import Baseline, Terminated, flush_output, take_channel


class Channel:
    """The worker's end of the pipe; ``send`` may be called from the task's threads."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()
        self.active = False
        self.max_log_bytes = 0
        self._budget = 0

    def send(self, frame: tuple[Any, ...]) -> None:
        data = wire.encode(frame)
        with self._lock:
            self._writer.write(data)
            self._writer.flush()

    def receive(self) -> tuple[Any, ...] | None:
        header = self._reader.read(wire.HEADER.size)
        if len(header) < wire.HEADER.size:
            return None  # the engine closed the pipe (it stopped, or it died)
        (size,) = wire.HEADER.unpack(header)
        body = self._reader.read(size)
        if len(body) < size:
            return None
        return wire.decode(body)

    def begin_try(self) -> None:
        self._budget = self.max_log_bytes
        self.active = True

    def log(self, name: str, levelno: int, message: str, created: float) -> None:
        """Send one log line while a try runs; past the budget, only the line that crosses it goes
        (the engine then writes its truncation marker)."""
        if not self.active or self._budget < 0:
            return
        self._budget -= len(message.encode("utf-8", "replace"))
        self.send(("log", name, levelno, logging.getLevelName(levelno), message, created))

    def checkpoint(self, value: Any, task_id: str) -> None:
        data = encode_result(value, what=f"checkpoint of task {task_id!r}", max_bytes=None)
        self.send(("checkpoint", data))
        reply = self.receive()
        if reply is None:
            raise SystemExit(0)
        if reply[0] != "ack":
            raise RuntimeError(f"unexpected frame from the engine: {reply[0]!r}")
        if reply[1] is not None:
            raise ResultError(reply[1])


class RoundTripContext(Context):
    """The try's ``Context`` in a worker (of ``Process``, or of a Dask cluster): ``checkpoint`` and
    ``checkpoint_sync`` hand the value to ``round_trip``, which returns once the engine has
    committed it."""

    __slots__ = ("_round_trip",)

    def __init__(self, facts: dict[str, Any], round_trip: Callable[[Any], None]) -> None:
        async def save(value: Any) -> None:
            round_trip(value)  # blocks the task's own event loop for the round trip

        super().__init__(**facts, save_checkpoint=save)
        self._round_trip = round_trip

    def checkpoint_sync(self, value: Any) -> None:
        self._round_trip(value)
        self.last_checkpoint = value


def _run(channel: Channel, baseline: Baseline, root_level: int, job: wire.Job) -> None:
    baseline.restore(root_level)
    channel.begin_try()
    try:
        fn = wire.load_function(job.function)
        args = [pickle.loads(a) for a in job.args]
        kwargs = {k: pickle.loads(v) for k, v in job.kwargs.items()}
        ctx = None
        if job.context is not None:
            task_id = job.task_id
            ctx = RoundTripContext(job.context, lambda value: channel.checkpoint(value, task_id))
        value = call_in_worker(fn, job.is_async, args, kwargs, job.context_slot, ctx)
        data = encode_result(value, what=f"result of task {job.task_id!r}", max_bytes=None)
    except Terminated:
        raise
    except BaseException as exc:  # the task's failure is the try's, sent back whole
        flush_output()
        channel.active = False
        channel.send(_raised(exc, retire=baseline.limits_changed()))
        return
    flush_output()
    channel.active = False
    channel.send(("ok", data, baseline.limits_changed()))


def _raised(exc: BaseException, *, retire: bool) -> tuple[Any, ...]:
    payload: bytes | None = None
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)  # the engine must be able to load it too
        payload = data
    except Exception:
        payload = None
    kind = type(exc)
    text = "".join(traceback.format_exception(exc))
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return ("raised", payload, name, str(exc), text, retire)


def call_in_worker(
    fn: Callable[..., Any],
    is_async: bool,
    args: list[Any],
    kwargs: dict[str, Any],
    slot: str | int | None,
    ctx: Any,
) -> Any:
    """Call a task's function on the worker's side, with its context at ``slot``; an async one
    runs under its own event loop (a worker process or a Dask worker thread runs none)."""
    if ctx is not None:
        if isinstance(slot, int):
            args[slot] = ctx
        elif slot is not None:
            kwargs[slot] = ctx
    if is_async:
        return asyncio.run(fn(*args, **kwargs))
    return fn(*args, **kwargs)


def main() -> None:
    channel = Channel(*take_channel())
    init = channel.receive()
    if init is None or init[0] != "init":
        return
    _, path, root_level, max_log_bytes = init
    sys.path[:] = path
    channel.max_log_bytes = max_log_bytes
    baseline = Baseline(channel.log)
    channel.send(("ready", os.getpid()))
    try:
        while True:
            frame = channel.receive()
            if frame is None:
                return
            if frame[0] == "run":
                _run(channel, baseline, root_level, frame[1])
    except Terminated:
        os._exit(128 + signal.SIGTERM)
    except BrokenPipeError:
        os._exit(0)  # the engine is gone


if __name__ == "__main__":
    main()
