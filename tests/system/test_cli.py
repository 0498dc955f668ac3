"""The `podium` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GOOD = """
from engine import Context, dag, task

@task
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"

@task
async def fail_if(ctx: Context, flag: bool) -> None:
    if flag:
        raise RuntimeError("asked to fail")

@dag
def hello(name: str = "world", fail: bool = False):
    greet(name)
    fail_if(fail)
"""

BROKEN = """
from engine import dag, task

@task
def a() -> int:
    return 1

x = 1
raise ValueError("broken on purpose")
"""


def podium(db: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def dags_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "good.py").write_text(GOOD)
    (folder / "broken.py").write_text(BROKEN)
    return folder


def test_trigger_wait_with_path_runs_here_and_exits_by_outcome(
    tmp_path: Path, dags_dir: Path
) -> None:
    db = tmp_path / "s.db"
    ok = podium(
        db, "trigger", "hello", "--path", str(dags_dir / "good.py"), "--param", "name=cli", "--wait"
    )
    assert ok.returncode == 0, ok.stderr
    assert "success" in ok.stdout
    bad = podium(
        db,
        "trigger",
        "hello",
        "--path",
        str(dags_dir / "good.py"),
        "--param",
        "fail=true",
        "--wait",
    )
    assert bad.returncode == 1
    assert "asked to fail" in bad.stdout
    failed = podium(db, "runs", "--state", "failed", "--json")
    rows = [json.loads(line) for line in failed.stdout.splitlines()]
    assert [r["params"] for r in rows] == [{"name": "world", "fail": True}]
    unknown = podium(db, "trigger", "hello", "--param", "colour=red")
    assert unknown.returncode == 2
    assert "unknown param(s) colour" in unknown.stderr


def test_run_reports_a_broken_file_and_serves_the_rest(tmp_path: Path, dags_dir: Path) -> None:
    db = tmp_path / "r.db"
    queued = podium(db, "trigger", "hello", "--path", str(dags_dir / "good.py"), "--key", "k1")
    assert queued.returncode == 0, queued.stderr
    assert "no engine serves" in queued.stdout
    log = tmp_path / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", str(dags_dir), "--db", str(db)],
            stdout=out,
            stderr=out,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        deadline = time.monotonic() + 30
        while "podium serving" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert f"{dags_dir / 'broken.py'}:9: ValueError: broken on purpose" in text
        again = podium(db, "trigger", "hello", "--key", "k1", "--wait")  # same key: same run
        assert again.returncode == 0, again.stderr
        second = podium(db, "trigger", "hello", "--param", "name=served", "--wait")
        assert second.returncode == 0, second.stderr
        runs = [json.loads(x) for x in podium(db, "runs", "--json").stdout.splitlines()]
        assert [r["key"] for r in runs if r["key"] == "k1"] == ["k1"]
        assert all(r["state"] == "success" for r in runs)
        refused = podium(db, "run", str(dags_dir))
        assert refused.returncode == 2
        assert "is in use by another Podium engine (pid=" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert "podium stopped" in log.read_text()


def test_show_prints_the_task_table(tmp_path: Path, dags_dir: Path) -> None:
    db = tmp_path / "w.db"
    podium(db, "trigger", "hello", "--path", str(dags_dir / "good.py"), "--wait")
    run_id = json.loads(podium(db, "runs", "--json").stdout.splitlines()[0])["run_id"]
    shown = podium(db, "show", run_id)
    assert shown.returncode == 0
    assert "greet" in shown.stdout and "fail_if" in shown.stdout and "success" in shown.stdout
    missing = podium(db, "show", "nope")
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def test_an_error_holding_markup_brackets_is_printed_as_it_is(tmp_path: Path) -> None:
    """A message is text, never rich markup: ``[/x]`` in a DAG id or a path neither crashes the
    command nor disappears."""
    db = str(tmp_path / "state.db")
    unknown = subprocess.run(
        [sys.executable, "-m", "engine", "trigger", "[/x]", "--db", db],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2, unknown.stderr
    assert "DAG '[/x]' is not known to" in unknown.stderr
    empty = tmp_path / "[bold]dags"
    empty.mkdir()
    none = subprocess.run(
        [sys.executable, "-m", "engine", "validate", str(empty)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert none.returncode == 1, none.stderr
    assert f"no DAGs found in {empty}" in " ".join(none.stderr.split())
