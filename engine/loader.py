"""Loading DAG files: every ``DAG`` defined at module level in a .py file, every YAML DAG file
(``.yaml``/``.yml``, see ``engine.yaml_dags``), or a folder of them.

A file that fails to import or to validate is reported with its path and line (every problem of a
YAML file, each with its line and column), and the other files still load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .dag import DAG
from .errors import describe_exception
from .yaml_dags import YAML_SUFFIXES, YAMLDAGError, load_yaml_dag, yaml_files


@dataclass(frozen=True)
class LoadError:
    path: Path
    line: int | None
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass
class LoadResult:
    dags: list[DAG] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)


def dag_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    python = (
        p for p in path.rglob("*.py") if not p.name.startswith("_") and "__pycache__" not in p.parts
    )
    hidden = [p for p in yaml_files(path) if any(part.startswith(".") for part in p.parts)]
    return sorted({*python, *yaml_files(path)} - set(hidden))


def load_dags(path: str | Path) -> LoadResult:
    """Import each DAG file under ``path`` and collect its DAGs; never raises for a bad file."""
    root = Path(path).resolve()
    result = LoadResult()
    if not root.exists():
        result.errors.append(LoadError(root, None, "no such file or directory"))
        return result
    folder = root if root.is_dir() else root.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # so DAG files can import their neighbours
    seen: dict[str, Path] = {}
    for file in dag_files(root):
        try:
            if file.suffix in YAML_SUFFIXES:
                _package_root_on_path(file)
                found = [load_yaml_dag(file)]
            else:
                found = _import_dags(file)
        except YAMLDAGError as exc:
            result.errors.extend(LoadError(file, p.line, str(p), p.column) for p in exc.problems)
            continue
        except Exception as exc:  # a broken DAG file must not stop the others
            result.errors.append(_describe_import_error(file, exc))
            continue
        for d in found:
            if d.dag_id in seen and seen[d.dag_id] != file:
                result.errors.append(
                    LoadError(
                        file, None, f"DAG id {d.dag_id!r} is already defined in {seen[d.dag_id]}"
                    )
                )
                continue
            seen[d.dag_id] = file
            result.dags.append(d)
    return result


def _package_module_name(file: Path) -> str | None:
    """``a.b.c`` for a file inside packages (folders with ``__init__.py``), with their root on
    ``sys.path``, so the file's relative imports work; None for a loose file."""
    parts = [file.stem]
    folder = file.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1:
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return ".".join(parts)


def _package_root_on_path(file: Path) -> None:
    """For a YAML file inside packages: their root on ``sys.path``, so its ``call:`` targets can
    name functions of those packages by their full name (``examples.analytics.steps:load``)."""
    folder = file.parent
    if not (folder / "__init__.py").exists():
        return
    while (folder / "__init__.py").exists():
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _import_dags(file: Path) -> list[DAG]:
    package_name = _package_module_name(file)
    if package_name is not None:
        module = importlib.import_module(package_name)
        return [v for v in vars(module).values() if isinstance(v, DAG)]
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    name = f"podium_dags.{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    found: list[DAG] = []
    for value in vars(module).values():
        if isinstance(value, DAG) and value not in found:
            found.append(value)
    return found


def _describe_import_error(file: Path, exc: Exception) -> LoadError:
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == file:
        return LoadError(file, exc.lineno, f"SyntaxError: {exc.msg}")
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file:
            line = frame.lineno
    return LoadError(file, line, describe_exception(exc))
