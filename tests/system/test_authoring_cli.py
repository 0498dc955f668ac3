"""`podium init`, `validate` and `schema` through the real CLI, and a starter project run as written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.yaml_spec import json_schema

ENV = {**os.environ, "COLUMNS": "200"}


def podium(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True, text=True, timeout=90, check=False, env=ENV, cwd=cwd,
    )  # fmt: skip


def test_init_writes_a_project_that_validates_and_runs(tmp_path: Path) -> None:
    project = tmp_path / "analytics"
    made = podium("init", str(project))
    assert made.returncode == 0, made.stderr
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        "README.md",
        "pipelines/hello.py",
        "pipelines/report.yaml",
        "pipelines/report_steps.py",
        "podium-dag.schema.json",
    ]
    readme = (project / "README.md").read_text()
    assert "podium run pipelines/ --db podium.db" in readme
    assert "podium trigger report --db podium.db" in readme
    assert json.loads((project / "podium-dag.schema.json").read_text()) == json_schema()

    checked = podium("validate", "pipelines/", cwd=project)
    assert checked.returncode == 0, checked.stderr
    assert "ok: 2 DAG(s) in pipelines/: hello, report" in checked.stdout

    db = str(tmp_path / "here.db")
    for dag_id in ("hello", "report"):
        ran = podium("trigger", dag_id, "--path", "pipelines", "--db", db, "--wait", cwd=project)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "success" in ran.stdout

    again = podium("init", str(project))
    assert again.returncode == 2
    assert "would overwrite README.md" in again.stderr


def test_the_starter_project_served_by_podium_run(tmp_path: Path) -> None:
    project = tmp_path / "served"
    assert podium("init", str(project)).returncode == 0
    db = str(tmp_path / "served.db")
    log = tmp_path / "engine.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "pipelines/", "--db", db],
            cwd=project, env=ENV, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "podium serving" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        ran = podium("trigger", "report", "--db", db, "--param", "day=2026-11-25", "--wait")
        assert ran.returncode == 0, ran.stdout + ran.stderr + log.read_text()
        run_id = ran.stdout.split()[1]
        logs = podium("logs", run_id, "announce", "--db", db)
        assert f"report for 2026-11-25 (run {run_id})" in logs.stdout
        shown = json.loads(podium("show", run_id, "--db", db, "--json").stdout)
        assert shown["tasks"]["count"]["result"] == {"to": 2, "be": 2, "or": 1, "not": 1}
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_validate_exits_1_with_every_error_and_keeps_the_good_files(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "good.yaml").write_text("tasks:\n  a: {shell: {argv: [echo]}}\n")
    (folder / "bad.yaml").write_text(
        "tasks:\n  load:\n    shell: {argv: [echo]}\n    retries: -1\n    dependson: [a]\n"
    )
    out = podium("validate", str(folder))
    assert out.returncode == 1
    assert f"{folder / 'bad.yaml'}:4:5: tasks.load.retries: must be an integer >= 0" in out.stderr
    assert (
        f"{folder / 'bad.yaml'}:5:5: tasks.load.dependson: unknown key 'dependson' "
        "(did you mean 'depends_on'?)"
    ) in out.stderr
    (folder / "bad.yaml").unlink()
    assert podium("validate", str(folder)).returncode == 0


def test_schema_prints_the_json_schema() -> None:
    out = podium("schema")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json_schema()
