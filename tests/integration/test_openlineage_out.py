"""OpenLineage out (engine/lineage_out.py) through a real engine and the official client: events sent
over its HTTP transport to a real receiver on loopback and over its file transport, checked against
the spec's run-event JSON Schema; order, run ids, parent facets, inputs/outputs; a receiver that is
down; ``openlineage.yml``; and nothing imported while it is off."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from openlineage.client import OpenLineageClient

from engine import Asset, Context, Engine, dag, task
from engine.backoff import Backoff
from engine.lineage_events import LineageOptions, run_uuid, try_uuid
from tests.openlineage_spec import check_parent_facet, check_run_event
from tests.servers import free_port

NS = "podium-test"
CRM = Asset("s3://landing/crm/")
ORDERS = Asset("s3://warehouse/orders/", name="orders")
REPORT = "file:///reports/daily.html"
GATE: dict[str, anyio.Event] = {}


@task(inlets=[CRM], outlets=[ORDERS])
async def extract(ctx: Context) -> int:
    await ctx.asset_event(
        ORDERS.uri, metadata={"rows": 5}, schema=[{"name": "id", "type": "int"}, {"name": "total"}]
    )
    return 5


@task(outlets=[REPORT])
def report(rows: int) -> str:
    return f"{rows} rows"


@dag(dag_id="pipeline")
def pipeline() -> None:
    report(extract())


@task
def boom() -> None:
    raise ValueError("bad data in row 7")


@dag(dag_id="broken")
def broken() -> None:
    boom()


@task
async def wait_forever() -> None:
    GATE["started"].set()
    await anyio.sleep_forever()


@dag(dag_id="stuck")
def stuck() -> None:
    wait_forever()


class Receiver:
    """An OpenLineage HTTP receiver (Marquez's path) that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        self._changed = anyio.Event()
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        self.events.append(json.loads(await request.read()))
        self._changed.set()
        self._changed = anyio.Event()
        return web.Response(status=201)

    async def wait_for(self, predicate: Any, timeout: float = 20) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self.events):
                await self._changed.wait()

    def of(self, job: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["job"]["name"] == job]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/api/v1/lineage", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.port = runner.addresses[0][1]
    try:
        yield r
    finally:
        await runner.cleanup()


def http_client(port: int) -> OpenLineageClient:
    """The official client on its HTTP transport, without its own retries (Podium's are tested)."""
    return OpenLineageClient(
        config={
            "transport": {
                "type": "http",
                "url": f"http://127.0.0.1:{port}",
                "endpoint": "api/v1/lineage",
                "timeout": 5,
                "retry": {"total": 0, "connect": 0, "read": 0},
            }
        }
    )


def fast(**kwargs: Any) -> LineageOptions:
    return LineageOptions(namespace=NS, backoff=Backoff(0.01, cap=0.05), **kwargs)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["eventType"] for e in events]


def datasets(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in items}


async def wait_counts(engine: Engine, timeout: float = 20, **expected: int) -> None:
    emitter = engine.lineage_emitter
    assert emitter is not None
    with anyio.fail_after(timeout):
        while any(emitter.counts[k] < v for k, v in expected.items()):
            await anyio.sleep(0.01)


# -- over HTTP ----------------------------------------------------------------------------------------


