"""The public surface: ``engine.__all__`` and ``sensors.__all__`` name what the packages export, every
Podium type the README shows is importable from them, and every README example imports what it uses."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

import engine
import sensors

README = Path(__file__).resolve().parents[2] / "README.md"
OPERATIONS = (
    README.parent / "docs" / "operations.md"
)  # the monitoring examples moved from the README
PAGES = (README, OPERATIONS)
PACKAGES = {"engine": engine, "sensors": sensors}
PUBLIC = {name: package for package, module in PACKAGES.items() for name in module.__all__}

_FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
_CALL = re.compile(r"\b([A-Z][A-Za-z0-9]*)\(")


def python_blocks(text: str) -> list[str]:
    """The README's ```python blocks (also those indented inside a list item), dedented."""
    return [textwrap.dedent(m.group(2)) for m in _FENCE.finditer(text)]


def code_spans(text: str) -> list[str]:
    """Inline `code` outside the fenced blocks."""
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.M | re.S)
    return _SPAN.findall(prose)


def parse_block(code: str) -> ast.Module:
    # README examples use `async with` / `await` at the top level, as in a notebook or a REPL
    tree = compile(
        code, "README.md", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    assert isinstance(tree, ast.Module)
    return tree


def imported_from(tree: ast.Module, package: str) -> set[str]:
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == package
        for alias in node.names
    }


def test_all_names_what_the_packages_export() -> None:
    for name, module in PACKAGES.items():
        assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ names what {name} does not define: {missing}"
        exported = {
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", "").startswith(f"{name}.")
        }
        assert exported <= set(module.__all__), f"{name} exports names missing from __all__"


def test_the_alerting_and_slowness_types_are_public() -> None:
    from engine import SLA, CallbackNotifier, JSONWebhook, SlackWebhook, SlownessPolicy
    from engine.notifiers import CallbackNotifier as Callback
    from engine.slowness import SLA as SLAType

    assert CallbackNotifier is Callback and SLA is SLAType
    assert {"SlackWebhook", "JSONWebhook", "SlownessPolicy"} <= set(engine.__all__)
    assert SlackWebhook.__name__ == "SlackWebhook" and JSONWebhook.__name__ == "JSONWebhook"
    assert SlownessPolicy().factor == 3.0


def test_every_type_the_readme_constructs_is_public() -> None:
    text = "\n".join(page.read_text() for page in PAGES)
    code = "\n".join(python_blocks(text) + code_spans(text))
    blocks = [parse_block(block) for block in python_blocks(text)]
    others = {  # what the examples import from other libraries (prometheus_client, ...)
        alias.asname or alias.name
        for tree in blocks
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module not in PACKAGES
        for alias in node.names
    }
    shown = set(_CALL.findall(code)) - others
    assert {"Engine", "SlackWebhook", "JSONWebhook", "CallbackNotifier", "SlownessPolicy"} <= shown
    assert not shown - set(PUBLIC), f"README shows types not exported: {shown - set(PUBLIC)}"


EXAMPLES = [block for page in PAGES for block in python_blocks(page.read_text())]


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_each_readme_example_imports_the_podium_names_it_uses(index: int) -> None:
    code = EXAMPLES[index]
    tree = parse_block(code)
    imported: set[str] = set()
    for package, module in PACKAGES.items():
        names = imported_from(tree, package)
        assert names <= set(module.__all__), (
            f"not in {package}.__all__: {names - set(module.__all__)}"
        )
        imported |= names
    defined = {
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    unimported = {n for n in used & set(PUBLIC) if n not in imported | defined}
    assert not unimported, (
        f"README example {index} uses {sorted(unimported)} without importing them"
    )
