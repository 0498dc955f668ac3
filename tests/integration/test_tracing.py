"""OpenTelemetry tracing (engine/tracing.py) through a real engine, exported to the SDK's in-memory
exporter: run and try spans, errors, and the trace a run continues (Kafka message, HTTP request,
upstream run, the caller's span, a restart)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import Context, Engine, PodiumError, dag, task
from sensors import AfterDag, KafkaTopic
from tests.servers import KafkaBroker, create_topic, produce

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"
TOKEN = "tracing-token-1234"

seen: dict[str, Any] = {}
GATE: dict[str, anyio.Event] = {}


class Spans:
    """A tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    seen.clear()
    GATE["started"] = anyio.Event()
    GATE["release"] = anyio.Event()
    try:
        yield s
    finally:
        s.provider.shutdown()


def ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) as hex."""
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


# -- DAGs ---------------------------------------------------------------------------------------------


@task
async def first(ctx: Context) -> int:
    span = trace.get_current_span()
    seen["first"] = (span.get_span_context().span_id, span.is_recording())
    return 1


@task
def in_a_thread(value: int) -> int:
    span = trace.get_current_span()
    seen["thread"] = (span.get_span_context().span_id, threading.current_thread().name)
    return value + 1


@dag(dag_id="traced")
def traced() -> None:
    in_a_thread(first())


@task(retries=1, retry_delay=0)
async def flaky() -> str:
    seen["flaky"] = seen.get("flaky", 0) + 1
    if seen["flaky"] == 1:
        raise ValueError("first try fails")
    return "ok"


@task
async def broken() -> None:
    raise KeyError("no such row")


@dag(dag_id="failing")
def failing() -> None:
    flaky()
    broken()


@task
async def waits() -> str:
    GATE["started"].set()
    await GATE["release"].wait()
    return "released"


@dag(dag_id="waiting")
def waiting() -> None:
    waits()


@task
async def noop() -> None:
    return None


@dag(dag_id="upstream")
def upstream() -> None:
    noop()


@dag(dag_id="downstream", triggers=[AfterDag("upstream")])
def downstream() -> None:
    noop()


def trace_id(span: ReadableSpan) -> str:
    return ids(span)[0]


def span_id(span: ReadableSpan) -> str:
    return ids(span)[1]


# -- spans of a run -----------------------------------------------------------------------------------


async def test_a_run_has_a_span_and_each_try_a_child_span_current_in_the_task(
    tmp_path: Path, spans: Spans
) -> None:
    async with Engine(tmp_path / "t.db", dags=[traced], tracer_provider=spans.provider) as podium:
        run = await (await podium.trigger("traced")).wait(10)
    assert run.state == "success"
    root = spans.one("run traced")
    tries = {s.attributes["podium.task_id"]: s for s in spans.named("try traced.first")}
    tries |= {s.attributes["podium.task_id"]: s for s in spans.named("try traced.in_a_thread")}
    assert root.parent is None  # nothing started it: a new trace
    assert dict(root.attributes or {}) == {
        "podium.dag_id": "traced",
        "podium.run_id": run.run_id,
        "podium.run.key": run.key,
        "podium.run.trigger": "api",
        "podium.run.state": "success",
    }
    assert root.status.status_code is StatusCode.UNSET
    for task_id, span in tries.items():
        assert parent_id(span) == span_id(root) and trace_id(span) == trace_id(root)
        assert dict(span.attributes or {}) == {
            "podium.dag_id": "traced",
            "podium.run_id": run.run_id,
            "podium.task_id": task_id,
            "podium.try_number": 1,
            "podium.try.state": "success",
        }
    # inside the task, the current span is the try's span: in async code and in a worker thread
    first_span, first_recording = seen["first"]
    assert f"{first_span:016x}" == span_id(tries["first"]) and first_recording
    thread_span, thread_name = seen["thread"]
    assert f"{thread_span:016x}" == span_id(tries["in_a_thread"])
    assert thread_name != threading.current_thread().name


async def test_a_failed_try_records_its_exception_and_a_failed_run_has_status_error(
    tmp_path: Path, spans: Spans
) -> None:
    async with Engine(tmp_path / "f.db", dags=[failing], tracer_provider=spans.provider) as podium:
        run = await (await podium.trigger("failing")).wait(10)
    assert run.state == "failed"
    flaky_tries = sorted(
        spans.named("try failing.flaky"), key=lambda s: s.attributes["podium.try_number"]
    )
    assert [s.attributes["podium.try.state"] for s in flaky_tries] == ["failed", "success"]
    failed, retried = flaky_tries
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: first try fails"
    assert failed.attributes["error.type"] == "ValueError"
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "first try fails"
    assert "in flaky" in str(exception.attributes["exception.stacktrace"])
    assert retried.status.status_code is StatusCode.UNSET
    broken_try = spans.one("try failing.broken")
    assert broken_try.status.status_code is StatusCode.ERROR
    assert broken_try.attributes["error.type"] == "KeyError"
    root = spans.one("run failing")
    assert root.attributes["podium.run.state"] == "failed"
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "failed task(s): broken"


# -- the trace a run continues ------------------------------------------------------------------------


async def test_a_kafka_message_with_traceparent_is_the_parent_of_its_run(
    tmp_path: Path, spans: Spans, kafka_broker: KafkaBroker
) -> None:
    topic = f"traced-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_broker.bootstrap, topic)
    trigger = KafkaTopic(topic, bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}")

    @dag(dag_id="from_kafka", triggers=[trigger])
    def from_kafka(n: int = 0) -> None:
        first()

    (sent,) = await produce(
        kafka_broker.bootstrap, topic, [{"n": 1}], headers=[("traceparent", TRACEPARENT.encode())]
    )
    # a message without a trace context starts a new trace
    await produce(kafka_broker.bootstrap, topic, [{"n": 2}])
    async with Engine(
        tmp_path / "k.db", dags=[from_kafka], tracer_provider=spans.provider
    ) as podium:
        with anyio.fail_after(60):
            while podium.sink.counts["ran"] < 2 or podium.pending_runs:
                await anyio.sleep(0.05)
    runs = {s.attributes["podium.run.key"]: s for s in spans.named("run from_kafka")}
    traced_run = runs[f"kafka:{topic}:{sent.partition}:{sent.offset}"]
    assert trace_id(traced_run) == PRODUCER_TRACE and parent_id(traced_run) == PRODUCER_SPAN
    assert traced_run.parent is not None and traced_run.parent.is_remote
    assert traced_run.kind is SpanKind.CONSUMER
    assert traced_run.attributes["messaging.system"] == "kafka"
    assert traced_run.attributes["messaging.destination.name"] == topic
    assert traced_run.attributes["messaging.kafka.offset"] == sent.offset
    (other,) = [s for key, s in runs.items() if s is not traced_run]
    assert other.parent is None and trace_id(other) != PRODUCER_TRACE
    for run_span in (traced_run, other):
        (try_span,) = [
            s
            for s in spans.named("try from_kafka.first")
            if s.attributes["podium.run_id"] == run_span.attributes["podium.run_id"]
        ]
        assert parent_id(try_span) == span_id(run_span)
        assert trace_id(try_span) == trace_id(run_span)


async def test_an_http_trigger_continues_the_requests_traceparent(
    tmp_path: Path, spans: Spans
) -> None:
    async with Engine(
        tmp_path / "h.db",
        dags=[traced],
        tracer_provider=spans.provider,
        http="127.0.0.1:0",
        http_token=TOKEN,
    ) as podium:
        headers = {"Authorization": f"Bearer {TOKEN}", "traceparent": TRACEPARENT}
        base = f"http://127.0.0.1:{podium.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            async with http.post("/api/dags/traced/trigger", json={}, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
            async with http.post(
                "/api/dags/traced/trigger", json={}, headers=headers | {"traceparent": ""}
            ) as resp:
                assert resp.status == 201, await resp.text()
                untraced = await resp.json()
        await podium.wait_run(created["run_id"], timeout=10)
        await podium.wait_run(untraced["run_id"], timeout=10)
    runs = {s.attributes["podium.run_id"]: s for s in spans.named("run traced")}
    run = runs[created["run_id"]]
    assert trace_id(run) == PRODUCER_TRACE and parent_id(run) == PRODUCER_SPAN
    of_run = [s for s in spans.finished if s.attributes["podium.run_id"] == created["run_id"]]
    assert len(of_run) == 3 and {trace_id(s) for s in of_run} == {PRODUCER_TRACE}
    assert runs[untraced["run_id"]].parent is None


async def test_trigger_inside_a_span_continues_it(tmp_path: Path, spans: Spans) -> None:
    tracer = spans.provider.get_tracer("caller")
    async with Engine(tmp_path / "c.db", dags=[traced], tracer_provider=spans.provider) as podium:
        with tracer.start_as_current_span("handle request") as caller:
            run = await podium.trigger("traced")
        await run.wait(10)
    root = spans.one("run traced")
    assert parent_id(root) == f"{caller.get_span_context().span_id:016x}"
    assert trace_id(root) == f"{caller.get_span_context().trace_id:032x}"


async def test_an_after_dag_run_is_a_child_of_the_upstream_run(
    tmp_path: Path, spans: Spans
) -> None:
    async with Engine(
        tmp_path / "a.db", dags=[upstream, downstream], tracer_provider=spans.provider
    ) as podium:
        up = await (await podium.trigger("upstream")).wait(10)
        with anyio.fail_after(10):
            while not (down := await podium.runs(dag_id="downstream")) or not down[0].finished:
                await anyio.sleep(0.02)
    assert up.state == "success" and down[0].state == "success"
    up_span, down_span = spans.one("run upstream"), spans.one("run downstream")
    assert parent_id(down_span) == span_id(up_span)
    assert trace_id(down_span) == trace_id(up_span)
    assert down_span.attributes["podium.run.trigger"] == "dag"
    assert parent_id(spans.one("try downstream.noop")) == span_id(down_span)


async def test_a_run_resumed_after_a_restart_keeps_its_trace(tmp_path: Path, spans: Spans) -> None:
    db = tmp_path / "r.db"
    tracer = spans.provider.get_tracer("caller")
    async with Engine(
        db, dags=[waiting], tracer_provider=spans.provider, shutdown_grace=0
    ) as podium:
        with tracer.start_as_current_span("caller") as caller:
            run = await podium.trigger("waiting")
        with anyio.fail_after(10):
            await GATE["started"].wait()
    # the engine stopped with the task waiting: its try was interrupted, the run span ended
    GATE["started"], GATE["release"] = anyio.Event(), anyio.Event()
    GATE["release"].set()
    async with Engine(db, dags=[waiting], tracer_provider=spans.provider) as podium:
        done = await podium.wait_run(run.run_id, timeout=10)
    assert done.state == "success" and done.tasks["waits"].result == "released"
    caller_trace = f"{caller.get_span_context().trace_id:032x}"
    first_run, resumed_run = sorted(spans.named("run waiting"), key=lambda s: s.start_time or 0)
    assert {trace_id(s) for s in spans.finished} == {caller_trace}
    assert parent_id(first_run) == f"{caller.get_span_context().span_id:016x}"
    assert [e.name for e in first_run.events][-1] == "engine stopped"
    assert first_run.attributes["podium.run.state"] == "running"
    assert parent_id(resumed_run) == span_id(first_run)
    assert resumed_run.attributes["podium.run.resumed"] is True
    assert resumed_run.attributes["podium.run.state"] == "success"
    interrupted, finished = sorted(
        spans.named("try waiting.waits"), key=lambda s: s.attributes["podium.try_number"]
    )
    assert parent_id(interrupted) == span_id(first_run)
    assert interrupted.attributes["podium.try.state"] == "cancelled"
    assert interrupted.attributes["podium.try.cancel_reason"] == "shutdown"
    assert parent_id(finished) == span_id(resumed_run)
    assert finished.attributes["podium.try.state"] == "success"


async def test_a_run_stored_without_trace_context_starts_a_trace_when_adopted(
    tmp_path: Path, spans: Spans
) -> None:
    db = tmp_path / "n.db"
    async with Engine(db, dags=[waiting], shutdown_grace=0) as podium:  # tracing off
        run = await podium.trigger("waiting")
        with anyio.fail_after(10):
            await GATE["started"].wait()
    GATE["release"].set()
    async with Engine(db, dags=[waiting], tracer_provider=spans.provider) as podium:
        await podium.wait_run(run.run_id, timeout=10)
        stored = await podium.store.find_run("waiting", run.key)
    root = spans.one("run waiting")
    assert root.parent is None and "podium.run.resumed" not in (root.attributes or {})
    assert stored is not None and stored.trace_context is not None
    assert json.loads(stored.trace_context)["traceparent"].split("-")[1] == trace_id(root)


# -- off ----------------------------------------------------------------------------------------------


def test_tracing_off_never_imports_opentelemetry(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from engine import Engine, dag, task

@task
async def one() -> int:
    return 1

@dag(dag_id="plain")
def plain() -> None:
    one()

async def main() -> None:
    async with Engine({str(tmp_path / "off.db")!r}, dags=[plain], http="127.0.0.1:0") as podium:
        run = await (await podium.trigger("plain")).wait(10)
        assert run.state == "success", run.state
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    assert not loaded, loaded
    assert "engine.tracing" not in sys.modules

asyncio.run(main())
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_tracing_without_opentelemetry_installed_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "engine.tracing", raising=False)
    with pytest.raises(PodiumError, match=r"pip install 'podium\[otel\]'"):
        Engine(tmp_path / "x.db", dags=[traced], tracing=True)
