"""The run state machine: trigger rules and run outcomes, without an event loop."""

from __future__ import annotations

import pytest

from engine.scheduler import RunProgress, Verdict, evaluate, graph_spec
from engine.states import RunState, TaskState, TriggerRule

S, F, K, UF = TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED


def diamond(rules: dict[str, TriggerRule] | None = None) -> RunProgress:
    spec = graph_spec(["a", "b", "c", "d"], {"b": ["a"], "c": ["a"], "d": ["b", "c"]}, rules or {})
    return RunProgress(spec)


def test_roots_are_ready_first_then_downstream_after_all_upstreams() -> None:
    p = diamond()
    ready, resolved = p.start()
    assert ready == ["a"] and resolved == []
    assert p.finish("a", S) == (["b", "c"], [])
    assert p.finish("b", S) == ([], [])
    assert p.finish("c", S) == (["d"], [])
    assert p.outcome() is None
    p.finish("d", S)
    assert p.outcome() is RunState.SUCCESS


def test_failure_propagates_upstream_failed_transitively() -> None:
    p = diamond()
    p.start()
    ready, resolved = p.finish("a", F)
    assert ready == []
    assert resolved == [("b", UF), ("d", UF), ("c", UF)] or set(resolved) == {
        ("b", UF),
        ("c", UF),
        ("d", UF),
    }
    assert p.outcome() is RunState.FAILED


def test_skip_propagates_for_all_success_but_none_failed_runs() -> None:
    p = diamond({"d": TriggerRule.NONE_FAILED})
    p.start()
    p.finish("a", S)
    p.finish("b", K)
    assert p.finish("c", S) == (["d"], [])
    p.finish("d", S)
    assert p.outcome() is RunState.SUCCESS

    q = diamond()
    q.start()
    q.finish("a", S)
    _, resolved = q.finish("b", K)
    assert resolved == [("d", K)]


@pytest.mark.parametrize(
    ("rule", "finals", "expected"),
    [
        (TriggerRule.ALL_SUCCESS, [S, S], Verdict.RUN),
        (TriggerRule.ALL_SUCCESS, [S, F], Verdict.UPSTREAM_FAILED),
        (TriggerRule.ALL_SUCCESS, [S, K], Verdict.SKIP),
        (TriggerRule.ALL_FAILED, [F, F], Verdict.RUN),
        (TriggerRule.ALL_FAILED, [F, S], Verdict.SKIP),
        (TriggerRule.ALL_DONE, [F, K], Verdict.RUN),
        (TriggerRule.ONE_SUCCESS, [F, F], Verdict.UPSTREAM_FAILED),
        (TriggerRule.ONE_SUCCESS, [K, K], Verdict.SKIP),
        (TriggerRule.ONE_FAILED, [S, S], Verdict.SKIP),
        (TriggerRule.NONE_FAILED, [S, K], Verdict.RUN),
        (TriggerRule.NONE_FAILED, [S, UF], Verdict.UPSTREAM_FAILED),
    ],
)
def test_trigger_rules_when_all_upstreams_are_done(
    rule: TriggerRule, finals: list[TaskState], expected: Verdict
) -> None:
    success = finals.count(S)
    failed = sum(1 for s in finals if s in (F, UF))
    skipped = finals.count(K)
    assert evaluate(rule, len(finals), len(finals), success, failed, skipped) is expected


def test_one_success_and_one_failed_fire_early() -> None:
    assert evaluate(TriggerRule.ONE_SUCCESS, 3, 1, 1, 0, 0) is Verdict.RUN
    assert evaluate(TriggerRule.ONE_FAILED, 3, 1, 0, 1, 0) is Verdict.RUN
    assert evaluate(TriggerRule.ALL_DONE, 3, 2, 2, 0, 0) is Verdict.WAIT


def test_all_done_cleanup_runs_after_failure_but_run_still_fails() -> None:
    p = diamond({"d": TriggerRule.ALL_DONE})
    p.start()
    p.finish("a", S)
    p.finish("b", F)
    ready, _ = p.finish("c", S)
    assert ready == ["d"]
    p.finish("d", S)
    assert p.outcome() is RunState.FAILED


def test_join_over_many_upstreams_is_counted_not_scanned() -> None:
    n = 2000
    order = ["root", *[f"t{i}" for i in range(n)], "join"]
    upstream = {f"t{i}": ["root"] for i in range(n)} | {"join": [f"t{i}" for i in range(n)]}
    p = RunProgress(graph_spec(order, upstream))
    assert p.start()[0] == ["root"]
    assert len(p.finish("root", S)[0]) == n
    for i in range(n - 1):
        assert p.finish(f"t{i}", S) == ([], [])
    assert p.finish(f"t{n - 1}", S) == (["join"], [])


def test_reloaded_progress_resumes_where_it_stopped() -> None:
    spec = graph_spec(["a", "b", "c"], {"b": ["a"], "c": ["b"]})
    p = RunProgress(spec, {"a": S, "b": F})
    ready, resolved = p.start()
    assert ready == [] and resolved == [("c", UF)]
    assert p.outcome() is RunState.FAILED


def test_finishing_twice_is_an_error() -> None:
    p = diamond()
    p.start()
    p.finish("a", S)
    with pytest.raises(ValueError, match="already finished"):
        p.finish("a", S)