async def test_a_run_and_its_tasks_over_http_follow_the_spec(tmp_path: Path) -> None:
    async with receiver() as r:
        async with Engine(
            tmp_path / "p.db",
            dags=[pipeline],
            sensors=False,
            lineage=fast(),
            openlineage_client=http_client(r.port),
        ) as podium:
            run = await (await podium.trigger("pipeline")).wait(timeout=20)
            assert run.state == "success"
            await wait_counts(podium, emitted=6)
            metrics = podium.metrics_text()
    assert r.content_types == {"application/json"}
    for event in r.events:
        check_run_event(event)
        assert event["job"]["namespace"] == NS
        assert event["producer"] == "urn:podium:engine"
        uuid.UUID(event["run"]["runId"])

    run_events = r.of("pipeline")
    assert types(run_events) == ["START", "COMPLETE"]
    assert {e["run"]["runId"] for e in run_events} == {run_uuid(run.run_id)}
    assert run_events[0]["job"]["facets"]["jobType"]["jobType"] == "DAG"
    complete = run_events[1]
    assert datasets(complete["outputs"]) == {
        ("s3://warehouse", "orders/"),
        ("file://", "reports/daily.html"),
    }
    assert datasets(complete["inputs"]) == {("s3://landing", "crm/")}  # the task's inlet

    for task_id in ("extract", "report"):
        events = r.of(f"pipeline.{task_id}")
        assert types(events) == ["START", "COMPLETE"], task_id
        assert {e["run"]["runId"] for e in events} == {try_uuid(run.run_id, task_id, 1)}
        for e in events:
            parent = e["run"]["facets"]["parent"]
            check_parent_facet(parent)
            assert parent["run"]["runId"] == run_uuid(run.run_id)
            assert (parent["job"]["namespace"], parent["job"]["name"]) == (NS, "pipeline")
            assert parent["root"]["run"]["runId"] == run_uuid(run.run_id)
            assert e["job"]["facets"]["jobType"]["jobType"] == "TASK"
        # a task's events come after its run's START and before its run's end
        order = r.events.index
        assert order(run_events[0]) < order(events[0]) < order(events[1]) < order(complete)

    extract_done = r.of("pipeline.extract")[1]
    assert datasets(extract_done["inputs"]) == {("s3://landing", "crm/")}
    (out,) = extract_done["outputs"]
    assert (out["namespace"], out["name"]) == ("s3://warehouse", "orders/")
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 5
    assert [(f["name"], f.get("type")) for f in out["facets"]["schema"]["fields"]] == [
        ("id", "int"),
        ("total", None),
    ]
    assert datasets(r.of("pipeline.report")[1]["outputs"]) == {("file://", "reports/daily.html")}
    assert 'podium_openlineage_events_total{outcome="emitted"} 6.0' in metrics
    assert 'podium_openlineage_events_total{outcome="dropped"} 0.0' in metrics


async def test_fail_and_abort(tmp_path: Path) -> None:
    GATE["started"] = anyio.Event()
    async with receiver() as r:
        async with Engine(
            tmp_path / "p.db",
            dags=[broken, stuck],
            sensors=False,
            lineage=fast(),
            openlineage_client=http_client(r.port),
        ) as podium:
            failed = await (await podium.trigger("broken")).wait(timeout=20)
            assert failed.state == "failed"
            stuck_run = await podium.trigger("stuck")
            with anyio.fail_after(20):
                await GATE["started"].wait()
            await podium.cancel(stuck_run.run_id)
            assert (await podium.wait_run(stuck_run.run_id, timeout=20)).state == "cancelled"
            await r.wait_for(lambda evs: len(evs) >= 8)
    for event in r.events:
        check_run_event(event)
    assert types(r.of("broken")) == ["START", "FAIL"]
    assert types(r.of("broken.boom")) == ["START", "FAIL"]
    error = r.of("broken.boom")[1]["run"]["facets"]["errorMessage"]
    assert "bad data in row 7" in error["message"]
    assert error["programmingLanguage"] == "PYTHON"
    assert types(r.of("stuck")) == ["START", "ABORT"]
    assert types(r.of("stuck.wait_forever")) == ["START", "ABORT"]
    assert {e["run"]["runId"] for e in r.of("stuck")} == {run_uuid(stuck_run.run_id)}


# -- a receiver that is down --------------------------------------------------------------------------


