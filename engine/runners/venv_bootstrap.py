"""The program a ``Virtualenv`` worker runs: ``<env>/bin/python -I venv_bootstrap.py``.

Standalone on purpose: it runs on the environment's own Python with the environment's packages, so
it imports nothing from the engine (nothing outside the standard library) and keeps to syntax that
Python 3.9 reads. ``engine.runners.worker`` reuses its forwarders of printed lines and log records
and what each try starts from (``Baseline``).

A warm worker: it serves one try after another until its stdin ends. The channel, one JSON value
per line:

- task -> engine, on what was stdout (file descriptor 1 then points at stderr, so output written
  below Python never lands in the channel): first ``["ready", pid, python_version]``; during a try
  ``["log", name, levelno, message, created]`` and ``["checkpoint", value]``; then one of ``["ok",
  value, retire]`` or ``["raised", type, message, traceback, retire]``. ``retire`` asks the engine
  to replace this worker (the try changed a process-wide limit).
- engine -> task, on stdin: a job, ``{"function": {"module", "qualname", "file", "paths"},
  "task_id", "is_async", "args", "kwargs", "context", "context_slot", "log_level",
  "max_log_bytes", "end_marker"}``; ``["ack", null | error]`` answering each checkpoint; the next
  job once the reply is sent.

What the process writes to its stderr below Python reaches the engine on a pipe of its own; after
each try the worker writes the job's ``end_marker`` line there, so the engine knows that every line
before it belongs to that try.

SIGTERM unwinds the task (its ``finally`` blocks run) and ends the process; the engine follows with
SIGKILL of the process group after its grace period.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any, BinaryIO, cast

LINE_CHUNK = 64 * 1024
Emit = Callable[[str, int, str, float], None]  # (logger name, level, message, created)


class ForwardHandler(logging.Handler):
    """Every ``logging`` record, as one log line of the try."""

    def __init__(self, emit: Emit) -> None:
        super().__init__(level=logging.DEBUG)
        self._emit = emit
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record.name, record.levelno, self.format(record), record.created)
        except Exception:
            self.handleError(record)


class LineWriter(io.TextIOBase):
    """A replacement ``sys.stdout`` / ``sys.stderr``: each line written becomes a log line of the
    try (lines longer than 64 KiB are cut in pieces)."""

    def __init__(self, emit: Emit, name: str, levelno: int) -> None:
        self._emit = emit
        self._name = name
        self._levelno = levelno
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer or len(self._buffer) >= LINE_CHUNK:
            line, sep, rest = self._buffer.partition("\n")
            if not sep or len(line) > LINE_CHUNK:
                line, rest = self._buffer[:LINE_CHUNK], self._buffer[LINE_CHUNK:]
            self._buffer = rest
            self._emit(self._name, self._levelno, line, time.time())
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emit(self._name, self._levelno, line, time.time())


class CheckpointError(Exception):
    """The engine could not commit a checkpoint (the message says why)."""


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM: the engine cancelled this try."""


def on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


class Channel:
    """The task's end of the channel; ``send`` may be called from the task's threads."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()
        self._budget = 0
        self.active = False

    def begin_try(self, max_log_bytes: int) -> None:
        self._budget = max_log_bytes
        self.active = True

    def send(self, message: list[Any]) -> None:
        line = encode(message)
        with self._lock:
            self._writer.write(line)
            self._writer.flush()

    def receive(self) -> Any:
        """The engine's next message (a job), or None once it closed the channel."""
        line = self._reader.readline()
        return json.loads(line) if line else None

    def log(self, name: str, levelno: int, message: str, created: float) -> None:
        """Send one log line while a try runs; past the try's log budget, only the line that
        crosses it goes (the engine then writes its truncation marker)."""
        if not self.active or self._budget < 0:
            return
        self._budget -= len(message.encode("utf-8", "replace"))
        self.send(["log", name, levelno, message, created])

    def checkpoint(self, value: Any, task_id: str) -> None:
        try:
            line = encode(["checkpoint", value])
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"checkpoint of task {task_id!r} is not JSON-serializable: {exc}"
            ) from None
        with self._lock:
            self._writer.write(line)
            self._writer.flush()
            reply = self._reader.readline()
        if not reply:
            raise SystemExit(0)  # the engine is gone
        kind, error = json.loads(reply)
        if kind != "ack":
            raise RuntimeError(f"unexpected message from the engine: {kind!r}")
        if error is not None:
            raise CheckpointError(error)


_LIMITS = [
    getattr(resource, name)
    for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS", "RLIMIT_CPU", "RLIMIT_NOFILE")
    if hasattr(resource, name)
]


def process_limits() -> list[tuple[int, int]]:
    return [resource.getrlimit(limit) for limit in _LIMITS]


class Baseline:
    """What every try on a warm worker starts from. Set up once (the try's output and ``logging``
    records forwarded through ``emit``, SIGTERM unwinding the task) and put back before each try
    if the previous one changed it: the working directory, ``sys.stdout`` / ``sys.stderr``, the
    forwarding handler on the root logger, the SIGTERM handler. A process-wide limit
    (``resource.setrlimit``) is not put back (a process may not raise its hard limits again):
    ``limits_changed`` says the worker must be replaced instead."""

    def __init__(self, emit: Emit) -> None:
        self.cwd = os.getcwd()
        self.handler = ForwardHandler(emit)
        self.stdout = LineWriter(emit, "podium.task.stdout", logging.INFO)
        self.stderr = LineWriter(emit, "podium.task.stderr", logging.WARNING)
        self.limits = process_limits()
        logging.getLogger().handlers[:] = [self.handler]
        self.restore()

    def restore(self, log_level: int | None = None) -> None:
        try:
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        except OSError:  # the task removed the folder it moved to
            os.chdir(self.cwd)
        root = logging.getLogger()
        if self.handler not in root.handlers:
            root.addHandler(self.handler)
        if log_level is not None:
            root.setLevel(log_level)
        task_logger = logging.getLogger("podium.task")
        if task_logger.level == logging.NOTSET or task_logger.level > logging.INFO:
            task_logger.setLevel(logging.INFO)
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        if signal.getsignal(signal.SIGTERM) is not on_sigterm:
            signal.signal(signal.SIGTERM, on_sigterm)

    def limits_changed(self) -> bool:
        return process_limits() != self.limits


