"""One virtualenv per tool under the cache dir (default ``.bench-venvs/`` at the repo root).

``ensure(venv)`` creates ``<cache>/<name>`` with the Python running the driver (3.11), installs
``requirements/<name>.txt`` (every package pinned) with pip from PyPI, imports the tool once (to
check it and to compile its ``.pyc`` files outside any measurement) and writes a stamp holding the
requirements' digest, so an unchanged venv is reused and a changed requirements file rebuilds it.
Installs can run in parallel (``ensure_all``); Airflow's is the slowest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .specs import Venv

COMPARE_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPARE_DIR.parents[1]
REQUIREMENTS = COMPARE_DIR / "requirements"
DEFAULT_CACHE = REPO_ROOT / ".bench-venvs"
PROJECT_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


@dataclass
class Ready:
    python: Path | None  # None: the venv could not be built
    error: str | None = None
    seconds: float = 0.0


def python_of(venv: Venv, cache: Path) -> Path:
    if venv.name is None:
        return PROJECT_PYTHON if PROJECT_PYTHON.exists() else Path(sys.executable)
    return cache / venv.name / "bin" / "python"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def ensure(venv: Venv, cache: Path, log: Path) -> Ready:
    """The venv's python, building or rebuilding the venv if needed; never raises."""
    try:
        return _ensure(venv, cache, log)
    except (OSError, subprocess.SubprocessError) as exc:
        return Ready(None, f"cannot build the {venv.name} venv: {type(exc).__name__}: {exc}")


def _ensure(venv: Venv, cache: Path, log: Path) -> Ready:
    t0 = time.perf_counter()
    python = python_of(venv, cache)
    if venv.name is None:
        return Ready(python)
    req = REQUIREMENTS / f"{venv.name}.txt"
    home = cache / venv.name
    stamp = home / ".bench-installed"
    want = _digest(req)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return Ready(python)
    log.parent.mkdir(parents=True, exist_ok=True)
    # PREFECT_HOME: importing prefect (the check below) makes its home folder; never ~/.prefect
    home_dir = tempfile.TemporaryDirectory(prefix="bench-venv-home-")
    env = dict(
        os.environ,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="",
        PREFECT_HOME=home_dir.name,
    )
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(home)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip>=24,<27"],
        [str(python), "-m", "pip", "install", "--no-deps", "-r", str(req)],
        [str(python), "-m", "pip", "check"],
        [str(python), "-c", f"import {venv.imports}"],
    ]
    with home_dir, log.open("w") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
            if proc.returncode != 0:
                shutil.rmtree(home, ignore_errors=True)
                return Ready(
                    None,
                    f"`{' '.join(cmd[-3:])}` failed (exit {proc.returncode}); see {log}",
                    time.perf_counter() - t0,
                )
    stamp.write_text(want + "\n")
    return Ready(python, None, time.perf_counter() - t0)


def ensure_all(venvs: list[Venv], cache: Path) -> dict[str | None, Ready]:
    """Build the missing venvs in parallel (pip is mostly waiting on the network and unpacking)."""
    named = {v.name: v for v in venvs}
    with ThreadPoolExecutor(max_workers=max(1, len(named))) as pool:
        futures = {
            name: pool.submit(ensure, v, cache, cache / "logs" / f"{name or 'project'}.log")
            for name, v in named.items()
        }
        return {name: f.result() for name, f in futures.items()}


def installed_version(python: Path, dist: str) -> str | None:
    code = (
        "import sys\nfrom importlib import metadata\n"
        "try: print(metadata.version(sys.argv[1]))\nexcept Exception: pass\n"
    )
    proc = subprocess.run(
        [str(python), "-c", code, dist], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None
