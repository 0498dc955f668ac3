"""The Dask side of ``Dask(address=...)``: ``run_job`` is what the engine submits, once per try.

It runs in a thread of a Dask worker (the worker needs Podium importable, like any code it runs).
While the try runs, what the task logs (``logging``, ``ctx.log``) and prints reaches the engine as
events on the engine's topic (``Worker.log_event``), each tagged with the try's Dask key, up to the
try's log budget; a ``start`` event says which worker runs it. The reply carries how many log events
were sent, so the engine can wait for the last of them before it records the outcome.

``run_job`` never raises: the task's exception comes back whole (pickled, with its traceback as
text), as for the ``Process`` runner. ``ctx.checkpoint`` sends the value to the engine and returns
once the engine has committed it (``dask_checkpoints.py``: a ``checkpoint`` event on the same
topic, then the engine's calls back to this worker); ``ctx.last_checkpoint`` is what the try's
facts carry, the last value committed by an earlier try.

Routing is per thread: the root logging handler and the ``sys.stdout``/``sys.stderr`` wrappers this
module installs (once per worker process) forward only what the thread running a try emits; other
threads' lines go where they went before.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import sys
import threading
import time
from typing import Any, TextIO

from ..serialization import encode_result
from . import dask_checkpoints, wire
from .worker import RoundTripContext, _raised, call_in_worker

_LINE_CHUNK = 64 * 1024
_local = threading.local()  # .forwarder: the try this thread runs, if any
_install_lock = threading.Lock()
_installed = False


class _Forwarder:
    """Sends one try's log lines to the engine, within the try's log budget."""

    def __init__(self, worker: Any, topic: str, key: str, max_log_bytes: int) -> None:
        self._worker = worker
        self._topic = topic
        self._key = key
        self._budget = max_log_bytes
        self.sent = 0
        self.buffers: dict[str, str] = {}

    def event(self, kind: str, **fields: Any) -> None:
        self._worker.log_event(self._topic, {"key": self._key, "kind": kind, **fields})

    def log(self, name: str, levelno: int, message: str, created: float) -> None:
        """One line; past the budget, only the line that crosses it goes (the engine then writes
        its truncation marker)."""
        if self._budget < 0:
            return
        self._budget -= len(message.encode("utf-8", "replace"))
        self.sent += 1
        self.event("log", name=name, levelno=levelno, message=message, created=created)

    def flush(self) -> None:
        for name, rest in list(self.buffers.items()):
            if rest:
                self.log(name, _STREAM_LEVELS[name], rest, time.time())
        self.buffers.clear()


_STREAM_LEVELS = {"podium.task.stdout": logging.INFO, "podium.task.stderr": logging.WARNING}


class _RoutingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        forwarder: _Forwarder | None = getattr(_local, "forwarder", None)
        if forwarder is None:
            return
        try:
            forwarder.log(record.name, record.levelno, self.format(record), record.created)
        except Exception:
            self.handleError(record)


class _RoutingStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of the worker: lines a try's thread writes become log
    lines of the try; everything else goes to the stream it replaced."""

    def __init__(self, original: TextIO, name: str) -> None:
        self._original = original
        self._name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        forwarder: _Forwarder | None = getattr(_local, "forwarder", None)
        if forwarder is None:
            return self._original.write(text)
        buffer = forwarder.buffers.get(self._name, "") + text
        while "\n" in buffer or len(buffer) >= _LINE_CHUNK:
            line, sep, rest = buffer.partition("\n")
            if not sep or len(line) > _LINE_CHUNK:
                line, rest = buffer[:_LINE_CHUNK], buffer[_LINE_CHUNK:]
            buffer = rest
            forwarder.log(self._name, _STREAM_LEVELS[self._name], line, time.time())
        forwarder.buffers[self._name] = buffer
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "forwarder", None) is None:
            self._original.flush()


def _install(root_level: int) -> None:
    """Route this worker process's logging and output by thread (once); let the engine's level
    through (the root level is lowered to it, never raised)."""
    global _installed
    with _install_lock:
        if not _installed:
            logging.getLogger().addHandler(_RoutingHandler())
            sys.stdout = _RoutingStream(sys.stdout, "podium.task.stdout")
            sys.stderr = _RoutingStream(sys.stderr, "podium.task.stderr")
            task_logger = logging.getLogger("podium.task")
            if task_logger.level == logging.NOTSET or task_logger.level > logging.INFO:
                task_logger.setLevel(logging.INFO)
            _installed = True
        root = logging.getLogger()
        if root.getEffectiveLevel() > root_level:
            root.setLevel(root_level)


def run_job(
    job: wire.Job, topic: str, key: str, max_log_bytes: int, root_level: int
) -> tuple[Any, ...]:
    """Run one try on this worker. Returns ``("ok", json_bytes, sent)`` or ``("raised", payload,
    type_name, message, traceback_text, sent)``; ``sent``: the log events sent for it."""
    from distributed import get_worker

    worker = get_worker()
    _install(root_level)
    forwarder = _Forwarder(worker, topic, key, max_log_bytes)
    forwarder.event("start", worker=worker.address, pid=os.getpid(), created=time.time())
    _local.forwarder = forwarder
    try:
        fn = wire.load_function(job.function)
        args = [pickle.loads(a) for a in job.args]
        kwargs = {k: pickle.loads(v) for k, v in job.kwargs.items()}
        ctx = None
        if job.context is not None:
            task_id = job.task_id

            def round_trip(value: Any) -> None:
                dask_checkpoints.checkpoint(worker, forwarder.event, key, task_id, value)

            ctx = RoundTripContext(job.context, round_trip)
        value = call_in_worker(fn, job.is_async, args, kwargs, job.context_slot, ctx)
        data = encode_result(value, what=f"result of task {job.task_id!r}", max_bytes=None)
    except BaseException as exc:  # the task's failure is the try's, sent back whole
        raised = _raised(exc, retire=False)[:5]
        _end(forwarder, key)
        return (*raised, forwarder.sent)
    _end(forwarder, key)
    return ("ok", data, forwarder.sent)


def _end(forwarder: _Forwarder, key: str) -> None:
    forwarder.flush()
    _local.forwarder = None
    dask_checkpoints.forget(key)