def encode(message: list[Any]) -> bytes:
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()


class Context:
    """The try's ``Context`` in the environment: its facts, ``log``, and ``checkpoint`` (which
    returns once the engine has committed the value). ``asset_event`` is not available here."""

    def __init__(self, channel: Channel, facts: dict[str, Any]) -> None:
        self._channel = channel
        self.dag_id: str = facts["dag_id"]
        self.run_id: str = facts["run_id"]
        self.task_id: str = facts["task_id"]
        self.params: dict[str, Any] = facts["params"]
        self.try_number: int = facts["try_number"]
        date = facts["logical_date"]
        self.logical_date: datetime | None = datetime.fromisoformat(date) if date else None
        self.event: dict[str, Any] | None = facts["event"]
        self.last_checkpoint: Any = facts["last_checkpoint"]
        self.log = logging.LoggerAdapter(
            logging.getLogger("podium.task"),
            {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id},
        )

    async def checkpoint(self, value: Any) -> None:
        self.checkpoint_sync(value)

    def checkpoint_sync(self, value: Any) -> None:
        self._channel.checkpoint(value, self.task_id)
        self.last_checkpoint = value

    def __repr__(self) -> str:
        return f"<Context {self.dag_id}/{self.run_id}/{self.task_id} try {self.try_number}>"


def load_function(ref: dict[str, Any]) -> Callable[..., Any]:
    """``module:qualname``, imported with the task file's folders on ``sys.path`` (by file when
    the engine loaded it under a name of its own)."""
    for folder in reversed(ref["paths"]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    name, file = ref["module"], ref["file"]
    try:
        module = _import(name, file)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing in ("engine", "sensors") or missing.startswith(("engine.", "sensors.")):
            raise ImportError(
                f"module {name!r} imports {missing!r}, which the virtualenv does not have: define "
                "the task's function in a module that does not import the engine"
            ) from exc
        raise
    obj: Any = module
    for part in ref["qualname"].split("."):
        obj = getattr(obj, part)
    fn = getattr(obj, "fn", obj)  # a task definition stands for its function
    if not callable(fn):
        raise TypeError(f"{name}:{ref['qualname']} is not callable")
    return cast(Callable[..., Any], fn)


def _import(name: str, file: str | None) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not file or not (name == missing or name.startswith(missing + ".")):
            raise
    spec = importlib.util.spec_from_file_location(name, file)  # a name the engine's loader gave
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {name} from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(channel: Channel, job: dict[str, Any]) -> Any:
    fn = load_function(job["function"])
    args: list[Any] = job["args"]
    kwargs: dict[str, Any] = job["kwargs"]
    if job["context"] is not None:
        ctx = Context(channel, job["context"])
        slot = job["context_slot"]
        if isinstance(slot, int):
            args[slot] = ctx
        elif slot is not None:
            kwargs[slot] = ctx
    if job["is_async"]:
        return asyncio.run(fn(*args, **kwargs))
    return fn(*args, **kwargs)


def _raised(exc: BaseException) -> list[Any]:
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ["raised", name, str(exc), text]


def flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a task that closed its stdout loses its last line
            pass


def take_channel() -> tuple[Any, Any]:
    """The engine's channel (the original stdin and stdout, as binary files); afterwards the task
    can neither read the engine's messages nor write into the channel below Python."""
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return reader, writer


def serve(channel: Channel, baseline: Baseline, job: dict[str, Any]) -> None:
    """Run one try and send its reply; then mark the end of its stderr output."""
    baseline.restore(job["log_level"])
    channel.begin_try(job["max_log_bytes"])
    reply: list[Any]
    try:
        reply = ["ok", run(channel, job)]
    except Terminated:
        raise
    except BaseException as exc:  # the task's failure is the try's, sent back as text
        reply = _raised(exc)
    flush_output()
    channel.active = False
    try:
        os.write(2, (job["end_marker"] + "\n").encode())
    except OSError:  # the task closed its stderr: the engine, missing the marker, replaces us
        pass
    reply.append(baseline.limits_changed())
    try:
        channel.send(reply)
    except (TypeError, ValueError) as exc:
        what = f"result of task {job['task_id']!r} is not JSON-serializable: {exc}"
        channel.send(["raised", "ResultError", what, "", reply[-1]])


def main() -> None:
    channel = Channel(*take_channel())
    baseline = Baseline(channel.log)
    try:
        channel.send(["ready", os.getpid(), sys.version])
        while True:
            job = channel.receive()
            if job is None:
                return  # the engine closed the channel: it is done with this worker
            serve(channel, baseline, job)
    except Terminated:
        os._exit(128 + signal.SIGTERM)
    except BrokenPipeError:
        os._exit(0)  # the engine is gone


if __name__ == "__main__":
    main()
