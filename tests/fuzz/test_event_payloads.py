"""Bad event payloads through the real engine's bus: every event gets an outcome, never a crash.

Two DAGs share one Kafka-style subscription (the source is not started; events are published on
``engine.sink`` the way the Kafka sensor does): one with a user ``filter=`` and ``params=`` mapper
written the way users write them (they raise on shapes they did not expect), one with neither
(the event's own params, a JSON object value, go straight to the annotated DAG params).

For each batch: ``stored()`` answers, with one outcome per event from {ran, deduplicated, filtered,
dead}; a dead event has its error recorded; a duplicate id never runs twice, nor does redelivery;
every run that was created finishes; and a good event afterwards still runs to success.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import hypothesis
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Context, Engine, dag, task
from sensors.base import Event, EventBatch
from sensors.kafka import KafkaTopic
from sensors.kafka_records import event_from_record
from sensors.sources import subscription_of

from .support import (
    FUZZ,
    Served,
    deep_values,
    engine_in_thread,
    huge_strings,
    json_scalars,
    json_values,
    nest,
    python_only,
)

OUTCOMES = {"ran", "deduplicated", "filtered", "dead"}
STORE_TIMEOUT = 30.0
RUN_TIMEOUT = 30.0


def fuzz_filter(payload: Mapping[str, Any]) -> bool:
    value = payload["value"]
    if isinstance(value, dict) and "skip" in value:
        return False
    if isinstance(value, dict) and value.get("explode"):
        raise RuntimeError("filter exploded")
    return True


def fuzz_params(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    value = payload["value"]
    if isinstance(value, list):
        return {"count": len(value), "name": str(value[0])}  # IndexError on []: dead
    if isinstance(value, dict):
        return value  # the usual `params=lambda p: p["value"]`: whatever the producer sent
    return {"name": value}  # a scalar: fine if it is a string, a ParamError otherwise


MAPPED = KafkaTopic("fuzz", filter=fuzz_filter, params=fuzz_params)
PLAIN = KafkaTopic("fuzz")
SUBSCRIPTION = subscription_of(MAPPED, dag_id="fuzz_mapped", index=0)
assert SUBSCRIPTION == subscription_of(PLAIN, dag_id="fuzz_plain", index=0)


@task
async def summarize(amount: float, count: int, name: str, flag: bool, ctx: Context) -> str:
    return f"{amount}:{count}:{len(name or '')}:{flag}:{ctx.run_id}"


@dag(triggers=[MAPPED])
def fuzz_mapped(amount: float = 0.0, count: int = 0, name: str = "", flag: bool = False) -> None:
    summarize(amount, count, name, flag)


@dag(triggers=[PLAIN])
def fuzz_plain(amount: float = 0.0, count: int = 0, name: str = "", flag: bool = False) -> None:
    summarize(amount, count, name, flag)


@dataclass(frozen=True)
class Record:
    """What the Kafka sensor reads of a message (the fields ``event_from_record`` uses)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


# -- event specs: built into Events with fresh ids inside each example ----------------------------


@dataclass(frozen=True)
class Spec:
    kind: str  # "record" (bytes through the Kafka decoder), "payload" (a Python value), "error"
    value: Any
    duplicate: bool = False  # reuse the previous event's id (a redelivery inside one batch)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _record_or_marker(params: dict[str, Any]) -> bytes:
    """A typed-looking message as the Kafka sensor would read it."""
    try:
        return orjson.dumps(params)
    except TypeError:  # a value JSON cannot hold (only Python sources can send it)
        return b'{"extra": ' + b"[" * 300 + b"]" * 300 + b"}"


invalid_json = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"{", b'{"a": }', b"\xff\xfe", b"NaN", b"[1,]", b'{"amount": 1e999}', b"\x00", b""]
    ),
)
record_bytes = st.one_of(
    invalid_json,
    json_values.map(orjson.dumps),
    deep_values.map(lambda v: orjson.dumps(v) if _encodable(v) else b"[" * 300 + b"]" * 300),
    huge_strings.map(lambda s: orjson.dumps({"name": s})),  # runs: a str param
    st.builds(lambda d: b'{"extra": ' + b"[" * d + b"]" * d + b"}", st.integers(250, 1020)),
    st.none(),  # a tombstone
)
# Huge strings only where they make runs (the events table keeps the payload of every dead event,
# and reading it back grows with what it holds; see test_huge_dead_payloads_are_stored below).
event_values = st.one_of(json_values, deep_values, json_scalars, st.lists(json_scalars, max_size=5))
typed_params = st.fixed_dictionaries(
    {},
    optional={
        "amount": event_values,
        "count": event_values,
        "name": st.one_of(event_values, huge_strings),
        "flag": event_values,
        "skip": st.just(1),
        "explode": st.just(True),
        "extra": st.one_of(event_values, python_only),
    },
)
specs = st.one_of(
    st.builds(Spec, st.just("record"), record_bytes, st.booleans()),
    st.builds(Spec, st.just("payload"), typed_params, st.booleans()),
    st.builds(
        Spec,
        st.just("payload"),
        st.one_of(event_values, python_only, st.builds(nest, st.integers(250, 400))),
        st.booleans(),
    ),
    st.builds(Spec, st.just("record"), typed_params.map(_record_or_marker)),
    st.builds(Spec, st.just("error"), st.text(max_size=200)),
)


