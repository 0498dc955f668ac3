"""The streaming example end to end: its own broker and moto, orders and files, one run each."""

from __future__ import annotations

from pathlib import Path

from examples.streaming.__main__ import run_demo


async def test_orders_and_files_each_start_their_pipeline(tmp_path: Path) -> None:
    result = await run_demo(tmp_path, orders=6, files=2)
    runs = result["runs"]
    by_dag: dict[str, list[str]] = {}
    for run in runs:
        by_dag.setdefault(run.dag_id, []).append(run.state.value)
    assert by_dag == {"on_order": ["success"] * 6, "on_landing_file": ["success"] * 2}
    files = sorted(r.params["key"] for r in runs if r.dag_id == "on_landing_file")
    assert files == ["incoming/day 0 ü.csv", "incoming/day 1 ü.csv"]
    rows = sorted(
        r.tasks["count_rows"].result["rows"] for r in runs if r.dag_id == "on_landing_file"
    )
    assert rows == [10, 20]
    totals = sorted(r.tasks["price_order"].result["total"] for r in runs if r.dag_id == "on_order")
    amounts = (10.0, 13.5, 17.0, 20.5, 24.0, 27.5)
    assert totals == sorted(round(a + round(a * 0.19, 2), 2) for a in amounts)
    assert [d["error"].split(" at ")[0] for d in result["dead"]] == ["invalid JSON"]
    assert result["outcomes"]["filtered"] == 1  # the object under archive/