async def test_a_receiver_that_is_down_never_fails_a_run(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    async with Engine(
        tmp_path / "p.db",
        dags=[pipeline],
        sensors=False,
        lineage=fast(retries=2),
        openlineage_client=http_client(port),
    ) as podium:
        run = await (await podium.trigger("pipeline")).wait(timeout=20)
        assert run.state == "success"
        assert (await podium.run_lineage(run.run_id))["outputs"]  # the run's data is recorded
        await wait_counts(podium, dropped=6)
        emitter = podium.lineage_emitter
        assert emitter is not None
        assert emitter.counts == {"emitted": 0, "retried": 12, "dropped": 6}
        metrics = podium.metrics_text()
    assert 'podium_openlineage_events_total{outcome="dropped"} 6.0' in metrics
    assert 'podium_openlineage_events_total{outcome="retried"} 12.0' in metrics


async def test_a_receiver_back_up_gets_the_retried_event(tmp_path: Path) -> None:
    """The first tries fail (503), a retry gets through: emitted once, nothing dropped."""
    statuses = [503, 503]
    seen: list[dict[str, Any]] = []

    async def flaky(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if statuses:
            return web.Response(status=statuses.pop(0))
        seen.append(body)
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/v1/lineage", flaky)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with Engine(
            tmp_path / "p.db",
            dags=[broken],
            sensors=False,
            lineage=fast(retries=3),
            openlineage_client=http_client(runner.addresses[0][1]),
        ) as podium:
            assert (await (await podium.trigger("broken")).wait(timeout=20)).state == "failed"
            await wait_counts(podium, emitted=4)
            emitter = podium.lineage_emitter
            assert emitter is not None
            assert emitter.counts == {"emitted": 4, "retried": 2, "dropped": 0}
    finally:
        await runner.cleanup()
    assert types([e for e in seen if e["job"]["name"] == "broken"]) == ["START", "FAIL"]


async def test_a_full_queue_drops_new_events_instead_of_waiting(tmp_path: Path) -> None:
    """A receiver that hangs holds the one emit in flight; the queue (1) fills, and the run goes on:
    the events that do not fit are dropped and counted at once."""
    release = anyio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/v1/lineage", hang)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with Engine(
            tmp_path / "p.db",
            dags=[pipeline],
            sensors=False,
            lineage=fast(queue_size=1, retries=0, drain_timeout=0.1),
            openlineage_client=http_client(runner.addresses[0][1]),
        ) as podium:
            run = await (await podium.trigger("pipeline")).wait(timeout=20)
            assert run.state == "success"
            emitter = podium.lineage_emitter
            assert emitter is not None
            # 6 events: at most one in flight and one queued
            assert emitter.counts["dropped"] >= 4
            assert emitter.counts["emitted"] == 0
    finally:
        release.set()
        await runner.cleanup()


# -- the file transport and the client's own configuration --------------------------------------------


async def test_the_file_transport(tmp_path: Path) -> None:
    path = tmp_path / "lineage.jsonl"
    client = OpenLineageClient(
        config={"transport": {"type": "file", "log_file_path": str(path), "append": True}}
    )
    async with Engine(
        tmp_path / "p.db", dags=[pipeline], sensors=False, lineage=fast(), openlineage_client=client
    ) as podium:
        run = await (await podium.trigger("pipeline")).wait(timeout=20)
        await wait_counts(podium, emitted=6)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(events) == 6
    for event in events:
        check_run_event(event)
    run_events = [e for e in events if e["job"]["name"] == "pipeline"]
    assert types(run_events) == ["START", "COMPLETE"]
    assert run_events[0]["run"]["runId"] == run_uuid(run.run_id)


async def test_the_clients_own_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Engine(lineage=True)``: the client reads ``openlineage.yml`` ($OPENLINEAGE_CONFIG), the
    namespace comes from $OPENLINEAGE_NAMESPACE."""
    async with receiver() as r:
        config = tmp_path / "openlineage.yml"
        config.write_text(
            "transport:\n"
            "  type: http\n"
            f"  url: http://127.0.0.1:{r.port}\n"
            "  endpoint: api/v1/lineage\n"
        )
        monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
        monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "from-env")
        async with Engine(tmp_path / "p.db", dags=[broken], sensors=False, lineage=True) as podium:
            assert (await (await podium.trigger("broken")).wait(timeout=20)).state == "failed"
            await r.wait_for(lambda evs: len(evs) >= 4)
    assert {e["job"]["namespace"] for e in r.events} == {"from-env"}
    assert types(r.of("broken")) == ["START", "FAIL"]


def test_off_imports_nothing(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from engine import Engine, dag, task

@task
def t() -> int:
    return 1

@dag(dag_id="d")
def d() -> None:
    t()

async def main() -> None:
    async with Engine({str(tmp_path / "off.db")!r}, dags=[d], sensors=False) as e:
        assert (await (await e.trigger("d")).wait(timeout=20)).state == "success"

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("openlineage") or m == "engine.lineage_out")
print(loaded)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_a_client_that_cannot_be_configured_drops_events_and_runs_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "openlineage.yml"
    config.write_text("transport:\n  type: no.such.Transport\n")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    async with Engine(tmp_path / "p.db", dags=[broken], sensors=False, lineage=fast()) as podium:
        assert (await (await podium.trigger("broken")).wait(timeout=20)).state == "failed"
        await wait_counts(podium, dropped=4)
        emitter = podium.lineage_emitter
        assert emitter is not None and emitter.counts["emitted"] == 0
