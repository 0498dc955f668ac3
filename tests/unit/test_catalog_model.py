"""The catalog's pure parts: ``fresh_within``, freshness, schema changes, and who uses an asset
from stored DAG descriptions."""

from __future__ import annotations

import pytest

from engine import Asset, DAGError, dag, task
from engine.assets import describe_schema_changes, freshness, schema_changes
from engine.lineage import declared_assets, usage_of_dags, usage_of_descriptions
from sensors import OnAssets


def test_fresh_within_must_be_positive_seconds() -> None:
    assert Asset("s3://a/", fresh_within=60).fresh_within == 60
    for bad in (0, -1, "1h", True):
        with pytest.raises(DAGError, match="fresh_within"):
            Asset("s3://a/", fresh_within=bad)  # type: ignore[arg-type]


def test_freshness_counts_from_the_last_event_or_the_declaration() -> None:
    assert freshness(None, 10.0, 0.0, 100.0) is None
    assert freshness(60, 50.0, 0.0, 100.0) == {
        "fresh_within": 60,
        "fresh": True,
        "deadline": 110.0,
        "overdue": 0.0,
    }
    stale = freshness(60, None, 0.0, 100.0)
    assert stale is not None and not stale["fresh"] and stale["overdue"] == 40.0


def test_schema_changes_name_added_removed_and_changed_columns() -> None:
    before = [{"name": "id", "type": "int"}, {"name": "amount", "type": "int"}, "zip"]
    after = [{"name": "id", "type": "int"}, {"name": "amount", "type": "float"}, "region"]
    changes = schema_changes(before, after)
    assert changes == {
        "added": ["region"],
        "removed": ["zip"],
        "changed": [{"name": "amount", "from": {"type": "int"}, "to": {"type": "float"}}],
    }
    assert describe_schema_changes(changes) == (
        "added: region; removed: zip; changed: amount (int -> float)"
    )
    assert schema_changes(before, list(before)) is None
    assert schema_changes(None, after) is None and schema_changes(before, None) is None


ORDERS = Asset("postgres://dwh/orders", name="orders")


@task(inlets=["s3://crm/"], outlets=[ORDERS])
def load() -> None: ...


@task(inlets=[ORDERS])
def report() -> None: ...


@dag
def producer() -> None:
    load()


@dag(triggers=[OnAssets(Asset(ORDERS.uri, fresh_within=600) & "s3://crm/")])
def consumer() -> None:
    report()


def test_usage_from_dags_and_from_their_stored_descriptions_agree() -> None:
    dags = {"producer": producer, "consumer": consumer}
    live = usage_of_dags(dags)
    stored = usage_of_descriptions(d.describe() for d in dags.values())
    for found in (live, stored):
        assert found.of_asset(ORDERS.uri) == {
            "producers": ["producer.load"],
            "consumers": ["consumer.report"],
            "triggers": ["consumer"],
        }
        assert found.dag_outlets("producer") == [ORDERS.uri]
        assert found.trigger_assets["consumer"] == [ORDERS.uri, "s3://crm/"]


def test_declarations_of_one_uri_merge_name_and_freshness() -> None:
    merged = {a.uri: a for a in declared_assets({"producer": producer, "consumer": consumer})}
    assert merged[ORDERS.uri].name == "orders" and merged[ORDERS.uri].fresh_within == 600
