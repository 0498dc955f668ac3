"""``Virtualenv(requirements=[...] | lockfile=..., python=...)``: each try runs in a fresh process
of the task's own environment (other library versions than the engine's), built with uv and cached
by the hash of what it holds (``venv_build.py``).

The environment does not have the engine. Its Python runs a standalone bootstrap
(``venv_bootstrap.py``) that imports the task's function by ``module:qualname`` and talks to the
engine over JSON lines: the try's arguments in, log lines, checkpoints and the result out. So the
function must live at module level in a module that imports only what the environment has;
arguments and results are JSON values.

The session builds the environment when the engine starts, in the background; a try waits for it.
A failed build fails the tries that waited for it with uv's message, and the next try builds again.
A try's process is its own process group, recorded in the state file while it lives (the reaper
kills it after a kill -9 of the engine), and a timeout or cancellation stops it like a ``Process``
worker: SIGTERM, ``grace`` seconds, SIGKILL of the group.
"""

from __future__ import annotations

import builtins
import logging
import os
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from .. import serialization
from ..errors import ResultError, RunnerError, VirtualenvError, WorkerDiedError, describe_exception
from . import wire
from .base import RunnerHost, TryCall
from .children import Child, commit_checkpoint, context_facts, emit_log, remote_exception
from .venv_build import BuiltEnv, EnvSpec, default_cache_dir, ensure_env, env_spec

log = logging.getLogger("podium.runners")

BOOTSTRAP = Path(__file__).with_name("venv_bootstrap.py")
_MAX_LINE = 1 << 30
_STDERR_LINES = 20


@dataclass(frozen=True, kw_only=True)
class Virtualenv:
    """Run tries in a virtualenv of their own, built with uv from ``requirements`` (pip-style
    lines) or a ``lockfile`` (a pinned requirements file, installed with ``uv pip sync``), on
    ``python`` (a version such as ``"3.12"`` or an interpreter path; default: the engine's).

    ``cache_dir``: where environments are kept (default ``$PODIUM_VENV_CACHE``, else
    ``~/.cache/podium/venvs``). ``grace``: seconds between SIGTERM and SIGKILL for a cancelled or
    timed-out try. Equal settings share one session per engine; equal environments (same
    requirements and Python) share one directory in the cache."""

    requirements: Sequence[str] = ()
    lockfile: str | Path | None = None
    python: str | None = None
    cache_dir: str | Path | None = None
    grace: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.requirements, str):
            raise VirtualenvError("Virtualenv(requirements=...) takes a list of requirements")
        object.__setattr__(self, "requirements", tuple(self.requirements))  # hashable
        if self.requirements and self.lockfile is not None:
            raise VirtualenvError("Virtualenv takes requirements=[...] or lockfile=..., not both")
        if not self.grace >= 0:
            raise VirtualenvError(f"Virtualenv(grace=...) needs seconds >= 0, got {self.grace!r}")

    def spec(self) -> EnvSpec:
        """What the environment holds (reads the lockfile)."""
        lockfile = Path(self.lockfile).resolve() if self.lockfile is not None else None
        return env_spec(self.requirements, lockfile, self.python)

    def resolve_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        return default_cache_dir(os.environ)

    def open(self, host: RunnerHost) -> VirtualenvSession:
        return VirtualenvSession(self, host)


@dataclass(slots=True)
class _Build:
    done: anyio.Event = field(default_factory=anyio.Event)
    env: BuiltEnv | None = None
    error: VirtualenvError | None = None


class VirtualenvSession:
    """The open ``Virtualenv`` runner of one engine (an async context manager): builds its
    environment in the background and runs each try in a new process of it."""

    def __init__(self, setting: Virtualenv, host: RunnerHost) -> None:
        self.setting = setting
        self._host = host
        self._tg: anyio.abc.TaskGroup | None = None
        self._build: _Build | None = None  # the last build started; replaced after a failure
        self.builds = 0  # builds this session ran (not counting environments found in the cache)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._start_build()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # a build under way stops; its temporary folder goes
        await self._tg.__aexit__(None, None, None)

    # -- the environment ----------------------------------------------------------------------------

    def _start_build(self) -> _Build:
        assert self._tg is not None
        build = self._build = _Build()
        self._tg.start_soon(self._run_build, build)
        return build

    async def _run_build(self, build: _Build) -> None:
        try:
            spec = self.setting.spec()
            build.env = await ensure_env(spec, self.setting.resolve_cache_dir())
            self.builds += build.env.built
        except VirtualenvError as exc:
            build.error = exc
            log.error("%s", exc)
        except Exception as exc:  # a bug or a full disk fails the tries, never the engine
            build.error = VirtualenvError(f"cannot build the virtualenv: {describe_exception(exc)}")
            log.exception("cannot build the virtualenv")
        finally:
            build.done.set()

    async def environment(self) -> BuiltEnv:
        """The built environment; waits for a build under way, starts one after a failure (or if
        the environment was removed from the cache meanwhile)."""
        build = self._build
        if build is None or (build.done.is_set() and not _usable(build.env)):
            build = self._start_build()  # never built, failed, or removed from the cache since
        await build.done.wait()
        if build.env is None:
            assert build.error is not None
            raise build.error
        return build.env

    # -- running a try ------------------------------------------------------------------------------

    async def call(self, call: TryCall) -> Any:
        job = self._job(call)  # a RunnerError here fails the try before it starts
        env = await self.environment()
        child = await Child.start(
            [str(env.python), "-I", str(BOOTSTRAP)],
            ledger=self._host.ledger,
            env=_child_env(env),
            stderr=subprocess.PIPE,
        )
        stderr = _Stderr()
        value: Any = None
        error: BaseException | None = None
        finished = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain_stderr, child, stderr.tail, stderr.done)
            try:
                value, error = await _exchange(child, job, call, stderr)
                finished = True
            except (RunnerError, ResultError) as exc:  # raised here, not in the task group
                error = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await child.stop(grace=self.setting.grace, graceful=finished)
        if error is not None:
            raise error
        return value

    def _job(self, call: TryCall) -> bytes:
        task_id = call.task_id
        fn = call.node.definition.fn
        ref = wire.reference(fn)
        if ref is None or ref.file is None:
            raise VirtualenvError(
                f"task {task_id!r}: a Virtualenv task's function must be importable by "
                f"module:qualname from a file (defined at module level, not in __main__), "
                f"got {getattr(fn, '__qualname__', fn)!r}"
            )
        ctx = call.context
        args, kwargs, slot = wire.pack_arguments(
            call, lambda name, value: _json_argument(task_id, name, value), None
        )
        job = {
            "function": {
                "module": ref.module,
                "qualname": ref.qualname,
                "file": ref.file,
                "paths": _import_roots(ref.module, ref.file),
            },
            "task_id": task_id,
            "is_async": call.node.is_async,
            "args": args,
            "kwargs": kwargs,
            "context": context_facts(ctx) if ctx is not None else None,
            "context_slot": slot,
            "log_level": logging.getLogger().getEffectiveLevel(),
            "max_log_bytes": self._host.max_log_bytes,
        }
        return serialization.dumps(job) + b"\n"


