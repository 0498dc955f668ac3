"""The arrows that must never exist between the engine's parts (docs/architecture.md), read from the
import statements of the source (``TYPE_CHECKING`` imports included: they are dependencies too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Modules imported by ``path`` (absolute names; relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = {f"{prefix}.{alias.name}" for alias in node.names}
            submodules = {n for n in names if _is_module(n)}
            found.update(submodules)
            if (
                names - submodules
            ):  # names taken from the module itself (its __init__ for a package)
                found.add(prefix)
    return found


GRAPH = {
    _module_name(p): _imports(p)
    for pkg in ("engine", "sensors")
    for p in (ROOT / pkg).rglob("*.py")
}
CORE = sorted(m for m in GRAPH if m.startswith("engine.") and not m.startswith("engine.web"))
# the ``podium`` command: ``engine.cli`` and the ``engine.cli_*`` modules it assembles
CLI = sorted(m for m in GRAPH if m == "engine.cli" or m.startswith("engine.cli_"))


def _reaches(start: str, target_prefix: str) -> list[str] | None:
    """A chain of imports from ``start`` to a module under ``target_prefix``, if there is one."""
    stack = [(start, [start])]
    seen = {start}
    while stack:
        module, chain = stack.pop()
        for imported in GRAPH.get(module, ()):
            if imported == target_prefix or imported.startswith(target_prefix + "."):
                return [*chain, imported]
            if imported in GRAPH and imported not in seen:
                seen.add(imported)
                stack.append((imported, [*chain, imported]))
    return None


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_the_web_package(module: str) -> None:
    assert _reaches(module, "engine.web") is None


@pytest.mark.parametrize("module", sorted(set(GRAPH) - {*CLI, "engine.__main__"}))
def test_only_the_command_imports_the_cli_modules(module: str) -> None:
    for cli in CLI:
        assert _reaches(module, cli) is None, cli


@pytest.mark.parametrize(
    "module",
    [
        "engine.metrics",
        "engine.prometheus",
        "engine.alerts",
        "engine.alerting",
        "engine.notifiers",
        "engine.ingest",
    ],
)
def test_monitoring_and_the_ingest_do_not_depend_on_the_engine_class(module: str) -> None:
    assert _reaches(module, "engine.engine") is None


@pytest.mark.parametrize(
    "module",
    ["engine.scheduler", "engine.limits", "engine.router", "engine.backfill", "engine.run_state"],
)
def test_pure_parts_touch_no_store_executor_or_engine(module: str) -> None:
    # (the store's row records are plain data: a pure part may name them)
    for forbidden in (
        "engine.store.store", "engine.store.writer", "engine.engine", "engine.dispatcher",
        "engine.executor",
    ):  # fmt: skip
        assert _reaches(module, forbidden) is None, forbidden


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("sensors")))
def test_sensors_know_no_engine_internals(module: str) -> None:
    for forbidden in ("engine.engine", "engine.runbook", "engine.run_driver", "engine.store"):
        assert _reaches(module, forbidden) is None, forbidden


def test_the_graph_is_read() -> None:
    # the checks above are only as good as the import graph: it must see real edges
    assert "engine.run_state" in GRAPH["engine.run_driver"]
    assert _reaches("engine.engine", "engine.scheduler") is not None
    assert {"engine.cli_operations", "engine.cli_output"} <= set(CLI)
    assert _reaches("engine.cli", "engine.cli_output") is not None
