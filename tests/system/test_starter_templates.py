"""`podium init DIR --template cron|kafka|s3|assets` through the real CLI: each project validates,
renders its sample event, and its generated pytest test passes when run in a subprocess with this
interpreter (as a user runs it: `python -m pytest tests/` in the project)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.starter import STARTER_TEMPLATES

ENV = {**os.environ, "COLUMNS": "200"}
DAG_OF = {"cron": "daily_report", "kafka": "orders", "s3": "landing_files", "assets": "revenue"}
FILES = {
    "cron": ["pipelines/daily_report.py", "tests/test_daily_report.py"],
    "kafka": [
        "pipelines/order_steps.py",
        "pipelines/orders.yaml",
        "podium-dag.schema.json",
        "tests/test_orders.py",
    ],
    "s3": ["pipelines/landing_files.py", "tests/test_landing_files.py"],
    "assets": ["pipelines/orders_assets.py", "tests/test_orders_assets.py"],
}
RENDERED = {
    "cron": "day = '2026-11-25'",
    "kafka": "argv[1] = 'order 1001 recorded (25.5 EUR)'",
    "s3": "uri = 's3://landing/incoming/2026-11-25/orders.csv'",
    "assets": "total_revenue  (no templates)",
}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True, text=True, timeout=180, check=False, env=ENV, cwd=cwd,
    )  # fmt: skip


def test_every_template_is_tested() -> None:
    assert set(STARTER_TEMPLATES) == set(DAG_OF) == {"cron", "kafka", "s3", "assets"}


@pytest.mark.parametrize("template", sorted(DAG_OF))
def test_a_template_project_validates_renders_and_its_test_passes(
    template: str, tmp_path: Path
) -> None:
    project = tmp_path / f"my-{template}"
    made = run("-m", "engine", "init", str(project), "--template", template)
    assert made.returncode == 0, made.stderr
    assert "python -m pytest tests/" in made.stdout
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "events/sample_event.json", *FILES[template]])

    readme = (project / "README.md").read_text()
    assert readme.startswith(f"# my-{template}\n")
    assert "python -m pytest tests/" in readme and "podium run pipelines/ --db podium.db" in readme
    assert isinstance(json.loads((project / "events" / "sample_event.json").read_text()), dict)

    checked = run("-m", "engine", "validate", "pipelines/", cwd=project)
    assert checked.returncode == 0, checked.stderr
    assert DAG_OF[template] in checked.stdout

    event = "events/sample_event.json"
    rendered = run("-m", "engine", "render", DAG_OF[template], "--event", event, cwd=project)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert RENDERED[template] in rendered.stdout

    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/", cwd=project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert " passed" in tested.stdout and "failed" not in tested.stdout


def test_an_unknown_template_is_refused_and_nothing_is_overwritten(tmp_path: Path) -> None:
    bad = run("-m", "engine", "init", str(tmp_path / "x"), "--template", "airflow")
    assert bad.returncode == 2
    assert "invalid choice: 'airflow'" in bad.stderr
    assert not (tmp_path / "x").exists()
    assert run("-m", "engine", "init", str(tmp_path / "y"), "--template", "cron").returncode == 0
    again = run("-m", "engine", "init", str(tmp_path / "y"), "--template", "cron")
    assert again.returncode == 2
    assert "would overwrite README.md" in again.stderr


def test_render_reports_each_failing_field_and_exits_1(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "orders.yaml").write_text(
        "params:\n  day: {type: string, default: '2026-11-25'}\n"
        "tasks:\n"
        "  a: {shell: {argv: [echo, '{{ params.dy }}', '{{ params.day | ds_nodash }}']}}\n"
        "  b: {shell: {argv: [echo, '{{ ds }}']}}\n"
    )
    out = run(
        "-m", "engine", "render", "orders", "--path", str(folder), "--param", "day=2027-01-02"
    )
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith('DAG orders · params {"day":"2027-01-02"} · logical_date none')
    assert (
        "  argv[1] = error: task 'a' field 'argv[1]': 'params' has no attribute 'dy' "
        "(did you mean 'day'?)"
    ) in lines
    assert "  argv[2] = '20270102'" in lines
    assert any(line.startswith("  argv[1] = error: task 'b' field 'argv[1]': 'ds' is undefined")
               for line in lines)  # fmt: skip
    assert "2 template(s) failed to render" in out.stderr

    dated = run(
        "-m", "engine", "render", "orders", "--path", str(folder), "--logical-date", "2026-03-01",
        "--param", "day=2026-03-01", "--json",
    )  # fmt: skip
    assert dated.returncode == 1
    tasks = json.loads(dated.stdout)["tasks"]
    assert tasks["b"] == {"argv[1]": {"value": "2026-03-01"}}

    missing = run("-m", "engine", "render", "nope", "--path", str(folder))
    assert missing.returncode == 2
    assert "no DAG 'nope' in" in missing.stderr and "(DAGs there: orders)" in missing.stderr