def _event(spec: Spec, offset: int) -> Event:
    if spec.kind == "record":
        record = Record("fuzz", 1, offset, 1_700_000_000_000, b"k", spec.value)
        return event_from_record(record, "json")
    event_id = f"kafka:fuzz:1:{offset}"
    if spec.kind == "error":
        return Event("kafka", event_id, None, error=f"invalid JSON at {event_id}: {spec.value}")
    value = spec.value
    payload = {"topic": "fuzz", "partition": 1, "offset": offset, "value": value}
    return Event("kafka", event_id, payload, params=value if isinstance(value, dict) else None)


def _events(served: Served, batch: list[Spec]) -> list[Event]:
    events: list[Event] = []
    for spec in batch:
        if spec.duplicate and events:
            prev = events[-1]
            events.append(_event(spec, _offset_of(prev)))
        else:
            events.append(_event(spec, served.next_id()))
    return events


def _offset_of(event: Event) -> int:
    return int(event.event_id.rsplit(":", 1)[1])


# -- calls into the engine's loop -------------------------------------------------------------------


async def _store(engine: Engine, events: list[Event]) -> list[str]:
    batch = EventBatch(SUBSCRIPTION, events)
    with anyio.fail_after(STORE_TIMEOUT):
        await engine.sink.publish(batch)
        return await batch.stored()


async def _rows(engine: Engine, event_ids: set[str]) -> list[dict[str, Any]]:
    """The recorded outcomes of ``event_ids``, which must be the batch stored last (newest first:
    reading a few rows keeps each example fast however many events came before)."""
    return [r for r in await engine.events(limit=50) if r["event_id"] in event_ids]


async def _runs_of(engine: Engine, event_ids: set[str]) -> list[tuple[str, str, str]]:
    """(DAG, key, run id) of every run keyed by one of ``event_ids`` (the key is the event id)."""
    found = []
    for dag_id in engine.dags:
        for key in event_ids:
            row = await engine.store.find_run(dag_id, key)
            if row is not None:
                found.append((dag_id, key, row.run_id))
    return sorted(found)


async def _finish(engine: Engine, run_ids: list[str]) -> list[str]:
    states = []
    for run_id in run_ids:
        run = await engine.wait_run(run_id, timeout=RUN_TIMEOUT)
        states.append(run.state.value)
    return states


def _check_batch(served: Served, events: list[Event]) -> None:
    engine = served.engine
    outcomes = served.call(_store, engine, events)
    assert len(outcomes) == len(events) and set(outcomes) <= OUTCOMES, outcomes
    for event, outcome in zip(events, outcomes, strict=True):
        if event.error is not None:
            assert outcome == "dead"

    seen = {e.event_id for e in events}
    rows = served.call(_rows, engine, seen)
    ids = [e.event_id for e in events]
    for event, outcome in zip(events, outcomes, strict=True):
        mine = [r for r in rows if r["event_id"] == event.event_id]
        assert mine, f"no recorded outcome for {event.event_id}"
        # (a row holds the latest outcome per DAG, and "ran" is never overwritten: check the
        # error of events that came once)
        if outcome == "dead" and ids.count(event.event_id) == 1:
            dead = [r for r in mine if r["outcome"] == "dead"]
            assert dead and all(r["error"] for r in dead), mine
    for row in rows:
        hypothesis.event(f"{row['dag_id']}: {row['outcome']}")
    ran_rows = [r for r in rows if r["outcome"] == "ran"]
    assert all(r["run_id"] for r in ran_rows), f"a 'ran' event names no run: {ran_rows}"

    # every run these events created finishes (success, or failed through its task: never stuck)
    run_ids = sorted({r["run_id"] for r in ran_rows})
    states = served.call(_finish, engine, run_ids)
    assert set(states) <= {"success", "failed"}, states

    runs = served.call(_runs_of, engine, seen)
    assert sorted(r[2] for r in runs) == run_ids  # one run per (DAG, event), the ones recorded

    # redelivery of the whole batch creates nothing new
    again = served.call(_store, engine, events)
    expected = {
        "ran": {"deduplicated"},
        "deduplicated": {"deduplicated"},
        "filtered": {"filtered"},
        # dead stays dead, unless a later copy of the event (same id) ran meanwhile
        "dead": {"dead", "deduplicated"},
    }
    for first, second in zip(outcomes, again, strict=True):
        assert second in expected[first], (outcomes, again)
    assert served.call(_runs_of, engine, seen) == runs


