"""Dynamic fan-out (``task.map``) and task groups, through a real engine and state file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine import DAGError, Engine, TaskGroup, dag, task

seen: list[Any] = []
flaky_failures: dict[str, int] = {}


@task
async def list_files(n: int) -> list[str]:
    return [f"file-{i}.csv" for i in range(n)]


@task
async def load(path: str, bucket: str = "landing") -> dict[str, str]:
    seen.append(path)
    return {"path": path, "bucket": bucket}


@task
async def count(rows: list[dict[str, str]]) -> list[str]:
    return [r["path"] for r in rows]


@dag
def fan_out(n: int = 5) -> None:
    count(load.map(list_files(n), bucket="raw"))


async def test_map_runs_one_instance_per_element_and_downstream_gets_the_list_in_order(
    tmp_path: Path,
) -> None:
    seen.clear()
    async with Engine(tmp_path / "m.db", dags=[fan_out]) as podium:
        run = await (await podium.trigger("fan_out", {"n": 5})).wait(timeout=30)
    assert run.state == "success"
    assert run.tasks["count"].result == [f"file-{i}.csv" for i in range(5)]
    assert sorted(seen) == [f"file-{i}.csv" for i in range(5)]
    for i in range(5):
        inst = run.tasks[f"load[{i}]"]
        assert inst.state == "success" and inst.try_number == 1
        assert inst.result == {"path": f"file-{i}.csv", "bucket": "raw"}
    assert run.tasks["load"].state == "success"
    assert [r["path"] for r in run.tasks["load"].result] == [f"file-{i}.csv" for i in range(5)]


async def test_an_empty_list_maps_to_no_instances_and_an_empty_result(tmp_path: Path) -> None:
    async with Engine(tmp_path / "e.db", dags=[fan_out]) as podium:
        run = await (await podium.trigger("fan_out", {"n": 0})).wait(timeout=30)
    assert run.state == "success"
    assert run.tasks["count"].result == []
    assert not [t for t in run.tasks if t.startswith("load[")]


@task(retries=2, retry_delay=0)
async def flaky(item: int) -> int:
    key = f"item-{item}"
    if item % 3 == 0 and flaky_failures.get(key, 0) < 1:
        flaky_failures[key] = flaky_failures.get(key, 0) + 1
        raise RuntimeError(f"transient failure of {item}")
    return item * 10


@task
async def numbers(n: int) -> list[int]:
    return list(range(n))


@dag
def retried(n: int = 7) -> None:
    flaky.map(numbers(n))


async def test_each_instance_retries_on_its_own(tmp_path: Path) -> None:
    flaky_failures.clear()
    async with Engine(tmp_path / "r.db", dags=[retried]) as podium:
        run = await (await podium.trigger("retried")).wait(timeout=30)
    assert run.state == "success"
    assert run.tasks["flaky"].result == [i * 10 for i in range(7)]
    tries = {i: run.tasks[f"flaky[{i}]"].try_number for i in range(7)}
    assert tries == {i: 2 if i % 3 == 0 else 1 for i in range(7)}


@task
async def fail_odd(item: int) -> int:
    if item % 2:
        raise ValueError(f"odd {item}")
    return item


@task
async def after(values: list[int]) -> None:
    return None


@dag
def partly_failing() -> None:
    after(fail_odd.map(numbers(4)))


async def test_a_failed_instance_fails_the_mapped_task_and_rerun_runs_only_the_failed_ones(
    tmp_path: Path,
) -> None:
    async with Engine(tmp_path / "f.db", dags=[partly_failing]) as podium:
        run = await (await podium.trigger("partly_failing")).wait(timeout=30)
        assert run.state == "failed"
        assert run.tasks["fail_odd"].state == "failed"
        assert "2 of 4 instance(s) failed" in (run.tasks["fail_odd"].error or "")
        assert run.tasks["after"].state == "upstream_failed"
        assert [run.tasks[f"fail_odd[{i}]"].state for i in range(4)] == [
            "success", "failed", "success", "failed",
        ]  # fmt: skip
        await podium.rerun(run.run_id, failed_only=True)
        again = await podium.wait_run(run.run_id, timeout=30)
    # the odd ones fail again (same code); the even ones were not run again
    assert [again.tasks[f"fail_odd[{i}]"].try_number for i in range(4)] == [1, 2, 1, 2]
    assert again.tasks["fail_odd[0]"].state == "success"


@task(concurrency=2)
async def limited(item: int) -> int:
    live.append(1)
    peak.append(len(live))
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()
    live.pop()
    return item


live: list[int] = []
peak: list[int] = []


@dag
def capped() -> None:
    limited.map(numbers(20))


async def test_task_concurrency_limits_the_instances_together(tmp_path: Path) -> None:
    live.clear()
    peak.clear()
    async with Engine(tmp_path / "c.db", dags=[capped]) as podium:
        run = await (await podium.trigger("capped")).wait(timeout=30)
    assert run.state == "success"
    assert len(peak) == 20 and max(peak) <= 2


async def test_past_max_map_length_the_mapped_task_fails_with_a_clear_error(
    tmp_path: Path,
) -> None:
    async with Engine(tmp_path / "x.db", dags=[fan_out], max_map_length=3) as podium:
        run = await (await podium.trigger("fan_out", {"n": 4})).wait(timeout=30)
    assert run.state == "failed"
    error = run.tasks["load"].error or ""
    assert "4 instances, over max_map_length=3" in error
    assert run.tasks["count"].state == "upstream_failed"


@task
async def not_a_list() -> dict[str, int]:
    return {"a": 1}


@dag
def bad_input() -> None:
    load.map(not_a_list())


async def test_mapping_over_something_else_than_a_list_fails_the_task(tmp_path: Path) -> None:
    async with Engine(tmp_path / "b.db", dags=[bad_input]) as podium:
        run = await (await podium.trigger("bad_input")).wait(timeout=30)
    assert run.state == "failed"
    assert "which is a dict, not a list" in (run.tasks["load"].error or "")


def test_map_needs_a_list_or_an_upstream_result() -> None:
    with pytest.raises(
        DAGError, match="maps over an upstream task's result, a list or a param, got str for 'path'"
    ):

        @dag
        def wrong() -> None:
            load.map("not-a-list")


@task
async def step(x: int = 1) -> int:
    return x


@dag
def grouped() -> None:
    with TaskGroup("extract"):
        a = step(1)
        with TaskGroup("eu"):
            b = step(2)
    with TaskGroup("load"):
        step.override(task_id="final")(a) >> step(b)


def test_task_groups_prefix_ids_and_nest() -> None:
    assert sorted(grouped.tasks) == ["extract.eu.step", "extract.step", "load.final", "load.step"]
    assert grouped.tasks["extract.eu.step"].group == "extract.eu"
    described = {t["task_id"]: t for t in grouped.describe()["tasks"]}
    assert described["load.final"]["group"] == "load"


async def test_grouped_tasks_run_and_are_addressed_by_their_full_id(tmp_path: Path) -> None:
    async with Engine(tmp_path / "g.db", dags=[grouped]) as podium:
        run = await (await podium.trigger("grouped")).wait(timeout=30)
        logs = await podium.task_logs(run.run_id, "load.final")
    assert run.state == "success"
    assert run.tasks["load.step"].result == 2
    assert logs == []


async def test_the_web_pages_and_api_show_a_mapped_run(tmp_path: Path) -> None:
    import aiohttp

    from engine.web import serve

    async with Engine(tmp_path / "w.db", dags=[fan_out, grouped], sensors=False) as podium:
        run = await (await podium.trigger("fan_out", {"n": 3})).wait(timeout=30)
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, podium, "127.0.0.1", 0, "t0ken")
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
                for path in (f"/runs/{run.run_id}", "/dags/fan_out", "/dags/grouped", "/runs"):
                    async with http.get(path) as resp:
                        assert resp.status == 200, path
                        page = await resp.text()
                    if path.startswith("/runs/"):
                        assert "load[2]" in page
                async with http.get(f"/api/runs/{run.run_id}") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                path = f"/api/runs/{run.run_id}?instances=none&include=load[1]"
                async with http.get(path) as resp:
                    assert resp.status == 200
                    slim = await resp.json()
                async with http.get("/api/dags/grouped") as resp:
                    described = {t["task_id"]: t for t in (await resp.json())["tasks"]}
            tg.cancel_scope.cancel()
    tasks = body["tasks"]
    assert {"load", "load[0]", "load[1]", "load[2]", "count"} <= set(tasks)
    assert tasks["load"]["mapped"] == {
        "count": 3,
        "states": {"success": 3},
        "worst": "success",
        "instances": ["load[0]", "load[1]", "load[2]"],
    }
    assert tasks["load[2]"]["instance_of"] == "load" and tasks["load[2]"]["map_index"] == 2
    assert "mapped" not in tasks["count"]
    # the run page polls without the instances but for those it shows
    assert list(slim["tasks"]) == ["list_files", "load", "load[1]", "count"]
    assert slim["tasks"]["load"]["mapped"]["count"] == 3
    assert described["extract.eu.step"]["group"] == "extract.eu"
    assert described["load.final"]["mapped"] is False


resume_gate: dict[str, bool] = {}


@task(on_failure="pause")
async def pausing(item: int) -> int:
    if item == 2 and not resume_gate.get("fixed"):
        raise RuntimeError("element 2 is bad until an operator fixes it")
    return item


@dag
def paused_map() -> None:
    after(pausing.map(numbers(4)))


async def test_a_failed_instance_with_on_failure_pause_pauses_the_run_and_resume_reruns_it(
    tmp_path: Path,
) -> None:
    resume_gate.clear()
    async with Engine(tmp_path / "p.db", dags=[paused_map]) as podium:
        run = await podium.trigger("paused_map")
        with anyio.fail_after(30):
            while (snapshot := await podium.get_run(run.run_id)).state != "paused":
                await anyio.sleep(0.02)
        assert snapshot.tasks["pausing[2]"].state == "failed"
        assert snapshot.tasks["after"].state == "paused"
        resume_gate["fixed"] = True
        await podium.resume(run.run_id)
        final = await podium.wait_run(run.run_id, timeout=30)
    assert final.state == "success"
    assert final.tasks["pausing"].result == [0, 1, 2, 3]
    assert final.tasks["pausing[2]"].try_number == 2
    assert final.tasks["pausing[0]"].try_number == 1


@dag
def by_name(regions: list[str] = ["eu", "us"]) -> None:  # noqa: B006
    count(load.partial(bucket="raw").expand(path=list_files(2)))
    load.override(task_id="per_region").expand(path=regions)


async def test_expand_maps_by_parameter_name_and_over_a_list_param(tmp_path: Path) -> None:
    async with Engine(tmp_path / "n.db", dags=[by_name]) as podium:
        run = await (await podium.trigger("by_name", {"regions": ["eu", "us", "apac"]})).wait(
            timeout=30
        )
    assert run.state == "success", {t: i.error for t, i in run.tasks.items()}
    assert run.tasks["count"].result == ["file-0.csv", "file-1.csv"]
    assert run.tasks["load[1]"].result == {"path": "file-1.csv", "bucket": "raw"}
    assert [r["path"] for r in run.tasks["per_region"].result] == ["eu", "us", "apac"]
    assert run.tasks["per_region[2]"].result == {"path": "apac", "bucket": "landing"}


def test_expand_names_what_it_cannot_map() -> None:
    with pytest.raises(DAGError, match="cannot map over 'paths', which is not a named parameter"):

        @dag
        def wrong() -> None:
            load.expand(paths=list_files(2))

    with pytest.raises(DAGError, match="bucket is both mapped and fixed"):

        @dag
        def both() -> None:
            load.partial(bucket="x").expand(bucket=["a"], path=["b"])
