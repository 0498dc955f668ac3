"""The pure OpenLineage parts (engine/lineage_events.py): naming both ways, stable run ids, options,
and the validation of events sent to Podium."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.errors import LineageEventError, PodiumError
from engine.lineage_events import (
    LineageOptions,
    dataset_of,
    parse_run_event,
    run_uuid,
    try_uuid,
    uri_of,
)


@pytest.mark.parametrize(
    ("uri", "dataset"),
    [
        ("s3://landing/crm/", ("s3://landing", "crm/")),
        ("kafka://broker:9092/orders", ("kafka://broker:9092", "orders")),
        ("postgres://dwh:5432/analytics.orders", ("postgres://dwh:5432", "analytics.orders")),
        ("file:///reports/daily.html", ("file://", "reports/daily.html")),
        ("s3://bucket/", ("s3://bucket", "/")),
        ("orders-table", ("ns", "orders-table")),
    ],
)
def test_asset_uri_to_dataset_and_back(uri: str, dataset: tuple[str, str]) -> None:
    assert dataset_of(uri, "ns") == dataset
    if "://" in uri:
        assert uri_of(*dataset) == uri


def test_run_ids_are_stable_uuids() -> None:
    assert run_uuid("r1") == run_uuid("r1") != run_uuid("r2")
    assert uuid.UUID(run_uuid("r1")).version == 5
    assert try_uuid("r1", "t", 1) != try_uuid("r1", "t", 2) != run_uuid("r1")


def test_options_from_env_and_checks() -> None:
    assert LineageOptions.from_env({}).namespace == "podium"
    assert LineageOptions.from_env({"OPENLINEAGE_NAMESPACE": "prod"}).namespace == "prod"
    assert (
        LineageOptions.from_env({"OPENLINEAGE_NAMESPACE": "prod"}, namespace="x").namespace == "x"
    )
    bad: list[dict[str, Any]] = [
        {"queue_size": 0}, {"retries": -1}, {"drain_timeout": -1.0}, {"producer": ""},
    ]  # fmt: skip
    for kwargs in bad:
        with pytest.raises(PodiumError):
            LineageOptions(**kwargs)


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "eventTime": "2026-01-01T00:00:00Z",
        "producer": "urn:x",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "eventType": "COMPLETE",
        "run": {"runId": "3f5e83fa-3480-44ff-99c5-ff943904e5e8"},
        "job": {"namespace": "spark", "name": "etl"},
        "outputs": [
            {
                "namespace": "s3://b",
                "name": "x",
                "outputFacets": {"outputStatistics": {"rowCount": 3}},
            },
            {"namespace": "s3://b", "name": "x"},  # the same dataset twice: once
        ],
    }
    base.update(changes)
    return base


def test_a_valid_event() -> None:
    ev = parse_run_event(event())
    assert (ev.namespace, ev.job, ev.event_type, ev.event_time) == (
        "spark",
        "etl",
        "COMPLETE",
        1767225600.0,
    )
    assert [(d.uri, d.rows) for d in ev.outputs] == [("s3://b/x", None)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eventTime": "2026-01-01T00:00:00"}, "time zone"),
        ({"eventType": None}, "'eventType' must be one of"),
        ({"job": {"namespace": "a", "name": " "}}, "'job.name'"),
        ({"inputs": {"namespace": "a"}}, "'inputs' must be a list"),
        ({"inputs": ["a"]}, "'inputs[0]' must be an object"),
        ({"schemaURL": 3}, "'schemaURL'"),
    ],
)
def test_invalid_events(changes: dict[str, object], message: str) -> None:
    with pytest.raises(LineageEventError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_run_event(event(**changes))
