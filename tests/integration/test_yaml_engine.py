"""YAML DAGs in a real engine: a Python call, a shell step and an HTTP step to a loopback server,
templated from the run's params; failures with their output; the loader among broken files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from engine import Engine, RunState
from engine.loader import load_dags

STEPS = """
def summarize(rows: dict, day: str) -> str:
    return f"{day}: {rows['count']} rows"
"""

PIPELINE = f"""
dag_id: orders_yaml
params:
  day: {{type: string, default: "2026-11-25"}}
  port: {{type: integer}}
defaults:
  retries: 0
  timeout: 30
tasks:
  extract:
    shell:
      argv: [{sys.executable}, -c, "import sys; print('extracting', sys.argv[1]); print('warn', file=sys.stderr)", "{{{{ params.day }}}}"]
  fetch:
    http:
      url: "http://127.0.0.1:{{{{ params.port }}}}/rows/{{{{ params.day | ds_nodash }}}}"
      method: POST
      headers: {{X-Run: "{{{{ run_id }}}}"}}
      json: {{day: "{{{{ params.day }}}}", limit: 5}}
    depends_on: [extract]
  report:
    call: yaml_steps:summarize
    args:
      rows: {{count: 3}}
      day: "{{{{ params.day | add_days(1) }}}}"
    depends_on: [fetch]
"""

FAILING = f"""
dag_id: failing_yaml
tasks:
  boom:
    shell:
      argv: [{sys.executable}, -c, "import sys; print('step one'); print('it broke', file=sys.stderr); sys.exit(4)"]
  after:
    call: yaml_steps:summarize
    args: {{rows: {{count: 0}}, day: x}}
    depends_on: [boom]
"""


@pytest.fixture
def pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "yaml_steps.py").write_text(STEPS)
    (folder / "orders.yaml").write_text(PIPELINE)
    (folder / "failing.yml").write_text(FAILING)
    monkeypatch.syspath_prepend(str(folder))
    return folder


async def test_a_yaml_dag_runs_end_to_end(pipelines: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None, object]] = []

    async def rows(request: web.Request) -> web.Response:
        seen.append((request.match_info["day"], request.headers.get("X-Run"), await request.json()))
        return web.json_response({"count": 3})

    app = web.Application()
    app.router.add_post("/rows/{day}", rows)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        loaded = load_dags(pipelines)
        assert loaded.errors == []
        async with Engine(tmp_path / "p.db", dags=loaded.dags) as podium:
            run = await podium.trigger("orders_yaml", {"port": port})
            done = await run.wait(timeout=30)
            logs = await podium.task_logs(run.run_id, "extract")
    finally:
        await runner.cleanup()
    assert done.state == RunState.SUCCESS, {t: i.error for t, i in done.tasks.items()}
    assert done.tasks["extract"].result == {"returncode": 0, "stdout": "extracting 2026-11-25"}
    assert done.tasks["fetch"].result == {"count": 3}
    assert done.tasks["report"].result == "2026-11-26: 3 rows"
    assert seen == [("20261125", run.run_id, {"day": "2026-11-25", "limit": 5})]
    messages = [line["message"] for line in logs]
    assert "extracting 2026-11-25" in messages and "[stderr] warn" in messages


async def test_a_failing_shell_step_fails_with_its_last_lines(
    pipelines: Path, tmp_path: Path
) -> None:
    loaded = load_dags(pipelines)
    async with Engine(tmp_path / "p.db", dags=loaded.dags) as podium:
        run = await podium.trigger("failing_yaml")
        done = await run.wait(timeout=30)
    assert done.state == RunState.FAILED
    error = done.tasks["boom"].error or ""
    assert f"StepError: shell: {sys.executable!r} exited with code 4; last lines:" in error
    assert error.rstrip().endswith("step one\n[stderr] it broke")
    assert done.tasks["after"].state == "upstream_failed"


GOOD_PY = """
from engine import dag, task

@task
def one() -> int:
    return 1

@dag
def py_dag():
    one()
