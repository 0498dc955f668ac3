"""Templated values: the context, the date helpers, and the errors a person reads."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from engine import (
    Context,
    DAGError,
    TaskGroup,
    Template,
    TemplateError,
    TemplateRenderError,
    dag,
    task,
)
from engine.templating import add_days, ds, ds_nodash, render_arguments, render_fields


async def _no_checkpoint(value: Any) -> None:
    raise AssertionError("not used")


def make_ctx(
    params: dict[str, Any] | None = None,
    *,
    logical_date: datetime | None = datetime(2026, 11, 25, 4, 0, tzinfo=UTC),
    event: dict[str, Any] | None = None,
    task_id: str = "load",
) -> Context:
    return Context(
        dag_id="nightly",
        run_id="r-1",
        task_id=task_id,
        params=params if params is not None else {"day": "2026-11-25", "region": "eu"},
        try_number=2,
        logical_date=logical_date,
        event=event,
        last_checkpoint=None,
        save_checkpoint=_no_checkpoint,
    )


@task
def load(path: str, options: dict[str, Any] | None = None, *rest: str) -> str:
    return path


@dag
def nightly(day: str = "2026-11-25") -> None:
    load(Template("s3://landing/{{ params.day }}/"))


def render(source: Any, ctx: Context | None = None, field: str = "path") -> Any:
    node = nightly.tasks["load"]
    _, kwargs = render_arguments(node, [], {field: source}, ctx or make_ctx())
    return kwargs[field]


def test_a_template_argument_marks_the_node_and_plain_strings_do_not() -> None:
    @dag
    def plain() -> None:
        load("s3://landing/{{ params.day }}/run.sh")

    assert nightly.tasks["load"].templated
    assert not plain.tasks["load"].templated
    # a plain string is never rendered, whatever it contains or ends with
    assert plain.tasks["load"].args[0].value == "s3://landing/{{ params.day }}/run.sh"


def test_templates_nested_in_lists_and_dicts_mark_the_node() -> None:
    @dag
    def nested() -> None:
        load("x", {"paths": [Template("{{ run_id }}")]})

    assert nested.tasks["load"].templated


def test_context_names() -> None:
    ctx = make_ctx(event={"topic": "orders", "value": {"id": 7}})
    text = (
        "{{ params.day }} {{ params.region }} {{ run_id }} {{ dag_id }} {{ task_id }} "
        "{{ try_number }} {{ logical_date.year }} {{ event.topic }} {{ event.value.id }} "
        "{{ ds }} {{ ds_nodash }}"
    )
    assert render(Template(text), ctx) == (
        "2026-11-25 eu r-1 nightly load 2 2026 orders 7 2026-11-25 20261125"
    )


def test_helpers_as_filters() -> None:
    assert render(Template("{{ logical_date | add_days(-1) | ds }}")) == "2026-11-24"
    assert render(Template("{{ logical_date | ds_nodash }}")) == "20261125"
    assert render(Template("{{ params.day | add_days(7) }}")) == "2026-12-02"
    assert render(Template("{{ params.day | add_days(1) | ds_nodash }}")) == "20261126"


def test_helpers_directly() -> None:
    assert ds(date(2026, 3, 1)) == "2026-03-01"
    assert ds("2026-03-01T23:30:00+00:00") == "2026-03-01"
    assert ds_nodash(datetime(2026, 3, 1, 12)) == "20260301"
    assert add_days(date(2026, 2, 28), 1) == date(2026, 3, 1)
    assert add_days("2026-02-28", 1) == "2026-03-01"
    assert add_days(datetime(2026, 1, 1, 5, tzinfo=UTC), -1) == datetime(
        2025, 12, 31, 5, tzinfo=UTC
    )


def test_params_keys_come_before_dict_methods() -> None:
    ctx = make_ctx({"items": "a,b", "path": "/x"})
    assert render(Template("{{ params.items }} {{ params.path }}"), ctx) == "a,b /x"


def test_nested_values_are_rendered_with_their_field_named() -> None:
    value = {"prefix": Template("{{ params.region }}"), "keys": ["k", Template("{{ ds }}")]}
    assert render(value, field="options") == {"prefix": "eu", "keys": ["k", "2026-11-25"]}


def test_missing_param_names_task_field_and_name() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(Template("s3://landing/{{ params.dy }}/"))
    assert str(caught.value) == (
        "task 'load' field 'path': 'params' has no attribute 'dy' (did you mean 'day'?)"
    )


def test_missing_top_level_name_and_nested_field() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render({"keys": ["a", Template("{{ run_idd }}")]}, field="options")
    assert str(caught.value) == (
        "task 'load' field 'options.keys[1]': 'run_idd' is undefined (did you mean 'run_id'?)"
    )


def test_missing_event_key_says_the_run_has_no_event() -> None:
    with pytest.raises(
        TemplateRenderError, match=r"'event' has no attribute 'topic' \(this run has no event\)"
    ):
        render(Template("{{ event.topic }}"))


def test_nested_event_key_names_its_path() -> None:
    ctx = make_ctx(event={"value": {"id": 1}})
    with pytest.raises(TemplateRenderError, match=r"'event.value' has no attribute 'idd'"):
        render(Template("{{ event.value.idd }}"), ctx)


def test_no_logical_date() -> None:
    ctx = make_ctx(logical_date=None)
    with pytest.raises(
        TemplateRenderError, match=r"field 'path': 'ds' is undefined: this run has no logical_date"
    ):
        render(Template("{{ ds }}"), ctx)
    with pytest.raises(
        TemplateRenderError, match=r"field 'path': ds: no date \(this run has no logical_date\)"
    ):
        render(Template("{{ logical_date | ds }}"), ctx)
    assert render(Template("{{ logical_date }}"), ctx) == "None"


def test_bad_date_and_bad_day_count() -> None:
    with pytest.raises(TemplateRenderError, match=r"add_days: 'soon' is not an ISO date"):
        render(Template("{{ 'soon' | add_days(1) }}"))
    with pytest.raises(
        TemplateRenderError, match=r"add_days: the number of days must be an integer"
    ):
        render(Template("{{ ds | add_days('x') }}"))


def test_the_sandbox_refuses_internals() -> None:
    with pytest.raises(TemplateRenderError, match=r"task 'load' field 'path': SecurityError"):
        render(Template("{{ params.__class__.__mro__ }}"))
    with pytest.raises(TemplateRenderError, match="SecurityError"):
        render(Template("{% set _ = params.update({'x': 1}) %}"))


def test_syntax_error_at_definition() -> None:
    with pytest.raises(TemplateError, match=r"invalid template 's3://\{\{ params.day': .*line 1"):
        Template("s3://{{ params.day")
    assert issubclass(TemplateError, DAGError)


def test_positional_argument_names_in_errors() -> None:
    node = nightly.tasks["load"]
    ctx = make_ctx()
    with pytest.raises(TemplateRenderError, match="field 'rest\\[1\\]'"):
        render_arguments(node, ["a", None, "b", Template("{{ nope }}")], {}, ctx)
    with pytest.raises(TemplateRenderError, match="field 'path'"):
        render_arguments(node, [Template("{{ nope }}")], {}, ctx)


def test_native_templates_keep_the_value_type_and_text_ones_do_not() -> None:
    ctx = make_ctx({"n": 3, "days": ["a", "b"]})
    assert render(Template("{{ params.days }}", native=True), ctx) == ["a", "b"]
    assert render(Template(" {{- params.n + 1 -}} ", native=True), ctx) == 4
    assert render(Template("{{ params.n }}"), ctx) == "3"
    assert render(Template("n={{ params.n }}", native=True), ctx) == "n=3"  # not one expression
    assert type(render(Template("{{ params }}", native=True), ctx)) is dict


def test_a_native_template_naming_a_missing_value_fails_like_a_text_one() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(Template("{{ params.dy }}", native=True))
    assert str(caught.value) == (
        "task 'load' field 'path': 'params' has no attribute 'dy' (did you mean 'day'?)"
    )


def test_task_references_are_found_in_every_spelling() -> None:
    found = Template(
        "{{ tasks.a.result }} {{ tasks['load.clean'].result.rows }} "
        "{% for x in tasks.grp.b.result %}{{ x }}{% endfor %} {{ tasks.c }} {{ params.tasks }}"
    ).task_references
    assert found == {"a", "load.clean", "grp.b"}


@task
def combine(rows: Any, label: str) -> str:
    return label


@task
def extract() -> list[int]:
    return [1, 2]


@dag
def with_results() -> None:
    with TaskGroup("load"):
        rows = extract()
    combine(rows, Template("{{ tasks.load.extract.result | length }} rows"))


def test_a_template_naming_a_result_is_a_data_edge_and_renders_it() -> None:
    node = with_results.tasks["combine"]
    assert node.data_upstream == {"load.extract"}
    results = {"load.extract": b"[1, 2, 3]"}
    args, _ = render_arguments(node, ["x", node.args[1].value], {}, make_ctx(), results)
    assert args[1] == "3 rows"
    fields = render_fields(node, make_ctx(), result_of=lambda task_id: [task_id] * 4)
    assert [(f.field, f.value) for f in fields] == [("label", "4 rows")]


def test_a_template_naming_an_unknown_task_fails_the_definition() -> None:
    with pytest.raises(DAGError) as caught:

        @dag
        def wrong() -> None:
            extract()
            combine([], Template("{{ tasks.extrat.result }}"))

    assert str(caught.value) == (
        "DAG 'wrong', task 'combine': template '{{ tasks.extrat.result }}' reads the result of "
        "'extrat', which is not a task declared before it (did you mean 'extract'?)"
    )


def test_a_native_template_gives_text_for_what_json_cannot_carry() -> None:
    ctx = make_ctx()
    assert render(Template("{{ logical_date }}", native=True), ctx) == "2026-11-25 04:00:00+00:00"
    assert render(Template("{{ logical_date.year }}", native=True), ctx) == 2026