@dataclass(slots=True)
class _Stderr:
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_LINES))
    done: anyio.Event = field(default_factory=anyio.Event)


async def _exchange(
    child: Child, job: bytes, call: TryCall, stderr: _Stderr
) -> tuple[Any, BaseException | None]:
    """Send the job, serve log lines and checkpoints, and return (result, raised)."""
    process = child.process
    assert process.stdin is not None and process.stdout is not None
    reader = BufferedByteReceiveStream(process.stdout)
    try:
        await process.stdin.send(job)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # it died at once: said below
    while True:
        try:
            line = await reader.receive_until(b"\n", _MAX_LINE)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
            reason = await child.exit_reason()
            with anyio.move_on_after(5):  # its last words (a process it left may hold stderr open)
                await stderr.done.wait()
            said = "\n".join(stderr.tail)
            raise WorkerDiedError(
                f"virtualenv task process died: {reason}"
                + (f"; its stderr ended with:\n{said}" if said else "")
            ) from None
        try:
            message = orjson.loads(line)
            kind = message[0]
        except (orjson.JSONDecodeError, TypeError, IndexError, KeyError):
            raise RunnerError(
                f"unreadable message from virtualenv task process: {line[:200]!r}"
            ) from None
        if kind == "log":
            _, name, levelno, text, created = message
            emit_log(name, levelno, text, created)
        elif kind == "checkpoint":
            error = await commit_checkpoint(call.context, message[1])
            await process.stdin.send(orjson.dumps(["ack", error]) + b"\n")
        elif kind == "ok":
            return message[1], None
        elif kind == "raised":
            return None, _rebuild(message)
        else:
            raise RunnerError(f"unexpected message from virtualenv task process: {kind!r}")


def _rebuild(message: list[Any]) -> BaseException:
    """A builtin exception (``ValueError``...) comes back as itself, so retry rules by type work;
    other types as a ``RunnerError`` naming them; the task's traceback is the cause."""
    _, name, text, traceback_text = message
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


async def _drain_stderr(child: Child, tail: deque[str], done: anyio.Event) -> None:
    """What the task's process writes to its stderr below Python (a crash, a C library): into the
    try's log as warnings, the last lines kept for a death message."""
    stream = child.process.stderr
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
            tail.append(line)
            emit_log("podium.task.stderr", logging.WARNING, line, time.time())
    finally:
        done.set()


def _json_argument(task_id: str, name: str, value: Any) -> Any:
    try:
        serialization.encode_result(value, what=f"argument {name!r}", max_bytes=None)
    except ResultError as exc:
        raise VirtualenvError(
            f"task {task_id!r}: {exc} (a Virtualenv task takes JSON arguments)"
        ) from None
    return value


def _import_roots(module: str, file: str) -> list[str]:
    """The folders to put on ``sys.path`` so ``module`` imports: the file's own folder, and the
    root its dotted name starts from (for a module inside packages)."""
    path = Path(file).resolve()
    folder = path.parent
    roots = [str(folder)]
    depth = module.count(".") + (1 if path.stem == "__init__" else 0)
    if depth and not module.startswith("podium_dags."):
        roots.append(str(folder.parents[depth - 1]) if depth <= len(folder.parents) else "")
    return [r for r in dict.fromkeys(roots) if r]


def _usable(env: BuiltEnv | None) -> bool:
    return env is not None and env.marker.is_file()


def _child_env(env: BuiltEnv) -> dict[str, str]:
    """The engine's environment, with the virtualenv's ``bin`` first on ``PATH``."""
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out["VIRTUAL_ENV"] = str(env.path)
    out["PATH"] = os.pathsep.join([str(env.path / "bin"), out.get("PATH", "")])
    return out
