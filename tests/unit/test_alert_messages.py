"""What each alert says, worded by the pure functions of ``engine.alerts`` (no engine, no loop)."""

from __future__ import annotations

from engine.alerts import (
    freshness_alert,
    last_line,
    schema_change_alert,
    slowdown_alert,
)
from engine.asset_alerts import FreshnessMissed, SchemaChanged
from engine.slowness import Slowdown
from engine.store.records import AssetEventRow


def _event(seq: int = 7) -> AssetEventRow:
    return AssetEventRow(
        seq=seq, event_id="e", uri="s3://b/orders", ts=100.0, run_id="r1", dag_id="etl",
        task_id="load", try_number=2, metadata=None, schema=None,
    )  # fmt: skip


def test_last_line_is_the_last_non_blank_line_cut_to_the_limit() -> None:
    assert last_line("Traceback\n  File x\nValueError: bad\n\n") == "ValueError: bad"
    assert last_line(" \n ") is None and last_line(None) is None
    assert last_line("x" * 10, limit=5) == "xxxx…"


def test_a_slowdown_names_the_task_its_time_and_its_baseline() -> None:
    slow = Slowdown(
        dag_id="etl", run_id="r1", task_id="load", try_number=1,
        elapsed=95.0, baseline=30.0, threshold=90.0, samples=20,
    )  # fmt: skip
    alert = slowdown_alert(slow, 3.0, now=500.0, url="http://ui/runs/r1")
    assert alert.message == (
        "Task etl.load has been running 1m 35s, more than 3x its usual 30.0s "
        "(median of its last 20 successful tries)"
    )
    assert (alert.kind, alert.dag_id, alert.run_id, alert.task_id, alert.try_number) == (
        "slowdown", "etl", "r1", "load", 1,
    )  # fmt: skip
    assert alert.details == {"elapsed": 95.0, "baseline": 30.0, "threshold": 90.0, "samples": 20}
    assert alert.at == 500.0 and alert.url == "http://ui/runs/r1"


def test_asset_alerts_name_the_asset_and_its_last_writer() -> None:
    changed = SchemaChanged(_event(), {"added": ["region"], "removed": [], "changed": []})
    schema = schema_change_alert(changed, now=1.0, url=None)
    assert schema.message == (
        "Asset s3://b/orders changed its schema in the event of etl.load (run r1): added: region"
    )
    assert (schema.asset, schema.dag_id, schema.try_number) == ("s3://b/orders", "etl", 2)
    assert schema.details["seq"] == 7

    never = FreshnessMissed(uri="s3://b/x", fresh_within=3600, deadline=10.0, overdue=60, last=None)
    fresh = freshness_alert(never, now=2.0, url=None)
    assert fresh.message == (
        "Asset s3://b/x is not fresh: no new event within 1h 0m of it was declared, with no "
        "event yet; overdue 1m 0s"
    )
    assert (fresh.dag_id, fresh.run_id, fresh.details["last_event_seq"]) == ("", "", None)
