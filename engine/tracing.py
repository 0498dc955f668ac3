"""OpenTelemetry tracing: a span per run and per try, continuing the trace that started the run.

Off by default, and then it costs nothing: the engine holds ``None`` instead of a ``Tracing``, the
few places that would call it check for that, and ``opentelemetry`` is never imported. On with
``Engine(tracing=True)`` (the global tracer provider) or ``Engine(tracer_provider=...)``; it needs
the ``podium[otel]`` extra. docs/tracing.md has the whole story.

Spans (attribute names ``podium.*``; OpenTelemetry's ``messaging.*`` and ``error.type`` where one
fits):

- ``run {dag_id}``: from the run's creation to its final state (``podium.run.state``; status ERROR
  for a failed run). Created by the ``RunBook`` (``run_created``, ``run_adopted``), ended by the
  ``Recorder`` as an observer (``run_changed``).
- ``try {dag_id}.{task_id}``: one try, a child of its run's span, and the *current span* while the
  task body runs (the ``Dispatcher`` opens it in the try's own asyncio task; sync tasks run in
  worker threads that copy the context), so a task's own instrumented HTTP calls continue the trace.
  A failed try records its exception and has status ERROR.

A new run's parent, in order:

1. the event's W3C trace context, in its ``headers`` (a Kafka message's ``traceparent`` header;
   any sensor whose payload carries ``headers`` works the same way);
2. the caller's current span: ``Engine.trigger`` inside a span, the HTTP API (which continues the
   request's ``traceparent`` header), and ``AfterDag`` runs, which the engine creates with the
   upstream run's span current;
3. nothing: a new trace. The router loop runs outside any ambient span, so a timer's run never
   becomes a child of whatever span the engine was started in.

The run span's context is stored with the run's row (``runs.trace_context``, same commit). A run
adopted later (after a restart, a rerun, or queued by the CLI) gets a new ``run`` span that is a
child of the stored one, so it stays in its trace; a run stored without one starts a new trace and
stores it then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import serialization
from .executor import Outcome, TryResult
from .states import RunState
from .store import queries as q

if TYPE_CHECKING:
    from .recorder import Recorder
    from .run_state import ActiveRun, TaskRecord

TRACER_NAME = "podium"

# The stored form is always W3C trace context, whatever propagators the process has configured:
# it is read back by this module only.
_W3C = TraceContextTextMapPropagator()


class TryTrace:
    """The span of one running try, current in the try's task until ``end``."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, rec: TaskRecord, outcome: TryResult | None) -> None:
        """The try is over (``outcome`` None: the engine was torn down under it)."""
        otel_context.detach(self._token)
        span = self._span
        if outcome is None:
            span.set_attribute("podium.try.state", Outcome.CANCELLED.value)
            span.set_attribute("podium.try.cancel_reason", "engine torn down")
        else:
            span.set_attribute("podium.try.state", outcome.outcome.value)
            if outcome.outcome is Outcome.CANCELLED and rec.cancel_reason is not None:
                span.set_attribute("podium.try.cancel_reason", rec.cancel_reason)
            elif outcome.outcome is Outcome.FAILED:
                error = outcome.error
                if error is not None:
                    span.record_exception(error)
                    span.set_attribute("error.type", _qualified_name(type(error)))
                span.set_status(Status(StatusCode.ERROR, outcome.message))
        span.end()


