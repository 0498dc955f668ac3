"""The benchmark workloads, once each at a reduced size, on Podium (on asyncio's loop and on uvloop)
and on the floor, and every runner row of ``make bench`` (threads, Process, Dask, Virtualenv and
their floors) on a fan-out of 4 tasks: correctness only.

Same workload and runner code as ``make bench`` (``benchmarks/``), each implementation on the loop it
is measured on; no timing is asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

# `benchmarks` is a top-level folder of the repo, importable because tests/conftest.py puts the repo
# root on sys.path.
from benchmarks import runners, runners_table
from benchmarks import workloads as w
from benchmarks.run import IMPLS, measure_once, on_loop_of

SMALL: dict[str, Callable[[], w.Workload]] = {
    "W1": lambda: w.w1(n=50),
    "W2": lambda: w.w2(n=20),
    "W3-seq": lambda: w.w3(runs=10, mode="sequential"),
    "W3-conc": lambda: w.w3(runs=10, mode="concurrent"),
    "W4": lambda: w.w4(n=50, seconds=0.01, limit=10),
    "W5": lambda: w.w5(n=50),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("key", list(SMALL))
def test_workload_runs_correctly(key: str, impl: str, tmp_path: Path) -> None:
    wl = SMALL[key]()
    assert wl.key == key

    outcome = on_loop_of(impl, measure_once(impl, wl, tmp_path / "state.db"))

    assert outcome.run_states == ["success"] * wl.runs
    if key == "W1":
        assert outcome.sink_results == [[50, 100]]  # join got 50 results, each root's 1 + 1
    elif key == "W2":
        assert outcome.sink_results == [20]  # 1, then +1 nineteen times
    elif key == "W5":
        assert outcome.sink_results == [[50, 1275]]  # join got the 50 mapped results, 1..50
        assert wl.tasks_per_measurement == 52
    elif key.startswith("W3"):
        assert outcome.sink_results == [3] * 10
    else:
        assert wl.probe is not None
        assert wl.probe.finished == 50
        assert 1 < wl.probe.peak <= 10  # ran concurrently, never over the limit
        assert wl.probe.live == 0
    wl.check(outcome)  # the check `make bench` applies agrees
    assert (tmp_path / "state.db").exists()


def test_every_benchmark_workload_has_a_smoke_size() -> None:
    assert set(SMALL) == set(w.WORKLOADS)


def test_a_uvloop_implementation_refuses_another_loop(tmp_path: Path) -> None:
    wl = SMALL["W1"]()
    with pytest.raises(RuntimeError, match="on uvloop"):  # "podium": asyncio's default loop
        on_loop_of("podium", measure_once("podium-uvloop", wl, tmp_path / "state.db"))
    assert not (tmp_path / "state.db").exists()


RUNNER_ROWS = [r.key for r in runners.ROWS if not r.dask]
DASK_ROWS = [r.key for r in runners.ROWS if r.dask]
# tiny fan-outs; the venv rows build an environment with no packages (uv only, no download)
TINY = runners.Params(tasks=4, iterations=1000, requirements=())


@pytest.mark.parametrize("key", RUNNER_ROWS)
def test_runner_row_measures_correctly(key: str) -> None:
    result = runners.measure_row(key, TINY, reps=1, warmup=False)

    assert result["invalid"] is None
    assert result["row"] == key and len(result["walls_s"]) == 1
    assert result["tasks"] == (4 if result["group"] in ("cpu", "noop") else 1)
    assert result["ms_per_task"] > 0


def test_every_runner_row_is_covered_and_derives_its_figures() -> None:
    assert set(RUNNER_ROWS) | set(DASK_ROWS) == set(runners.ROWS_BY_KEY)
    assert set(DASK_ROWS) == {"cpu-podium-dask2", "noop-podium-dask2", "noop-raw-dask2"}
    pair = ["noop-podium-process2", "noop-floor-pool2"]
    payload = {
        "settings": {"reps": 1},
        "results": [runners.measure_row(k, TINY, reps=1, warmup=False) for k in pair],
    }
    payload["figures"] = runners_table.derive(payload["results"])

    assert set(payload["figures"]) == {"pool_overhead_ms_per_task"}
    text = runners_table.markdown(payload)
    assert "noop-podium-process2" in text and "bare ProcessPoolExecutor(2)" in text


def test_a_runner_row_runs_in_its_own_subprocess_as_make_bench_runs_it() -> None:
    result = runners_table.spawn_row(
        "noop-floor-threads", reps=1, tasks=4, iterations=0, scheduler=None
    )

    assert "error" not in result, result
    assert result["row"] == "noop-floor-threads" and len(result["walls_s"]) == 1


def test_dask_runner_rows_measure_correctly_on_a_local_cluster() -> None:
    pytest.importorskip("distributed")
    with runners_table.local_cluster() as cluster:
        on_it = replace(TINY, scheduler=cluster.scheduler_address)
        results = [runners.measure_row(k, on_it, reps=1, warmup=False) for k in DASK_ROWS]

    assert [r["invalid"] for r in results] == [None] * len(DASK_ROWS)
    assert "dask_overhead_ms_per_task" in runners_table.derive(results)


async def test_checkpoints_benchmark_runs_on_threads_and_on_a_process_pool() -> None:
    from benchmarks.checkpoints import measure
    from engine import Process

    for runner in (None, Process(workers=1)):
        out = await measure(runner, reps=1)  # checks each run's committed checkpoint itself
        assert len(out["samples_ms"]) == 1 and out["median_ms"] > 0


async def test_catalog_benchmark_serves_every_page_at_a_small_size(tmp_path: Path) -> None:
    from benchmarks.catalog import measure

    result = await measure(300, 3000, 1, tmp_path)
    assert result["assets"] == 300 and result["asset_events"] == 3000
    assert len(result["pages"]) == 7
    assert all(page["bytes"] > 0 for page in result["pages"].values())
