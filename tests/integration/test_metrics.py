"""Prometheus metrics from a real engine, read back with ``prometheus_client``'s parser; metrics on
a registry of the caller's; the event-loop lag watchdog."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine import Context, Engine, MetricsError, dag, task
from engine.metrics import Metrics
from engine.prometheus import CONTENT_TYPE, FAMILIES, OPENLINEAGE_EVENTS, EngineCollector
from sensors.base import Event, EventBatch

Series = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Series, float]:
    """Every sample of a scrape, read by ``prometheus_client``'s parser: each family typed and
    documented once, no series twice."""
    samples: dict[Series, float] = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        assert family.type in ("counter", "gauge", "histogram"), family
        assert family.documentation, f"{family.name} has no HELP"
        assert family.name not in families, f"{family.name} appears twice"
        families.add(family.name)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {sample}"
            samples[key] = sample.value
    return samples


def scrape(engine: Engine, metrics: Metrics) -> dict[Series, float]:
    """What a registry holding only ``metrics`` (an observer added to ``engine``) exports."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine, metrics))
    return parse(generate_latest(registry).decode())


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series_of(samples: dict[Series, float], name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "podium.db"


@task
async def extract() -> list[int]:
    return [1, 2, 3]


@task
async def transform(xs: list[int]) -> int:
    return sum(xs)


@task(pool="db")
async def store(total: int) -> int:
    return total


@dag
def ok() -> None:
    store(transform(extract()))


@task
async def explode() -> None:
    raise ValueError("no")


@dag(dag_id='bad "quoted" \\ dag')
def bad() -> None:
    transform(explode())


@task(retries=1)
async def wobbly(ctx: Context) -> str:
    if ctx.try_number == 1:
        raise ConnectionError("flap")
    return "ok"


@dag
def flaky() -> None:
    wobbly()


gates: list[anyio.Event] = []
started: list[str] = []


@task(pool="db")
async def hold(ctx: Context) -> None:
    started.append(ctx.task_id)
    await gates[0].wait()


@dag
def pooled() -> None:
    hold.override(task_id="h1")()
    hold.override(task_id="h2")()
    hold.override(task_id="h3")()


@asynccontextmanager
async def engine_with(
    db: Path, metrics: Metrics | None = None, registry: CollectorRegistry | None = None
) -> AsyncIterator[Engine]:
    podium = Engine(
        db, dags=[ok, bad, flaky, pooled], pools={"db": 2}, sensors=False, metrics_registry=registry
    )
    if metrics is not None:
        podium.add_observer(metrics)
    async with podium:
        yield podium


async def test_counters_histograms_and_gauges_have_exact_values(db: Path) -> None:
    async with engine_with(db) as podium:
        for dag_id in ("ok", "ok", 'bad "quoted" \\ dag', "flaky"):
            await (await podium.trigger(dag_id)).wait(timeout=10)
        batch = EventBatch("nobody-listens", [Event(source="test", event_id="e1", payload={})])
        await podium.sink.publish(batch)
        assert await batch.stored() == ["filtered"]

        gates[:] = [anyio.Event()]
        started.clear()
        run = await podium.trigger("pooled")
        with anyio.fail_after(10):
            while len(started) < 2:
                await anyio.sleep(0.005)
        during = parse(podium.metrics_text())
        gates[0].set()
        assert (await run.wait(timeout=10)).state == "success"
        writer = podium.store.writer
        after = parse(podium.metrics_text())
        commits, rows = writer.commits, writer.rows_written

    # while two pooled tasks run and the third waits for a slot
    assert value(during, "podium_pool_slots", pool="db") == 2
    assert value(during, "podium_pool_slots_in_use", pool="db") == 2
    assert value(during, "podium_queue_depth", queue="ready") == 1
    assert value(during, "podium_runs_active") == 1
    assert value(during, "podium_tasks_running", dag="pooled") == 2
    assert value(during, "podium_task_slots_in_use") == 2
    assert value(during, "podium_task_slots") == 64

    bad_id = 'bad "quoted" \\ dag'
    assert series_of(after, "podium_runs_total") == {
        frozenset({("dag", "ok"), ("state", "success")}): 2,
        frozenset({("dag", bad_id), ("state", "failed")}): 1,
        frozenset({("dag", "flaky"), ("state", "success")}): 1,
        frozenset({("dag", "pooled"), ("state", "success")}): 1,
    }
    transitions = {
        (dict(labels)["dag"], dict(labels)["state"]): v
        for labels, v in series_of(after, "podium_task_transitions_total").items()
    }
    assert transitions == {
        ("ok", "queued"): 6,
        ("ok", "running"): 6,
        ("ok", "success"): 6,
        (bad_id, "queued"): 1,
        (bad_id, "running"): 1,
        (bad_id, "failed"): 1,
        (bad_id, "upstream_failed"): 1,
        ("flaky", "queued"): 2,
        ("flaky", "running"): 2,
        ("flaky", "up_for_retry"): 1,
        ("flaky", "success"): 1,
        ("pooled", "queued"): 3,
        ("pooled", "running"): 3,
        ("pooled", "success"): 3,
    }
    # one duration per finished try, per DAG; every bucket count is cumulative
    assert value(after, "podium_task_duration_seconds_count", dag="ok") == 6
    assert value(after, "podium_task_duration_seconds_count", dag=bad_id) == 1
    assert value(after, "podium_task_duration_seconds_count", dag="flaky") == 2
    assert value(after, "podium_task_duration_seconds_bucket", dag="ok", le="+Inf") == 6
    buckets = [
        (float(dict(labels)["le"]), v)
        for labels, v in series_of(after, "podium_task_duration_seconds_bucket").items()
        if dict(labels)["dag"] == "ok"
    ]
    counts = [v for _, v in sorted(buckets)]
    assert counts == sorted(counts) and len(counts) == 13
    assert value(after, "podium_task_duration_seconds_bucket", dag="ok", le="1800.0") == 6
    assert value(after, "podium_runs_active") == 0
    assert value(after, "podium_pool_slots_in_use", pool="db") == 0
    assert value(after, "podium_tasks_running", dag="pooled") == 0
    assert series_of(after, "podium_events_total") == {
        frozenset({("outcome", "ran")}): 0,
        frozenset({("outcome", "deduplicated")}): 0,
        frozenset({("outcome", "filtered")}): 1,
        frozenset({("outcome", "dead")}): 0,
    }
    # the store: commits and rows as the writer counts them; one batch size per commit
    assert value(after, "podium_store_commits_total") == commits > 0
    assert value(after, "podium_store_rows_written_total") == rows >= commits
    assert value(after, "podium_store_batch_size_count") == commits
    assert value(after, "podium_store_batch_size_sum") == pytest.approx(rows)
    assert value(after, "podium_store_healthy") == 1
    assert value(after, "podium_loop_stalls_total") == 0


async def test_commit_hook_feeds_exact_batch_sizes_and_latency(db: Path) -> None:
    metrics = Metrics()
    metrics.observe_commit(3, 0.002)
    metrics.observe_commit(40, 0.02)
    async with engine_with(db, metrics) as podium:
        writer = podium.store.writer
        await writer.flush()  # nothing else writes while idle
        writer.commits, writer.rows_written = 2, 43  # as if the hook had seen every commit
        samples = scrape(podium, metrics)
    assert value(samples, "podium_store_batch_size_count") == 2
    assert value(samples, "podium_store_batch_size_bucket", le="2.0") == 0
    assert value(samples, "podium_store_batch_size_bucket", le="5.0") == 1
    assert value(samples, "podium_store_batch_size_bucket", le="50.0") == 2
    assert value(samples, "podium_store_commit_seconds_bucket", le="0.0025") == 1
    assert value(samples, "podium_store_commit_seconds_sum") == pytest.approx(0.022)


@task
async def hog() -> None:
    time.sleep(0.7)  # blocking call on the event loop: the bug the watchdog exists for


@dag
def hogging() -> None:
    hog()


async def test_loop_lag_watchdog_names_the_task_that_blocked_the_loop(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="podium.metrics")
    metrics = Metrics(loop_lag_interval=0.05, loop_lag_threshold=0.5)
    podium = Engine(db, dags=[hogging])
    podium.add_observer(metrics)
    async with podium, anyio.create_task_group() as tg:
        await tg.start(metrics.loop_lag.run)
        run = await podium.trigger("hogging")
        assert (await run.wait(timeout=10)).state == "success"
        with anyio.fail_after(10):
            while metrics.loop_lag.stalls < 1:
                await anyio.sleep(0.01)
        samples = scrape(podium, metrics)
        tg.cancel_scope.cancel()
    assert value(samples, "podium_loop_lag_max_seconds") >= 0.5
    assert value(samples, "podium_loop_stalls_total") >= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("event loop blocked for ") and f"hogging.hog (run {run.run_id}, try 1)" in m
        for m in warnings
    ), warnings


