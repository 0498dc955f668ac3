"""``Virtualenv(requirements=[...] | lockfile=..., python=..., workers=N)``: each try runs in a warm
worker process of the task's own environment (other library versions than the engine's), built
with uv and cached by the hash of what it holds (``venv_build.py``).

The environment does not have the engine. Its Python runs a standalone bootstrap
(``venv_bootstrap.py``) that imports the task's function by ``module:qualname`` and talks to the
engine over JSON lines: the try's arguments in, log lines, checkpoints and the result out, one try
after another (``venv_worker.py``). So the function must live at module level in a module that
imports only what the environment has; arguments and results are JSON values.

One ``VirtualenvPool`` per environment and engine, whatever settings name it (requirements in
another order, another ``grace``): it builds the environment when the engine starts, in the
background (a try waits for it; a failed build fails the tries that waited with uv's message, and
the next try builds again), and keeps a lazy ``WorkerPool`` of up to ``workers`` interpreters
(the most any of its settings asks): a worker starts when a try finds none idle, and stays warm
for the engine's life. Workers are their own process groups, recorded in the state file while they
live (the reaper kills them after a kill -9 of the engine); a timeout or cancellation stops the
try's worker like a ``Process`` worker (SIGTERM, ``grace`` seconds, SIGKILL of the group) and the
pool replaces it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from .. import serialization
from ..errors import ResultError, VirtualenvError, describe_exception
from . import wire
from .base import RunnerHost, TryCall
from .children import context_facts
from .pool import WorkerPool
from .venv_build import BuiltEnv, EnvSpec, default_cache_dir, ensure_env, env_spec
from .venv_worker import VenvWorker

log = logging.getLogger("podium.runners")


@dataclass(frozen=True, kw_only=True)
class Virtualenv:
    """Run tries in a virtualenv of their own, built with uv from ``requirements`` (pip-style
    lines) or a ``lockfile`` (a pinned requirements file, installed with ``uv pip sync``), on
    ``python`` (a version such as ``"3.12"`` or an interpreter path; default: the engine's).

    ``cache_dir``: where environments are kept (default ``$PODIUM_VENV_CACHE``, else
    ``~/.cache/podium/venvs``). ``workers``: the most interpreters of this environment kept warm
    (and running tries at once), each started when a try first needs it (default 4).
    ``grace``: seconds between SIGTERM and SIGKILL for a cancelled or timed-out try. Settings
    naming the same environment (same requirements, in any order, Python and cache) share one
    pool per engine, of the most ``workers`` any of them asks; equal environments share one
    directory in the cache."""

    requirements: Sequence[str] = ()
    lockfile: str | Path | None = None
    python: str | None = None
    cache_dir: str | Path | None = None
    workers: int = 4
    grace: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.requirements, str):
            raise VirtualenvError("Virtualenv(requirements=...) takes a list of requirements")
        object.__setattr__(self, "requirements", tuple(self.requirements))  # hashable
        if self.requirements and self.lockfile is not None:
            raise VirtualenvError("Virtualenv takes requirements=[...] or lockfile=..., not both")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise VirtualenvError(
                f"Virtualenv(workers=...) needs an int >= 1, got {self.workers!r}"
            )
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

    def environment_key(self) -> Hashable:
        """Which environment this setting names, without reading anything (the lockfile by its
        path): settings with equal keys share one pool per engine."""
        lockfile = str(Path(self.lockfile).resolve()) if self.lockfile is not None else None
        requirements = tuple(sorted(r.strip() for r in self.requirements if r.strip()))
        cache = str(self.resolve_cache_dir().resolve())
        return ("virtualenv", requirements, lockfile, self.python, cache)

    def open(self, host: RunnerHost) -> VirtualenvSession:
        return VirtualenvSession(self, host)


@dataclass(slots=True)
class _Build:
    done: anyio.Event = field(default_factory=anyio.Event)
    env: BuiltEnv | None = None
    error: VirtualenvError | None = None


class VirtualenvPool:
    """The environment of one ``Virtualenv`` key and its warm workers, for one engine (an async
    context manager; shared by the sessions of every setting with that key)."""

    def __init__(self, setting: Virtualenv, host: RunnerHost) -> None:
        self.setting = setting  # the first setting that named it: what it builds
        self._host = host
        self._tg: anyio.abc.TaskGroup | None = None  # builds, and each worker's stderr reader
        self._build: _Build | None = None  # the last build started; replaced after a failure
        self.builds = 0  # builds this pool ran (not counting environments found in the cache)
        self.workers = WorkerPool[VenvWorker](
            what="virtualenv",
            size=setting.workers,
            grace=setting.grace,
            spawn=self._spawn,
            eager=False,
        )

    def want(self, setting: Virtualenv) -> None:
        """Another setting uses this pool: it may ask for more workers, or a longer grace."""
        self.workers.size = max(self.workers.size, setting.workers)
        self.workers.grace = max(self.workers.grace, setting.grace)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self.workers.__aenter__()
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            raise
        self._start_build()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        try:
            await self.workers.__aexit__(None, None, None)  # the workers stop
        finally:
            self._tg.cancel_scope.cancel()  # a build under way stops (its temporary folder goes)
            await self._tg.__aexit__(None, None, None)  # and the stderr readers left

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

    async def _spawn(self) -> VenvWorker:
        assert self._tg is not None
        env = await self.environment()
        return await VenvWorker.start(env, ledger=self._host.ledger, tg=self._tg)

    # -- running a try ------------------------------------------------------------------------------

    async def run(self, job: dict[str, Any], call: TryCall, *, grace: float) -> Any:
        """Run one try on a warm worker (after the environment is built)."""
        await self.environment()
        return await self.workers.run(lambda worker: worker.run_try(job, call), grace=grace)


class VirtualenvSession:
    """The open ``Virtualenv`` runner of one engine and setting (an async context manager): its
    tries run on the engine's ``VirtualenvPool`` of the setting's environment."""

    def __init__(self, setting: Virtualenv, host: RunnerHost) -> None:
        self.setting = setting
        self._host = host
        self._key = setting.environment_key()
        self._pool: VirtualenvPool | None = None

    @property
    def pool(self) -> VirtualenvPool:
        assert self._pool is not None, "the session is not open"
        return self._pool

    async def __aenter__(self) -> Self:
        make = lambda: VirtualenvPool(self.setting, self._host)  # noqa: E731
        self._pool = await self._host.shared.enter(self._key, make)
        self._pool.want(self.setting)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool = None
        await self._host.shared.leave(self._key)

    async def call(self, call: TryCall) -> Any:
        job = self._job(call)  # a RunnerError here fails the try before it starts
        return await self.pool.run(job, call, grace=self.setting.grace)

    def _job(self, call: TryCall) -> dict[str, Any]:
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
        return {
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
