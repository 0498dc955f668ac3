"""The pipe between the engine and a worker process: length-prefixed pickled frames, and how a
function travels (by reference, ``module:qualname``, when the worker can import it; by value with
cloudpickle otherwise).

Frames, engine -> worker: ``("run", Job)``, ``("ack", error_or_None)`` (a checkpoint is committed).
Worker -> engine: ``("ready", pid)``, ``("log", name, levelno, levelname, message, created)``,
``("checkpoint", value)``, ``("ok", json_bytes, retire)``, ``("raised", exc_bytes, type_name,
message, traceback_text, retire)``. ``retire`` asks the engine to replace the worker after this try
(the task changed a process-wide limit). Both ends run the engine's own code and Python, so the
envelope is plain pickle; what the task hands over (function, arguments, exceptions) is cloudpickled.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import cloudpickle

from ..errors import RunnerError, describe_exception
from .children import context_facts

if TYPE_CHECKING:
    from .base import TryCall

HEADER = struct.Struct(">I")
_IMPORTS = threading.RLock()
MAX_FRAME = 1 << 31
_NONE = pickle.dumps(None)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function the worker imports: ``module:qualname`` (and the file, for DAG files the loader
    imported under a generated module name). A ``@task`` found there stands for its function."""

    module: str
    qualname: str
    file: str | None

    def load(self) -> Callable[..., Any]:
        # A Dask worker's threads load functions at once: ``import_module`` waits for a module
        # another thread is importing (a bare ``sys.modules`` look-up would see it half-done), and
        # the lock does the same for DAG files imported under their generated names
        with _IMPORTS:
            try:
                module = importlib.import_module(self.module)
            except ImportError:
                if self.file is None:
                    raise
                module = _import_file(self.module, self.file)
        obj: Any = module
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        fn = getattr(obj, "fn", obj)  # a TaskDef: its function
        if not callable(fn):
            raise TypeError(f"{self.module}:{self.qualname} is not callable")
        return cast(Callable[..., Any], fn)


@dataclass(frozen=True, slots=True)
class Job:
    """One try for a worker: the function (a ``FunctionRef`` or cloudpickled bytes), the
    cloudpickled arguments, and the facts of the try's Context (None if it takes none)."""

    task_id: str
    function: FunctionRef | bytes
    is_async: bool
    args: list[bytes]
    kwargs: dict[str, bytes]
    context: dict[str, Any] | None
    context_slot: str | int | None  # where the Context goes: a keyword name or a position


def reference(fn: Callable[..., Any]) -> FunctionRef | None:
    """``fn`` by reference, if importing its module in a fresh process finds the same function."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module_name or not qualname or module_name == "__main__" or "<" in qualname:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if obj is not fn and getattr(obj, "fn", None) is not fn:
        return None
    return FunctionRef(module_name, qualname, getattr(module, "__file__", None))


def pack_function(fn: Callable[..., Any]) -> FunctionRef | bytes:
    ref = reference(fn)
    return ref if ref is not None else cloudpickle.dumps(fn)


def load_function(function: FunctionRef | bytes) -> Callable[..., Any]:
    if isinstance(function, FunctionRef):
        return function.load()
    fn = pickle.loads(function)
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    return cast(Callable[..., Any], fn)


def job_for(call: TryCall) -> Job:
    """The ``Job`` a worker runs for ``call`` (``Process`` and ``Dask``); a ``RunnerError`` if the
    function or an argument cannot be sent, naming the argument and its type."""
    task_id = call.task_id
    fn = call.node.definition.fn
    try:
        function = pack_function(fn)
    except Exception as exc:
        raise RunnerError(
            f"task {task_id!r}: its function cannot be sent to a worker process: "
            f"{describe_exception(exc)}"
        ) from None
    ctx = call.context
    args, kwargs, slot = pack_arguments(
        call, lambda name, value: _pack(task_id, name, value), _NONE
    )
    facts = context_facts(ctx) if ctx is not None else None
    return Job(task_id, function, call.node.is_async, args, kwargs, facts, slot)


def pack_arguments(
    call: TryCall, pack: Callable[[str, Any], T], placeholder: T
) -> tuple[list[T], dict[str, T], str | int | None]:
    """A try's arguments, each through ``pack(name, value)``, with the ``Context`` left out: it is
    built on the other side, at the returned slot (a position, a keyword, or None)."""
    ctx = call.context
    slot: str | int | None = None
    args: list[T] = []
    for index, (name, value) in enumerate(zip(call.argument_names(), call.args, strict=True)):
        if ctx is not None and value is ctx:
            slot = index
            args.append(placeholder)
        else:
            args.append(pack(name, value))
    kwargs: dict[str, T] = {}
    for name, value in call.kwargs.items():
        if ctx is not None and value is ctx:
            slot = name
            kwargs[name] = placeholder
        else:
            kwargs[name] = pack(name, value)
    return args, kwargs, slot


def _pack(task_id: str, name: str, value: Any) -> bytes:
    try:
        data: bytes = cloudpickle.dumps(value)
    except Exception as exc:
        kind = type(value)
        raise RunnerError(
            f"task {task_id!r}: argument {name!r} of type {kind.__module__}.{kind.__qualname__} "
            f"cannot be sent to a worker process: {describe_exception(exc)}"
        ) from None
    return data


def encode(frame: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> tuple[Any, ...]:
    frame = pickle.loads(body)
    assert isinstance(frame, tuple)
    return frame


def _import_file(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {name} from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
