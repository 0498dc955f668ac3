"""Loading DAG folders: a YAML file inside packages calls its package's functions by full name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.loader import load_dags


def test_a_yaml_dag_inside_packages_calls_them_by_their_full_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    package = root / "loaderpkg" / "flows"
    package.mkdir(parents=True)
    (root / "loaderpkg" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "work.py").write_text("def step(x: str) -> str:\n    return x\n")
    (package / "flow.yaml").write_text(
        "tasks:\n  a: {call: loaderpkg.flows.work:step, args: {x: hi}}\n"
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(root)])
    monkeypatch.chdir(tmp_path)

    loaded = load_dags(package / "flow.yaml")

    assert loaded.errors == []
    assert [d.dag_id for d in loaded.dags] == ["flow"]
    assert str(root) in sys.path


def test_a_loose_yaml_file_adds_no_package_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flow.yaml").write_text("tasks:\n  a: {call: nosuchpkg.work:step}\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    loaded = load_dags(tmp_path / "flow.yaml")
    assert [e.message for e in loaded.errors] == [
        "tasks.a.call: cannot import module 'nosuchpkg.work': ModuleNotFoundError: "
        "No module named 'nosuchpkg'"
    ]
    assert str(tmp_path.parent) not in sys.path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"tasks:\n  a: {shell: {argv: [echo, caf\xe9]}}\n",
            ":2:31: not UTF-8: byte 0xe9 cannot start or continue a character",
        ),
        (
            b"tasks:\n  a: {shell: {argv: [echo]}}\n  \x1f\n",
            ":3:3: YAML syntax error: character 0x001f is not allowed",
        ),
        (
            b"tasks:\n  a: {shell: {argv: " + b"[" * 3000 + b"]" * 3000 + b"}}\n",
            ":2:1: nested too deeply to read (a DAG file needs a few levels)",
        ),
        (
            b"triggers: true\ntasks:\n  a: {shell: {argv: [echo]}}\n",
            ":1:1: triggers: must be a list",
        ),
    ],
)
def test_files_the_parser_refuses_are_errors_with_a_position(
    data: bytes, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_bytes(data)
    loaded = load_dags(tmp_path / "bad.yaml")
    assert loaded.dags == []
    assert [str(e) for e in loaded.errors] == [f"{tmp_path / 'bad.yaml'}{expected}"]
