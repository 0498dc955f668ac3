"""The HTTP API and pages against a real server (127.0.0.1, port 0) over a real engine and state file."""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import DAG, Asset, Context, Engine, dag, task
from engine.web import serve, token_file
from sensors import Cron, Every, OnAssets

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GATE: dict[str, anyio.Event] = {}


@task
async def extract() -> list[int]:
    return [1, 2, 3]


@task
def double(xs: list[int]) -> list[int]:
    return [x * 2 for x in xs]


@task
async def total(xs: list[int], offset: int = 0) -> int:
    return sum(xs) + offset


@dag(triggers=[Cron("30 4 * * 1-5", tz="Europe/Berlin")], description="numbers <demo>")
def numbers(offset: int = 0) -> None:
    total(double(extract()), offset)


@task
async def slow(ctx: Context) -> str:
    ctx.log.info("step 1 <b>bold</b>")
    await GATE["release"].wait()
    ctx.log.warning("step 2")
    return "done"


@task
async def after_slow(value: str) -> str:
    return value.upper()


@dag
def gated() -> None:
    after_slow(slow())


@task
async def explode() -> None:
    raise ValueError("bad row <script>alert(1)</script>")


@dag(triggers=[Every(seconds=3600)])
def broken() -> None:
    explode()


ALL = [numbers, gated, broken]


@dataclass
class Web:
    engine: Engine
    http: aiohttp.ClientSession
    port: int

    async def get(self, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.http.get(path, **kw) as resp:
            assert resp.status == status, await resp.text()
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.text()

    async def post(self, path: str, body: Any = None, status: int = 200, auth: bool = True) -> Any:
        headers = AUTH if auth else {}
        async with self.http.post(path, json=body, headers=headers) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()

    async def until(self, path: str, check: Any, timeout: float = 10) -> Any:
        """GET ``path`` until ``check(body)`` holds (observable state, under a deadline)."""
        with anyio.fail_after(timeout):
            while True:
                data = await self.get(path)
                if check(data):
                    return data
                await anyio.sleep(0.02)


@asynccontextmanager
async def served(
    tmp_path: Path, dags: list[DAG] = ALL, token: str | None = TOKEN, base_path: str = ""
) -> AsyncIterator[Web]:
    async with Engine(tmp_path / "podium.db", dags=dags, sensors=False, shutdown_grace=1) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve, base_path=base_path), eng, "127.0.0.1", 0, token
            )
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
                yield Web(eng, http, port)
            tg.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def gate() -> None:
    GATE["release"] = anyio.Event()


