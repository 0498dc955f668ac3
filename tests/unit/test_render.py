"""``podium render``'s core: every template of every task rendered as a try would render it, each
failure reported per task and field with the run-time message, params from the event."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import ParamError, Template, dag, steps, task
from engine.render import event_params, parse_logical_date, render_dag
from engine.yaml_dags import load_yaml_dag
from sensors import Cron, KafkaTopic, S3Events


@task
def load(path: str, options: dict[str, Any], *rest: str) -> str:
    return path


@task
def plain(x: int) -> int:
    return x


@dag(triggers=[Cron("0 4 * * *")])
def nightly(day: str = "2026-11-25", region: str = "eu") -> None:
    done = load(
        Template("s3://landing/{{ params.day }}/"),
        {"since": Template("{{ logical_date | add_days(-1) | ds }}"), "fixed": 3},
        Template("{{ params.dy }}"),
        Template("{{ run_id }}/{{ task_id }}/{{ try_number }}"),
    )
    plain(1) >> done


def fields(rendering: Any, task_id: str) -> dict[str, Any]:
    [found] = [t for t in rendering.tasks if t.task_id == task_id]
    return {f.field: f.error or f.value for f in found.fields}


def test_every_template_is_rendered_and_each_failure_is_reported_on_its_own() -> None:
    rendering = render_dag(
        nightly, {"day": "2026-12-01"}, logical_date=datetime(2026, 12, 2, tzinfo=UTC)
    )
    assert [t.task_id for t in rendering.tasks] == ["plain", "load"]
    assert fields(rendering, "plain") == {}
    assert fields(rendering, "load") == {
        "path": "s3://landing/2026-12-01/",
        "options.since": "2026-12-01",
        "rest[0]": "task 'load' field 'rest[0]': 'params' has no attribute 'dy' "
        "(did you mean 'day'?)",
        "rest[1]": "<run_id>/load/1",
    }
    assert rendering.errors == [fields(rendering, "load")["rest[0]"]]
    assert rendering.params == {"day": "2026-12-01", "region": "eu"}


def test_without_a_logical_date_ds_fails_as_in_a_manual_run() -> None:
    since = fields(render_dag(nightly), "load")["options.since"]
    assert since == (
        "task 'load' field 'options.since': add_days: no date (this run has no logical_date)"
    )


def test_unknown_params_are_refused_like_a_trigger() -> None:
    with pytest.raises(ParamError, match="unknown param"):
        render_dag(nightly, {"dy": "2026-12-01"})


def test_a_yaml_dag_renders_its_args_shell_and_http_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "render_helpers.py").write_text("def keep(path: str) -> str:\n    return path\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    file = tmp_path / "orders.yaml"
    file.write_text(
        textwrap.dedent(
            """
            params:
              day: {type: string, default: "2026-11-25"}
            tasks:
              extract:
                shell: {argv: [exporter, "--day={{ params.day | add_days(1) }}"], env: {R: x}}
              keep:
                call: render_helpers:keep
                args: {path: "s3://{{ event.bucket }}/{{ params.day }}"}
                depends_on: [extract]
              ping:
                http: {url: "https://hooks.example/{{ dag_id }}", json: {run: "{{ run_idd }}"}}
            """
        )
    )
    rendering = render_dag(load_yaml_dag(file), {"day": "2026-01-31"})
    assert fields(rendering, "extract") == {"argv[1]": "--day=2026-02-01"}
    assert fields(rendering, "keep") == {
        "path": "task 'keep' field 'path': 'event' has no attribute 'bucket' (this run has no event)"
    }
    assert fields(rendering, "ping") == {
        "url": "https://hooks.example/orders",
        "json.run": "task 'ping' field 'json.run': 'run_idd' is undefined (did you mean 'run_id'?)",
    }


@task
def echo(text: str) -> str:
    return text


@dag(triggers=[KafkaTopic("orders")])
def on_order(id: int = 0, amount: float = 0.0) -> None:
    echo(Template("{{ params.id }} {{ params.amount }} {{ event.topic }}:{{ event.offset }}"))


@dag(triggers=[KafkaTopic("orders", params=lambda p: {"id": p["value"]["order"]})])
def mapped(id: int = 0) -> None:
    echo(Template("{{ params.id }}"))


@dag(triggers=[S3Events(bucket="landing", queue_url="http://127.0.0.1:1/q")])
def on_file(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
    echo(Template("s3://{{ params.bucket }}/{{ params.key }} ({{ params.size }})"))


def test_an_event_gives_the_params_its_trigger_would() -> None:
    message = {"topic": "orders", "offset": 7, "value": {"id": "12", "amount": 3}}
    assert fields(render_dag(on_order, event=message), "echo") == {"text": "12 3.0 orders:7"}
    assert fields(render_dag(mapped, event={"value": {"order": 5}}), "echo") == {"text": "5"}
    s3 = {"eventName": "ObjectCreated:Put", "bucket": "landing", "key": "a.csv", "size": 9}
    assert event_params(on_file, s3) == {"bucket": "landing", "key": "a.csv", "size": 9}
    assert fields(render_dag(on_file, event=s3), "echo") == {"text": "s3://landing/a.csv (9)"}
    # given params win over the event's
    assert fields(render_dag(on_order, {"id": 1}, event=message), "echo")["text"].startswith("1 ")


def test_a_timer_event_s_slot_is_the_logical_date() -> None:
    rendering = render_dag(nightly, event={"slot": "2026-11-25T04:00:00+00:00"})
    assert rendering.logical_date == datetime(2026, 11, 25, 4, tzinfo=UTC)
    assert fields(rendering, "load")["options.since"] == "2026-11-24"


def test_logical_dates() -> None:
    assert parse_logical_date("2026-11-25") == datetime(2026, 11, 25, tzinfo=UTC)
    assert parse_logical_date("2026-11-25T06:00:00+01:00") == datetime(2026, 11, 25, 5, tzinfo=UTC)
    with pytest.raises(Exception, match="not an ISO date"):
        parse_logical_date("yesterday")


def test_steps_used_from_python_render_too() -> None:
    @dag
    def shelled(day: str = "2026-11-25") -> None:
        task(task_id="export")(steps.shell)([Template("echo"), Template("{{ params.day }}")])

    assert fields(render_dag(shelled), "export") == {"argv[0]": "echo", "argv[1]": "2026-11-25"}