def _check_still_serving(served: Served) -> None:
    good = Event(
        "kafka",
        f"kafka:fuzz:2:{served.next_id()}",
        {"value": {"amount": 1.5, "count": 2, "name": "ok", "flag": True}},
        params={"amount": 1.5, "count": 2, "name": "ok", "flag": True},
    )
    assert served.call(_store, served.engine, [good]) == ["ran"]
    rows = served.call(_rows, served.engine, {good.event_id})
    run_ids = sorted(r["run_id"] for r in rows)
    assert len(run_ids) == 2  # one run per DAG
    assert served.call(_finish, served.engine, run_ids) == ["success", "success"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with engine_in_thread(tmp_path / "fuzz.db", [fuzz_mapped, fuzz_plain]) as s:
        yield s
        # after every example: nothing left unfinished, nothing queued forever
        engine = s.engine
        assert s.call(lambda: engine.pending_runs) == 0
        for state in ("queued", "running"):
            stuck = s.call(lambda st=state: engine.runs(state=st))
            assert stuck == [], f"runs left {state}: {stuck}"


@FUZZ
@given(batch=st.lists(specs, min_size=1, max_size=6))
def test_every_event_gets_an_outcome_and_the_engine_keeps_serving(
    served: Served, batch: list[Spec]
) -> None:
    _check_batch(served, _events(served, batch))
    _check_still_serving(served)


@FUZZ
@given(raw=record_bytes)
def test_kafka_bytes_one_message_at_a_time(served: Served, raw: bytes | None) -> None:
    """What one partition of the Kafka sensor sends: a message per batch, decoded as JSON."""
    _check_batch(served, [_event(Spec("record", raw), served.next_id())])
    _check_still_serving(served)


# -- regressions found by the properties above (explicit, so the cause reads at a glance) ----------


def test_payload_too_deep_to_store_is_dead_and_its_neighbours_run(tmp_path: Path) -> None:
    """A JSON object nested 255..1024 levels deep decodes (orjson reads up to 1024) but cannot be
    encoded again (orjson writes up to 254), so storing its run fails. It must be a dead event, not
    a failed batch: the Kafka sensor retries a failed batch forever, and the second time the key the
    first attempt reserved makes the event "deduplicated" with no run, while the runs of its
    neighbours stay queued, never started, until a restart."""
    deep = b'{"extra": ' + b"[" * 300 + b"]" * 300 + b"}"
    with engine_in_thread(tmp_path / "deep.db", [fuzz_mapped, fuzz_plain]) as served:
        events = [
            _event(Spec("payload", {"name": "before"}), 1),
            event_from_record(Record("fuzz", 0, 2, 0, None, deep), "json"),
            _event(Spec("payload", {"name": "after"}), 3),
        ]
        assert events[1].error is None  # valid JSON: the decoder accepts it
        assert served.call(_store, served.engine, events) == ["ran", "dead", "ran"]
        _check_still_serving(served)


def test_huge_dead_payloads_are_stored_and_the_engine_keeps_serving(tmp_path: Path) -> None:
    with engine_in_thread(tmp_path / "huge.db", [fuzz_mapped, fuzz_plain]) as served:
        events = [
            event_from_record(Record("fuzz", 5, 1, 0, None, b"{" + b"x" * 3_000_000), "json"),
            _event(Spec("payload", ["x" * 2_000_000]), 2),  # the mapper makes it a str param
            _event(Spec("payload", {"count": "y" * 2_000_000}), 3),  # not an int: dead
        ]
        assert served.call(_store, served.engine, events) == ["dead", "ran", "dead"]
        _check_still_serving(served)


def test_an_event_that_was_dead_and_then_runs_records_its_run(tmp_path: Path) -> None:
    """The events table keeps one row per (event, DAG); when an event recorded dead (or filtered)
    comes again and runs (a replay after fixing a filter, or a redelivery with a readable body),
    UPSERT_EVENT updates the outcome to "ran" but keeps run_id NULL: the event no longer leads to
    its run."""
    with engine_in_thread(tmp_path / "again.db", [fuzz_mapped, fuzz_plain]) as served:
        event_id = "kafka:fuzz:4:1"
        dead = Event("kafka", event_id, None, error=f"invalid JSON at {event_id}: bad")
        good = Event("kafka", event_id, {"value": {"name": "ok"}}, params={"name": "ok"})
        assert served.call(_store, served.engine, [dead]) == ["dead"]
        assert served.call(_store, served.engine, [good]) == ["ran"]
        rows = served.call(_rows, served.engine, {event_id})
        assert [r["outcome"] for r in rows] == ["ran", "ran"]
        assert all(r["run_id"] for r in rows), rows


def test_params_mapper_returning_mixed_key_types_is_dead_not_a_stuck_partition(
    tmp_path: Path,
) -> None:
    """A mapper returning ``{0: ..., "name": ...}`` (say, a CSV row) makes ``validate_params`` raise
    TypeError (``sorted`` over int and str keys) outside the router's ParamError handling, so the whole
    batch fails; the Kafka sensor retries it forever and the partition is stuck."""
    with engine_in_thread(tmp_path / "keys.db", [fuzz_mapped, fuzz_plain]) as served:
        events = [Event("kafka", "kafka:fuzz:3:1", {"value": {0: "a", "extra": "b"}})]
        # dead (a ParamError naming the keys) or ran (keys kept as they are): not a failed batch
        assert served.call(_store, served.engine, events) in (["dead"], ["ran"])
        _check_still_serving(served)