class Tracing:
    """The engine's spans (see the module docstring). An ``Observer`` of run changes."""

    def __init__(self, recorder: Recorder, tracer_provider: trace.TracerProvider | None) -> None:
        self._recorder = recorder
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._runs: dict[str, Span] = {}  # the open span of every run served, by run id
        self._finished: dict[str, Span] = {}  # ended, until their completion is delivered

    # -- runs: the RunBook's hooks ------------------------------------------------------------------

    def run_created(self, run: ActiveRun) -> None:
        """A new run's row was just recorded: open its span and store the span's context with it."""
        carrier = event_trace_carrier(run.event)
        parent = propagate.extract(carrier) if carrier is not None else None  # None: current
        span = self._start_run_span(run, parent)
        self._store(run, span)

    def run_adopted(self, run: ActiveRun, stored: bytes | None) -> None:
        """A stored run is served again: a new span, a child of the stored one if there is one."""
        if run.run_id in self._runs:
            return
        carrier = serialization.loads(stored) if stored is not None else None
        if isinstance(carrier, dict):
            span = self._start_run_span(run, _W3C.extract(carrier), resumed=True)
        else:  # stored before tracing was on, or queued by the CLI: a trace starts here
            span = self._start_run_span(run, otel_context.Context())
            self._store(run, span)

    def run_forgotten(self, run: ActiveRun) -> None:
        """A created run's row was not committed: its span is dropped, never ended nor exported."""
        self._runs.pop(run.run_id, None)

    def _start_run_span(
        self, run: ActiveRun, parent: otel_context.Context | None, *, resumed: bool = False
    ) -> Span:
        attributes: dict[str, Any] = {
            "podium.dag_id": run.dag.dag_id,
            "podium.run_id": run.run_id,
            "podium.run.key": run.key,
            "podium.run.trigger": run.trigger,
            "podium.run.state": run.state.value,
        }
        if resumed:
            attributes["podium.run.resumed"] = True
        kind = SpanKind.INTERNAL
        event = run.event
        if isinstance(event, dict) and event.get("source") == "kafka":
            kind = SpanKind.CONSUMER  # processing a message (OpenTelemetry messaging conventions)
            attributes.update(_kafka_attributes(event))
        span = self._tracer.start_span(
            f"run {run.dag.dag_id}", context=parent, kind=kind, attributes=attributes
        )
        self._runs[run.run_id] = span
        return span

    def _store(self, run: ActiveRun, span: Span) -> None:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, trace.set_span_in_context(span))
        if carrier:  # empty for an invalid span context (no SDK installed: the API's no-op spans)
            self._recorder.execute(q.SET_RUN_TRACE, (serialization.dumps(carrier), run.run_id))

    # -- runs: Observer -----------------------------------------------------------------------------

    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        pass

    def run_changed(self, run: ActiveRun) -> None:
        span = self._runs.get(run.run_id)
        if span is None:
            return
        state = run.state
        span.set_attribute("podium.run.state", state.value)
        if not state.finished:
            span.add_event(f"run {state.value}", {"podium.run.note": run.note or ""})
            return
        del self._runs[run.run_id]
        if state is RunState.FAILED:
            span.set_status(Status(StatusCode.ERROR, run.note))
        span.end()
        self._finished[run.run_id] = span

    @contextmanager
    def upstream(self, run: ActiveRun) -> Iterator[None]:
        """Make the finished ``run``'s span current, so the runs it triggers (``AfterDag``) are its
        children; forget it afterwards."""
        span = self._finished.pop(run.run_id, None)
        if span is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)

    # -- tries: the Dispatcher's hook ---------------------------------------------------------------

    def start_try(self, run: ActiveRun, rec: TaskRecord) -> TryTrace:
        """Open the span of the try that starts now and make it current (call from the try's task)."""
        run_span = self._runs.get(run.run_id)
        parent = (
            trace.set_span_in_context(run_span) if run_span is not None else otel_context.Context()
        )
        span = self._tracer.start_span(
            f"try {run.dag.dag_id}.{rec.task_id}",
            context=parent,
            attributes={
                "podium.dag_id": run.dag.dag_id,
                "podium.run_id": run.run_id,
                "podium.task_id": rec.task_id,
                "podium.try_number": rec.try_number,
            },
        )
        return TryTrace(span)

    # -- lifecycle ----------------------------------------------------------------------------------

    @contextmanager
    def continuing(self, carrier: Mapping[str, Any]) -> Iterator[None]:
        """Make the trace context in ``carrier`` (HTTP headers, say) current, if it has one."""
        token = otel_context.attach(propagate.extract(carrier))
        try:
            yield
        finally:
            otel_context.detach(token)

    async def detached(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` outside any ambient span (the router loop: see the module docstring)."""
        token = otel_context.attach(otel_context.Context())
        try:
            await fn()
        finally:
            otel_context.detach(token)

    def close(self) -> None:
        """The engine stops: end the spans of the runs still open (they go on in a new span, a
        child of the stored one, when the engine starts again)."""
        for span in self._runs.values():
            span.add_event("engine stopped")
            span.end()
        self._runs.clear()
        self._finished.clear()


def event_trace_carrier(event: Any) -> Mapping[str, Any] | None:
    """The ``headers`` of a run's event if they carry a W3C ``traceparent``, else None."""
    if not isinstance(event, dict):
        return None
    headers = event.get("headers")
    if isinstance(headers, dict) and isinstance(headers.get("traceparent"), str):
        return headers
    return None


def _kafka_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
    }
    for attribute, key, kind in (
        ("messaging.destination.name", "topic", str),
        ("messaging.destination.partition.id", "partition", int),
        ("messaging.kafka.offset", "offset", int),
    ):
        value = event.get(key)
        if isinstance(value, kind):
            attributes[attribute] = str(value) if attribute.endswith("partition.id") else value
    return attributes


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


__all__ = ["TRACER_NAME", "Tracing", "TryTrace", "event_trace_carrier"]
