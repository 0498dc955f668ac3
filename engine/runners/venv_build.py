"""Building and caching the environments of ``Virtualenv`` tasks, with ``uv``.

An environment is named by a hash of what it holds: the requirements (sorted) or the lockfile's
contents, and the Python asked for (the engine's own interpreter when none is). It lives in
``<cache>/<hash>/`` and is ready once its marker, ``podium-env.json``, is there. Every task and
every engine with the same hash shares it.

A build goes to ``<cache>/.building/<hash>-<pid>-<random>/`` (a relocatable venv: ``uv venv
--relocatable``), gets its marker, and is renamed to ``<cache>/<hash>/`` in one step; two builders
racing (two engines, or ``podium env build`` beside an engine) both finish and the second rename
loses harmlessly. A build that fails or is cancelled leaves nothing behind but a message naming the
requirements and the end of uv's error output.

Where the cache is: ``Virtualenv(cache_dir=...)``, else ``$PODIUM_VENV_CACHE``, else
``$XDG_CACHE_HOME/podium/venvs``, else ``~/.cache/podium/venvs``. A user-wide cache (not one beside
the state file) because environments do not depend on a state file and ``podium env build`` runs
where there is none (a Docker build).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..errors import VirtualenvError

log = logging.getLogger("podium.runners")

MARKER = "podium-env.json"
_FORMAT = 1  # bump when the layout of an environment changes: every hash changes with it
_STDERR_TAIL = 20  # lines of uv's error output kept in a failure's message


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$PODIUM_VENV_CACHE``, else ``$XDG_CACHE_HOME/podium/venvs``, else
    ``~/.cache/podium/venvs``."""
    if environ.get("PODIUM_VENV_CACHE"):
        return Path(environ["PODIUM_VENV_CACHE"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "podium" / "venvs"


@dataclass(frozen=True, slots=True)
class EnvSpec:
    """What one environment holds; ``key`` names it in the cache."""

    requirements: tuple[str, ...]
    lockfile: Path | None
    lock_text: str | None
    python: str  # what uv gets as --python
    key: str

    def describe(self) -> str:
        held = f"lockfile {self.lockfile}" if self.lockfile else ", ".join(self.requirements)
        return f"[{held or 'no requirements'}] on Python {self.python}"


def env_spec(requirements: Sequence[str], lockfile: Path | None, python: str | None) -> EnvSpec:
    """The spec of an environment; reads the lockfile (a ``VirtualenvError`` if it cannot)."""
    lock_text: str | None = None
    if lockfile is not None:
        try:
            lock_text = lockfile.read_text()
        except OSError as exc:
            raise VirtualenvError(f"cannot read the lockfile {lockfile}: {exc}") from None
    interpreter = python or sys.executable
    engine_python = "" if python else sys.version  # the engine's own: its exact version counts
    reqs = tuple(r.strip() for r in requirements if r.strip())
    identity = json.dumps(
        [_FORMAT, sorted(reqs), lock_text, interpreter, engine_python], separators=(",", ":")
    )
    key = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return EnvSpec(reqs, lockfile, lock_text, interpreter, key)


@dataclass(frozen=True, slots=True)
class BuiltEnv:
    path: Path
    built: bool  # True if this call built it, False if it was in the cache

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.path / MARKER


def find_uv() -> str:
    """The ``uv`` binary of the ``uv`` package (the ``podium[venv]`` extra)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise VirtualenvError(
            "Virtualenv needs uv: pip install 'podium[venv]' (or the uv package)"
        ) from None
    try:
        return find_uv_bin()
    except FileNotFoundError as exc:
        raise VirtualenvError(f"the uv package has no uv binary: {exc}") from None


def cached(spec: EnvSpec, cache_dir: Path) -> BuiltEnv | None:
    env = BuiltEnv(cache_dir / spec.key, built=False)
    return env if env.marker.is_file() and env.python.exists() else None


async def ensure_env(spec: EnvSpec, cache_dir: Path) -> BuiltEnv:
    """The environment of ``spec``: from the cache, or built now (a ``VirtualenvError`` naming
    the requirements and ending with uv's message if it cannot be)."""
    found = cached(spec, cache_dir)
    if found is not None:
        return found
    uv = find_uv()
    building = cache_dir / ".building" / f"{spec.key}-{os.getpid()}-{secrets.token_hex(4)}"
    final = cache_dir / spec.key
    started = time.monotonic()
    log.info("building the virtualenv %s for %s", spec.key, spec.describe())
    try:
        building.mkdir(parents=True)
        await _uv(
            uv, spec, ["venv", "--quiet", "--relocatable", "--python", spec.python, "."], building
        )
        target = ["--python", str(building / "bin" / "python")]
        if spec.lock_text is not None:
            (building / "podium-lock.txt").write_text(spec.lock_text)
            await _uv(uv, spec, ["pip", "sync", "--quiet", *target, "podium-lock.txt"], building)
        elif spec.requirements:
            (building / "podium-requirements.txt").write_text("\n".join(spec.requirements) + "\n")
            args = ["pip", "install", "--quiet", *target, "-r", "podium-requirements.txt"]
            await _uv(uv, spec, args, building)
        seconds = time.monotonic() - started
        facts = {
            "key": spec.key,
            "requirements": list(spec.requirements),
            "lockfile": str(spec.lockfile) if spec.lockfile else None,
            "python": spec.python,
            "build_seconds": round(seconds, 3),
            "built_at": time.time(),
        }
        (building / MARKER).write_text(json.dumps(facts, indent=2) + "\n")
        try:
            building.rename(final)
        except OSError:  # another builder got there first: theirs is as good
            if cached(spec, cache_dir) is None:
                raise
            log.info("virtualenv %s was built meanwhile by another process", spec.key)
            return BuiltEnv(final, built=False)
        log.info("built the virtualenv %s in %.1fs", spec.key, seconds)
        return BuiltEnv(final, built=True)
    except OSError as exc:
        raise VirtualenvError(f"cannot build the virtualenv for {spec.describe()}: {exc}") from None
    finally:
        with anyio.CancelScope(shield=True):
            if building.exists():
                await anyio.to_thread.run_sync(shutil.rmtree, building, True)


async def _uv(uv: str, spec: EnvSpec, args: list[str], cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = await anyio.run_process([uv, *args], cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        text = (
            result.stderr.decode("utf-8", "replace").strip()
            or result.stdout.decode("utf-8", "replace").strip()
        )
        tail = "\n".join(text.splitlines()[-_STDERR_TAIL:])
        raise VirtualenvError(f"cannot build the virtualenv for {spec.describe()}: {tail}")
