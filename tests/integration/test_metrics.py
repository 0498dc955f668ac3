"""Prometheus metrics from a real engine, parsed line by line; the event-loop lag watchdog."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from engine import Context, Engine, dag, task
from engine.metrics import Metrics
from sensors.base import Event, EventBatch

Series = tuple[str, frozenset[tuple[str, str]]]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> dict[Series, float]:
    """A strict reader of the text format: every sample's family has HELP and TYPE lines before
    it, label values are properly escaped, and no series appears twice."""
    assert text.endswith("\n")
    samples: dict[Series, float] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name in helped and name not in typed, line
            typed[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, raw_labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"{name} has no # TYPE line"
        labels: list[tuple[str, str]] = []
        if raw_labels:
            inner = raw_labels[1:-1]
            pos = 0
            while pos < len(inner):
                lm = _LABEL.match(inner, pos)
                assert lm, f"bad labels in {line!r}"
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return samples


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
async def engine_with(metrics: Metrics, db: Path) -> AsyncIterator[Engine]:
    podium = Engine(db, dags=[ok, bad, flaky, pooled], pools={"db": 2}, sensors=False)
    podium.add_observer(metrics)
    async with podium:
        yield podium


async def test_counters_histograms_and_gauges_have_exact_values(db: Path) -> None:
    metrics = Metrics()
    async with engine_with(metrics, db) as podium:
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
        during = parse(metrics.render(podium))
        gates[0].set()
        assert (await run.wait(timeout=10)).state == "success"
        writer = podium.store.writer
        after = parse(metrics.render(podium))
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
    async with engine_with(metrics, db) as podium:
        writer = podium.store.writer
        await writer.flush()  # nothing else writes while idle
        writer.commits, writer.rows_written = 2, 43  # as if the hook had seen every commit
        samples = parse(metrics.render(podium))
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
        samples = parse(metrics.render(podium))
        tg.cancel_scope.cancel()
    assert value(samples, "podium_loop_lag_max_seconds") >= 0.5
    assert value(samples, "podium_loop_stalls_total") >= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("event loop blocked for ") and f"hogging.hog (run {run.run_id}, try 1)" in m
        for m in warnings
    ), warnings