"""


def test_one_broken_yaml_file_hides_no_other_dag(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.py").write_text(GOOD_PY)
    (folder / "good.yaml").write_text("tasks:\n  a: {shell: {argv: [echo, hi]}}\n")
    (folder / "sub" / "also_good.yml").write_text(
        "dag_id: nested\ntasks:\n  a: {shell: {argv: [echo]}}\n"
    )
    (folder / "broken.yaml").write_text(
        textwrap.dedent("""
        tasks:
          a:
            shell: {argv: [echo]}
            retries: -1
          b: [not, a, task
        """)
    )
    (folder / "invalid.yaml").write_text(
        "tasks:\n  a:\n    shell: {argv: [echo]}\n    retries: -1\n"
    )
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "ci.yaml").write_text("not: a dag\n")
    result = load_dags(folder)
    assert sorted(d.dag_id for d in result.dags) == ["good", "nested", "py_dag"]
    assert [str(e) for e in result.errors] == [
        f"{folder / 'broken.yaml'}:7:1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
        f"{folder / 'invalid.yaml'}:4:5: tasks.a.retries: must be an integer >= 0",
    ]


FAN_OUT_STEPS = """
def list_files(day: str, count: int) -> list:
    return [f"{day}/part-{i}.csv" for i in range(count)]

def size(path: str, unit: str) -> dict:
    return {"path": path, "size": len(path), "unit": unit}

def total(sizes: list, regions: list) -> dict:
    return {"bytes": sum(s["size"] for s in sizes), "files": len(sizes), "regions": regions}

def shout(region: str) -> str:
    return region.upper()
"""

FAN_OUT = """
dag_id: files_of_a_day
params:
  day: {type: string, default: "2026-11-25"}
  count: {type: integer, default: 3}
  regions: {type: list, default: [eu, us]}
tasks:
  list_files:
    call: fan_steps:list_files
    args: {day: "{{ params.day }}", count: "{{ params.count }}"}
  size:
    group: load
    call: fan_steps:size
    map: {path: "{{ tasks.list_files.result }}"}
    args: {unit: bytes}
  shout:
    group: load
    call: fan_steps:shout
    map: {region: "{{ params.regions }}"}
  total:
    call: fan_steps:total
    args: {sizes: "{{ tasks.load.size.result }}", regions: "{{ tasks['load.shout'].result }}"}
  note:
    shell:
      argv: [echo, "{{ tasks.total.result.files }} files"]
"""


async def test_yaml_data_edges_map_and_groups_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fan_steps.py").write_text(FAN_OUT_STEPS)
    (tmp_path / "files.yaml").write_text(FAN_OUT)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_dags(tmp_path)
    assert loaded.errors == []
    (files,) = loaded.dags
    assert files.tasks["load.size"].group == "load"
    assert files.tasks["total"].data_upstream == {"load.size", "load.shout"}
    assert files.tasks["note"].data_upstream == {"total"}
    async with Engine(tmp_path / "f.db", dags=loaded.dags) as podium:
        run = await podium.trigger("files_of_a_day", {"count": 4, "regions": '["eu", "apac"]'})
        done = await run.wait(timeout=60)
    assert done.state == RunState.SUCCESS, {t: i.error for t, i in done.tasks.items()}
    paths = [f"2026-11-25/part-{i}.csv" for i in range(4)]
    assert done.tasks["list_files"].result == paths
    assert [done.tasks[f"load.size[{i}]"].result["path"] for i in range(4)] == paths
    assert done.tasks["total"].result == {
        "bytes": sum(len(p) for p in paths),
        "files": 4,
        "regions": ["EU", "APAC"],
    }
    assert done.tasks["note"].result["stdout"] == "4 files"


async def test_a_yaml_map_over_something_else_than_a_list_fails_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fan_steps.py").write_text(FAN_OUT_STEPS)
    (tmp_path / "one.yaml").write_text(
        textwrap.dedent(
            """
            params:
              day: {type: string, default: "2026-11-25"}
            tasks:
              size:
                call: fan_steps:size
                map: {path: "{{ params.day }}"}
                args: {unit: bytes}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_dags(tmp_path)
    assert loaded.errors == []
    async with Engine(tmp_path / "o.db", dags=loaded.dags) as podium:
        done = await (await podium.trigger("one")).wait(timeout=30)
    assert done.state == RunState.FAILED
    assert "maps over 'path', which is a str, not a list" in (done.tasks["size"].error or "")
