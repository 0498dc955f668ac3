"""DAG definition and validation, without an event loop."""

from __future__ import annotations

import pytest

from engine import Context, DAGError, ParamError, dag, task
from engine.dag_builder import TaskRef


@task
def one() -> int:
    return 1


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
async def with_ctx(ctx: Context, x: int) -> int:
    return x


def test_data_edges_and_parallel_roots() -> None:
    @dag
    def pipeline(day: str = "today") -> None:
        a, b = one(), one()
        add(a, b)

    assert list(pipeline.tasks) == ["one", "one_2", "add"]
    assert pipeline.roots == ("one", "one_2")
    assert pipeline.tasks["add"].upstream == ("one", "one_2")
    assert pipeline.tasks["add"].data_upstream == {"one", "one_2"}
    assert pipeline.params["day"].default == "today"


def test_order_only_edges_with_lists() -> None:
    @dag
    def pipeline() -> None:
        a, b, c = one(), one(), one()
        [a, b] >> c
        c >> add(1)

    assert pipeline.tasks["one_3"].upstream == ("one", "one_2")
    assert pipeline.tasks["add"].upstream == ("one_3",)
    assert pipeline.tasks["add"].data_upstream == frozenset()


def test_explicit_task_id_and_duplicates() -> None:
    @dag
    def ok() -> None:
        one.override(task_id="first")()
        one()

    assert set(ok.tasks) == {"first", "one"}

    with pytest.raises(DAGError, match="duplicate task id 'x'"):

        @dag
        def dup() -> None:
            one.override(task_id="x")()
            one.override(task_id="x")()


def test_cycle_names_the_path() -> None:
    with pytest.raises(DAGError, match=r"cycle: (add -> add_2 -> add|add_2 -> add -> add_2)"):

        @dag
        def cyclic() -> None:
            a = add(1)
            b = add(a)
            b >> a


def test_unknown_reference_from_another_dag() -> None:
    leaked: list[TaskRef] = []

    @dag
    def first() -> None:
        leaked.append(one())

    with pytest.raises(DAGError, match="unknown reference to 'one'"):

        @dag
        def second() -> None:
            add(leaked[0])


def test_bad_limits_and_options() -> None:
    with pytest.raises(DAGError, match="concurrency"):
        task(concurrency=0)(lambda: 1)
    with pytest.raises(DAGError, match="retries"):
        task(retries=-1)(lambda: 1)
    with pytest.raises(DAGError, match="timeout"):
        task(timeout=0)(lambda: 1)
    with pytest.raises(DAGError, match="unknown trigger rule"):
        task(trigger_rule="sometimes")(lambda: 1)
    with pytest.raises(DAGError, match="max_active_runs"):

        @dag(max_active_runs=0)
        def limited() -> None:
            one()


def test_missing_argument_and_context_injection() -> None:
    with pytest.raises(DAGError, match="missing argument"):

        @dag
        def broken() -> None:
            add()

    @dag
    def fine() -> None:
        with_ctx(one())

    node = fine.tasks["with_ctx"]
    assert node.context_param == "ctx"
    assert node.upstream == ("one",)


def test_calling_a_task_outside_a_dag_is_a_clear_error() -> None:
    with pytest.raises(DAGError, match=r"outside a @dag function; call one.fn"):
        one()
    assert one.fn() == 1


def test_refs_cannot_be_used_as_values_while_building() -> None:
    with pytest.raises(DAGError, match="not known while the DAG is built"):

        @dag
        def branching() -> None:
            if one():
                pass


def test_always_rule_cannot_take_results() -> None:
    cleanup = task(trigger_rule="always")(lambda x: x)
    with pytest.raises(DAGError, match="'always' does not wait"):

        @dag
        def bad() -> None:
            cleanup(one())


def test_params_validation_and_coercion() -> None:
    @dag
    def typed(day: str, count: int = 3, ratio: float = 0.5, dry: bool = False) -> None:
        one()

    assert typed.validate_params({"day": "d"}) == {
        "day": "d",
        "count": 3,
        "ratio": 0.5,
        "dry": False,
    }
    assert typed.validate_params({"day": "d", "count": "7", "dry": "true"})["count"] == 7
    with pytest.raises(ParamError, match="missing required param 'day'"):
        typed.validate_params({})
    with pytest.raises(ParamError, match="unknown param"):
        typed.validate_params({"day": "d", "colour": "red"})
    assert typed.validate_params({"day": "d", "extra": 1}, strict=False)["extra"] == 1
    with pytest.raises(ParamError, match="expects int"):
        typed.validate_params({"day": "d", "count": "many"})


def test_empty_dag_is_rejected() -> None:
    with pytest.raises(DAGError, match="has no tasks"):

        @dag
        def empty() -> None:
            pass


def test_public_api_is_exported() -> None:
    import engine
    import sensors

    for module in (engine, sensors):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
    assert {"Engine", "dag", "task", "Context", "RunState", "TaskState"} <= set(engine.__all__)
    assert {"Cron", "Every", "KafkaTopic", "S3Events", "AfterDag", "Trigger"} <= set(
        sensors.__all__
    )