async def test_dags_describe_graph_triggers_next_time_and_last_runs(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        run = await web.engine.trigger("numbers")
        await run.wait(10)
        data = await web.get("/api/dags")
        dags = {d["dag_id"]: d for d in data["dags"]}
        assert sorted(dags) == ["broken", "gated", "numbers"]
        info = dags["numbers"]
        assert info["description"] == "numbers <demo>" and info["paused"] is False
        assert [(t["task_id"], t["upstream"]) for t in info["tasks"]] == [
            ("extract", []),
            ("double", ["extract"]),
            ("total", ["double"]),
        ]
        (trig,) = info["triggers"]
        assert (
            trig["kind"] == "cron"
            and trig["words"] == "at 04:30 on Monday to Friday (Europe/Berlin)"
        )
        assert trig["next_at"] == numbers.triggers[0].next_slot(data["now"]) == info["next_run_at"]
        assert info["timezone"] == "Europe/Berlin"
        assert info["last_runs"] == [
            {
                "run_id": run.run_id,
                "state": "success",
                "created_at": run.created_at,
                "duration": pytest.approx(info["last_runs"][0]["duration"]),
                "url": f"/runs/{run.run_id}",
            }
        ]
        assert dags["broken"]["triggers"][0]["words"] == "every 1h"
        one = await web.get("/api/dags/numbers")
        assert one["dag_id"] == "numbers" and one["url"] == "/dags/numbers"
        missing = await web.get("/api/dags/nope", status=404)
        assert "no DAG 'nope'" in missing["error"]
        index = await web.get("/api")
        assert "POST /api/dags/{dag_id}/trigger" in index["endpoints"]


async def test_trigger_through_the_api_then_poll_to_success(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        created = await web.post(
            "/api/dags/numbers/trigger", {"params": {"offset": 10}}, status=201
        )
        assert created["dag_id"] == "numbers" and created["created"] is True
        assert created["url"] == f"/runs/{created['run_id']}"
        done = await web.until(f"/api/runs/{created['run_id']}", lambda r: r["finished"])
        assert done["state"] == "success" and done["params"] == {"offset": 10}
        assert list(done["tasks"]) == ["extract", "double", "total"]
        total_task = done["tasks"]["total"]
        assert total_task["result"] == 22 and total_task["try_number"] == 1
        assert total_task["upstream"] == ["double"] and total_task["waiting_reason"] is None
        assert [t["state"] for t in total_task["tries"]] == ["success"]
        assert total_task["duration"] >= 0
        preview = await web.get(f"/api/runs/{created['run_id']}?results=preview")
        assert preview["tasks"]["double"]["result_preview"] == "[\n  2,\n  4,\n  6\n]"
        # a caller's key makes triggering idempotent: the existing run comes back with 200
        first = await web.post("/api/dags/numbers/trigger", {"key": "2026-11-25"}, status=201)
        again = await web.post("/api/dags/numbers/trigger", {"key": "2026-11-25"}, status=200)
        assert again["run_id"] == first["run_id"] and again["created"] is False


async def test_mutations_require_the_bearer_token(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        for path in ("/api/dags/numbers/trigger", "/api/runs/x/cancel", "/api/dags/numbers/pause"):
            async with web.http.post(path, json={}) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert await resp.json() == {
                    "error": "mutations require Authorization: Bearer <token>"
                }
            async with web.http.post(path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
        assert await web.engine.runs() == []  # nothing was triggered
        await web.get("/api/runs")  # reads need no token


async def test_bad_requests_get_json_errors(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        async with web.http.post(
            "/api/dags/numbers/trigger", data=b"{not json", headers=AUTH
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"].startswith("request body is not valid JSON")
        assert (
            "JSON object" in (await web.post("/api/dags/numbers/trigger", [1], status=400))["error"]
        )
        bad_params = await web.post("/api/dags/numbers/trigger", {"params": [1]}, status=400)
        assert bad_params == {"error": "'params' must be a JSON object"}
        unknown = await web.post("/api/dags/nope/trigger", {}, status=404)
        assert "no DAG 'nope'" in unknown["error"]
        wrong = await web.post("/api/dags/numbers/trigger", {"params": {"colour": 1}}, status=422)
        assert "unknown param(s) colour" in wrong["error"]
        typed = await web.post("/api/dags/numbers/trigger", {"params": {"offset": "x"}}, status=422)
        assert "offset" in typed["error"]
        assert await web.get("/api/runs/nope", status=404) == {"error": "no run 'nope'"}
        await web.get("/api/runs/nope/tasks/extract/logs", status=404)
        await web.post("/api/runs/nope/cancel", {}, status=404)
        assert "limit" in (await web.get("/api/runs?limit=0", status=400))["error"]
        assert "unknown state" in (await web.get("/api/runs?state=weird", status=400))["error"]
        assert "since" in (await web.get("/api/runs?since=yesterday", status=400))["error"]
        await web.get("/api/runs?dag=nope", status=404)
        await web.get("/api/nothing/here", status=404)
        async with web.http.get("/runs/nope") as resp:  # pages answer with HTML errors
            assert resp.status == 404 and resp.content_type == "text/html"


async def test_runs_are_paginated_newest_first_and_filtered(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        ids = []
        for i in range(7):
            run = await web.engine.trigger("numbers", {"offset": i})
            await run.wait(10)
            ids.append(run.run_id)
        failed = await (await web.engine.trigger("broken")).wait(10)
        ids.append(failed.run_id)
        newest_first = ids[::-1]

        seen: list[str] = []
        offset: int | None = 0
        pages = 0
        while offset is not None:
            page = await web.get(f"/api/runs?limit=3&offset={offset}")
            assert len(page["runs"]) <= 3
            seen += [r["run_id"] for r in page["runs"]]
            offset = page["next_offset"]
            pages += 1
        assert seen == newest_first and pages == 3

        by_dag = await web.get("/api/runs?dag=numbers&limit=100")
        assert [r["run_id"] for r in by_dag["runs"]] == newest_first[1:]
        only_failed = await web.get("/api/runs?state=failed")
        assert [r["run_id"] for r in only_failed["runs"]] == [failed.run_id]
        assert only_failed["runs"][0]["note"] == "failed task(s): explode"
        assert (await web.get("/api/runs?since=2999-01-01"))["runs"] == []
        assert (await web.get("/api/runs?until=2000-01-01T00:00:00Z"))["runs"] == []
        recent = await web.get("/api/runs?since=2000-01-01&trigger=api&limit=2&offset=2")
        assert [r["run_id"] for r in recent["runs"]] == newest_first[2:4]
        assert recent["next_offset"] == 4 and recent["prev_offset"] == 0
        assert (await web.get("/api/runs?trigger=kafka"))["runs"] == []


async def test_logs_arrive_while_the_task_still_runs(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        run = await web.engine.trigger("gated")
        logs = f"/api/runs/{run.run_id}/tasks/slow/logs"
        # (the state is read before the lines, so the first lines may come with "queued")
        first = await web.until(logs, lambda d: d["lines"] and d["task_state"] == "running")
        assert first["task_finished"] is False
        assert [line["message"] for line in first["lines"]] == ["step 1 <b>bold</b>"]
        assert first["try_number"] == 1 and first["next_after"] == 1
        live = await web.get(f"/api/runs/{run.run_id}")
        assert live["state"] == "running" and live["finished"] is False
        assert live["tasks"]["slow"]["state"] == "running"
        assert live["tasks"]["after_slow"]["waiting_reason"] == "waiting on upstream: slow"
        GATE["release"].set()
        await run.wait(10)
        rest = await web.get(f"{logs}?after={first['next_after']}")
        assert [(ln["line"], ln["level"], ln["message"]) for ln in rest["lines"]] == [
            (2, "WARNING", "step 2")
        ]
        assert rest["task_finished"] is True
        every = await web.get(f"{logs}?try=all")
        assert len(every["lines"]) == 2
        assert (await web.get(f"{logs}?try=9"))["lines"] == []
        await web.get(f"/api/runs/{run.run_id}/tasks/ghost/logs", status=404)


async def test_cancel_a_run_and_a_task(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        run = await web.engine.trigger("gated")
        await web.until(
            f"/api/runs/{run.run_id}", lambda r: r["tasks"]["slow"]["state"] == "running"
        )
        if hasattr(web.engine, "cancel_task"):
            await web.post(f"/api/runs/{run.run_id}/tasks/ghost/cancel", {}, status=404)
        cancelled = await web.post(f"/api/runs/{run.run_id}/cancel", {"reason": "operator said so"})
        assert cancelled["state"] == "cancelled" and cancelled["note"] == "operator said so"
        assert cancelled["tasks"]["slow"]["state"] == "cancelled"
        again = await web.post(f"/api/runs/{run.run_id}/cancel")  # already finished: unchanged
        assert again["state"] == "cancelled"
        if hasattr(web.engine, "cancel_task"):
            GATE["release"] = anyio.Event()
            second = await web.engine.trigger("gated")
            path = f"/api/runs/{second.run_id}"
            await web.until(path, lambda r: r["tasks"]["slow"]["state"] == "running")
            out = await web.post(f"{path}/tasks/slow/cancel", {"reason": "not needed"})
            assert out["tasks"]["slow"]["state"] == "cancelled"
            done = await web.until(path, lambda r: r["finished"])
            assert done["tasks"]["after_slow"]["state"] == "upstream_failed"
        else:
            await web.post(f"/api/runs/{run.run_id}/tasks/slow/cancel", {}, status=501)


async def test_recovery_operations_or_501(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        engine = web.engine
        failed = await (await engine.trigger("broken")).wait(10)
        if not hasattr(engine, "pause_dag"):
            for path in ("/api/dags/numbers/pause", "/api/dags/numbers/unpause"):
                assert "does not support" in (await web.post(path, {}, status=501))["error"]
        else:
            assert await web.post("/api/dags/numbers/pause") == {
                "dag_id": "numbers",
                "paused": True,
            }
            assert (await web.get("/api/dags/numbers"))["paused"] is True
            assert "paused" in await web.get("/")
            out = await web.post("/api/dags/numbers/unpause", {"skip_queued": True})
            assert out == {"dag_id": "numbers", "paused": False, "skipped": []}
            await web.post("/api/dags/nope/pause", status=404)
        if not hasattr(engine, "rerun"):
            await web.post(f"/api/runs/{failed.run_id}/rerun", {}, status=501)
            await web.post(f"/api/runs/{failed.run_id}/resume", {}, status=501)
        else:
            rerun = await web.post(f"/api/runs/{failed.run_id}/rerun", {"failed_only": True})
            assert rerun["run_id"] == failed.run_id
            again = await web.until(f"/api/runs/{failed.run_id}", lambda r: r["finished"])
            assert again["state"] == "failed" and again["tasks"]["explode"]["try_number"] == 2
            bad = await web.post(
                f"/api/runs/{failed.run_id}/rerun", {"tasks": "explode"}, status=400
            )
            assert "list of task ids" in bad["error"]
            not_paused = await web.post(f"/api/runs/{failed.run_id}/resume", {}, status=409)
            assert "not paused" in not_paused["error"]
        if hasattr(engine, "operations"):
            ops = await web.get(f"/api/operations?run={failed.run_id}")
            assert [o["operation"] for o in ops["operations"]] == ["rerun"]
        if hasattr(engine, "backfill"):
            await web.post("/api/dags/broken/backfill", {"start": "2026-01-01"}, status=400)
            window = {"start": "2026-01-01T00:00:00", "end": "2026-01-01T02:00:00"}
            done = await web.post("/api/dags/broken/backfill", window)
            assert done["slots"] == 3 and len(done["created"]) == 3
            assert set(done["states"].values()) == {"failed"}
            accepted = await web.post(
                "/api/dags/broken/backfill",
                {**window, "missing_only": True, "wait": False},
                status=202,
            )
            assert accepted["accepted"] is True
        else:
            await web.post("/api/dags/broken/backfill", {}, status=501)


async def test_metrics_serves_the_engines_registry(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        await (await web.engine.trigger("numbers")).wait(10)
        async with web.http.get("/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
    runs = {
        (s.labels["dag"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "podium_runs"
        for s in family.samples
    }
    assert runs == {("numbers", "success"): 1}


async def test_pages_render_and_escape_user_content(tmp_path: Path) -> None:
    async with served(tmp_path) as web:
        failed = await (await web.engine.trigger("broken")).wait(10)
        ok = await (await web.engine.trigger("numbers")).wait(10)
        home = await web.get("/")
        assert 'class="sq st-failed"' in home and f'href="/runs/{failed.run_id}"' in home
        assert f"/runs/{failed.run_id}#task-explode" in home  # a failed task: one click away
        assert "numbers &lt;demo&gt;" in home and "numbers <demo>" not in home
        run_html = await web.get(f"/runs/{failed.run_id}")
        assert "<script>alert(1)" not in run_html and "&lt;script&gt;alert(1)" in run_html
        assert 'class="node st-failed"' in run_html and 'class="failed-banner"' in run_html
        assert 'data-finished="true"' in run_html
        assert 'class="bar running st-failed' in await web.get(f"/runs/{failed.run_id}/gantt")
        ok_html = await web.get(f"/runs/{ok.run_id}")
        assert ok_html.count('class="node st-success"') == 3
        dag_html = await web.get("/dags/numbers?state=success")
        assert ok.run_id in dag_html and failed.run_id not in dag_html
        runs_html = await web.get("/runs?state=failed")
        assert failed.run_id in runs_html and ok.run_id not in runs_html
        await web.get("/events")
        async with web.http.get("/static/podium.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
            assert "Content-Security-Policy" in resp.headers
        await web.get("/dags/nope", status=404)
        await web.get("/static/nope.js", status=404)


async def test_a_generated_token_is_kept_beside_the_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with served(tmp_path, dags=[numbers], token=None) as web:
        path = token_file(web.engine.db)
        token = path.read_text().strip()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert f"Bearer <token>): {token}" in capsys.readouterr().err
        async with web.http.post(
            "/api/dags/numbers/trigger", json={}, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 201
    async with served(tmp_path, dags=[numbers], token=None):
        assert token_file(tmp_path / "podium.db").read_text().strip() == token
        assert token not in capsys.readouterr().err  # printed once, at first start


async def test_served_under_a_base_path(tmp_path: Path) -> None:
    async with served(tmp_path, dags=[numbers], base_path="/podium/") as web:
        data = await web.get("/podium/api/dags")
        assert data["dags"][0]["url"] == "/podium/dags/numbers"
        home = await web.get("/podium/")
        assert 'href="/podium/static/podium.css"' in home and 'data-base="/podium"' in home
        await web.get("/api/dags", status=404)
        created = await web.post("/podium/api/dags/numbers/trigger", {}, status=201)
        assert created["url"].startswith("/podium/runs/")


async def test_run_page_lists_the_operations_done_on_the_run(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from engine import Engine
    from engine.web import make_app

    @task
    async def boom() -> None:
        raise ValueError("broken")

    @dag(dag_id="ops_page")
    def ops_page() -> None:
        boom()

    async with Engine(tmp_path / "o.db", dags=[ops_page]) as podium:
        run = await (await podium.trigger("ops_page")).wait(timeout=10)
        await podium.rerun(run.run_id, failed_only=True, actor="carol")
        await podium.wait_run(run.run_id, timeout=10)
        async with TestClient(TestServer(make_app(podium, token="t"))) as client:
            response = await client.get(f"/runs/{run.run_id}")
            html = await response.text()
    assert response.status == 200
    assert "<h2>Operations</h2>" in html
    assert "carol" in html and ">rerun<" in html


@task(outlets=["s3://lake/a/"])
async def write_a() -> None:
    return None


@dag
def makes_a() -> None:
    write_a()


@dag(triggers=[OnAssets(Asset("s3://lake/a/") & Asset("s3://lake/b/"))])
def needs_a_and_b() -> None:
    extract()


async def test_why_an_asset_triggered_dag_has_not_run(tmp_path: Path) -> None:
    async with served(tmp_path, dags=[makes_a, needs_a_and_b]) as web:
        before = await web.get("/api/dags/needs_a_and_b/assets")
        assert before["met"] is False and before["waiting"] == {}
        await web.post("/api/dags/makes_a/trigger", {}, status=201)
        after = await web.until(
            "/api/dags/needs_a_and_b/assets", lambda d: "s3://lake/a/" in d["waiting"]
        )
        plain = await web.get("/api/dags/makes_a/assets")
        await web.get("/api/dags/nope/assets", status=404)
    assert after["condition"] == "s3://lake/a/ & s3://lake/b/"
    assert after["met"] is False and after["missing"] == ["s3://lake/b/"]
    assert after["tree"]["parts"][0] == {"asset": "s3://lake/a/", "met": True}
    assert after["waiting"]["s3://lake/a/"]["events"] == 1
    assert plain["condition"] is None