@asynccontextmanager
async def metrics_endpoint(registry: CollectorRegistry) -> AsyncIterator[str]:
    """A service's own aiohttp app serving ``registry`` at /metrics; yields its URL."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


async def test_a_callers_registry_serves_podiums_metrics_beside_its_own(db: Path) -> None:
    registry = CollectorRegistry()
    requests = Counter("shop_requests", "Requests the service answered.", registry=registry)
    requests.inc(3)
    async with (
        metrics_endpoint(registry) as url,
        aiohttp.ClientSession() as http,
    ):
        async with engine_with(db, registry=registry) as podium:
            assert podium.metrics_registry is registry
            assert (await (await podium.trigger("ok")).wait(timeout=10)).state == "success"
            async with http.get(url) as resp:
                assert resp.status == 200
                served = parse(await resp.text())
            own = parse(podium.metrics_text())  # the engine's /metrics: the same registry
        assert value(served, "shop_requests_total") == 3
        assert value(served, "podium_runs_total", dag="ok", state="success") == 1
        assert value(served, "podium_task_transitions_total", dag="ok", state="success") == 3
        assert value(served, "podium_task_slots") == 64
        assert value(own, "shop_requests_total") == 3
        assert value(own, "podium_runs_total", dag="ok", state="success") == 1

        # a stopped engine leaves the service's registry as it found it
        async with http.get(url) as resp:
            after = parse(await resp.text())
        assert value(after, "shop_requests_total") == 3
        assert not [name for name, _ in after if name.startswith("podium_")]


async def test_the_default_registry_is_private_and_holds_only_podium(tmp_path: Path) -> None:
    async with (
        engine_with(tmp_path / "a.db") as first,
        engine_with(tmp_path / "b.db") as second,
    ):
        assert first.metrics_registry is not second.metrics_registry
        assert (await (await first.trigger("ok")).wait(timeout=10)).state == "success"
        samples = parse(first.metrics_text())
        assert value(samples, "podium_runs_total", dag="ok", state="success") == 1
        assert ("podium_runs_total", frozenset({("dag", "ok"), ("state", "success")})) not in parse(
            second.metrics_text()
        )
    families = {f.name for f in text_string_to_metric_families(first.metrics_text())}
    assert families == set()  # stopped: nothing exported
    names = {n for n, _ in samples}
    assert all(n.startswith("podium_") for n in names), names


async def test_two_running_engines_cannot_share_a_registry(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with engine_with(tmp_path / "a.db", registry=registry) as first:
        second = Engine(tmp_path / "b.db", dags=[flaky], sensors=False, metrics_registry=registry)
        with pytest.raises(MetricsError, match="give each Engine its own metrics_registry"):
            async with second:
                pytest.fail("the second engine started")
        assert (await (await first.trigger("ok")).wait(timeout=10)).state == "success"
        samples = parse(generate_latest(registry).decode())
        assert value(samples, "podium_runs_total", dag="ok", state="success") == 1
    # once the first one stopped, the registry takes another engine (on the same state file too)
    async with engine_with(tmp_path / "a.db", registry=registry) as again:
        assert (await (await again.trigger("ok")).wait(timeout=10)).state == "success"
        samples = parse(generate_latest(registry).decode())
        assert value(samples, "podium_runs_total", dag="ok", state="success") == 1
    # the refused engine opened nothing: its state file is free
    async with Engine(tmp_path / "b.db", dags=[flaky], sensors=False) as third:
        assert (await (await third.trigger("flaky")).wait(timeout=10)).state == "success"


async def test_describe_names_every_family_collect_yields(db: Path) -> None:
    async with engine_with(db) as podium:
        collector = EngineCollector(podium, podium.metrics)
        described = [m.name for m in collector.describe()]
        collected = [m.name for m in collector.collect()]
    # (OpenLineage is off here: its family is tested in tests/integration/test_openlineage_out.py)
    expected = [f.name.removesuffix("_total") for f in FAMILIES if f is not OPENLINEAGE_EVENTS]
    assert described == collected == expected
