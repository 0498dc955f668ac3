"""The asset model and conditions (``engine.assets``): pure, no engine."""

from __future__ import annotations

import pytest

from engine import DAGError
from engine.assets import (
    AllOf,
    AnyOf,
    Asset,
    ReportedAssetEvent,
    as_condition,
    describe,
    evaluate,
    explain,
    missing,
    spec,
    task_outputs,
    uris_of,
)
from sensors import OnAssets

A, B, C = Asset("s3://a"), Asset("s3://b"), Asset("pg://dwh/c")


def test_and_or_build_a_flat_tree() -> None:
    cond = A & (B | C)
    assert cond == AllOf((A, AnyOf((B, C))))
    assert (A & B & C) == AllOf((A, B, C))  # flattened, not nested
    assert (A | B | C) == AnyOf((A, B, C))
    assert ("s3://a" & B) == AllOf((A, B))  # a URI string works on either side
    assert (B | "s3://a") == AnyOf((B, A))
    assert as_condition([A, B]) == AllOf((A, B))
    assert uris_of(A & (B | A)) == ("s3://a", "s3://b")


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (set(), False),
        ({"s3://a"}, False),
        ({"s3://b", "pg://dwh/c"}, False),
        ({"s3://a", "s3://b"}, True),
        ({"s3://a", "pg://dwh/c"}, True),
        ({"s3://a", "s3://b", "pg://dwh/c", "other://x"}, True),
    ],
)
def test_evaluate_a_and_b_or_c(present: set[str], expected: bool) -> None:
    assert evaluate(A & (B | C), present) is expected


def test_explain_says_which_parts_are_met_and_what_is_missing() -> None:
    cond = A & (B | C)
    tree = explain(cond, {"s3://b"})
    assert tree == {
        "op": "all",
        "met": False,
        "parts": [
            {"asset": "s3://a", "met": False},
            {
                "op": "any",
                "met": True,
                "parts": [{"asset": "s3://b", "met": True}, {"asset": "pg://dwh/c", "met": False}],
            },
        ],
    }
    assert missing(cond, {"s3://b"}) == ["s3://a"]
    assert missing(cond, set()) == ["s3://a", "s3://b", "pg://dwh/c"]
    assert missing(cond, {"s3://a", "pg://dwh/c"}) == []


def test_describe_and_spec() -> None:
    cond = A & (B | C)
    assert describe(cond) == "s3://a & (s3://b | pg://dwh/c)"
    assert spec(cond) == {"all": ["s3://a", {"any": ["s3://b", "pg://dwh/c"]}]}
    assert repr(OnAssets(cond)) == "OnAssets(s3://a & (s3://b | pg://dwh/c))"


def test_assets_are_equal_by_uri_and_validated() -> None:
    assert Asset("s3://a", name="A", metadata={"owner": "x"}) == A
    assert len({A, Asset("s3://a")}) == 1
    for bad in ("", " s3://a", 3):
        with pytest.raises(DAGError):
            Asset(bad)  # type: ignore[arg-type]
    with pytest.raises(DAGError):
        as_condition([])


def test_on_assets_matches_the_events_of_its_assets() -> None:
    trig = OnAssets(A & (B | C))
    assert trig.matches({"uri": "s3://b"})
    assert not trig.matches({"uri": "s3://z"})
    assert trig.source_key("d", 0) == "assets"
    assert trig.source(dag_id="d", index=0, clock=None) is None  # type: ignore[arg-type]


def test_task_outputs_one_per_outlet_and_reports_stand_for_their_outlet() -> None:
    reported = [
        ReportedAssetEvent("s3://a", {"rows": 3}),
        ReportedAssetEvent("s3://runtime/eu", None),
    ]
    events = task_outputs(
        [A, B], reported, run_id="r", dag_id="d", task_id="t", try_number=2, now=5.0
    )
    assert [(e.uri, e.metadata) for e in events] == [
        ("s3://b", None),
        ("s3://a", {"rows": 3}),
        ("s3://runtime/eu", None),
    ]
    assert len({e.event_id for e in events}) == 3
    assert all(e.event_id.startswith("asset:r:t:2:") for e in events)
    assert task_outputs([], [], run_id="r", dag_id="d", task_id="t", try_number=1, now=0) == []
