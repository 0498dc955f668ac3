"""The ``Trigger`` protocol: every trigger of ours implements it, source keys (durable: cursor ids,
subscriptions) are what they always were, and definitions refuse what is not a trigger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from engine import ManualClock, TriggerError, dag, task
from engine.router import Outcome, Subscription, route
from sensors import AfterDag, Cron, Every, KafkaTopic, S3Events, Trigger
from sensors.base import Event, EventSource
from sensors.sources import check_shared_consumers, source_for, subscription_of
from sensors.timer_source import TimerSource
from sensors.timers import schedule_from_spec


@task
def noop() -> None:
    return None


KAFKA = KafkaTopic("orders", bootstrap_servers="k:9092", group_id="g")
S3_SQS = S3Events(bucket="landing", prefix="crm/", queue_url="http://q/1")
S3_KAFKA = S3Events(
    bucket="landing", prefix="crm/", kafka_topic="s3", bootstrap_servers="k:9092", group_id="g"
)
S3_POLL = S3Events(bucket="landing", prefix="crm/", suffix=".csv", endpoint_url="http://s3")
CRON = Cron("0 4 * * *", tz="Europe/Berlin")
EVERY = Every(seconds=90, start=30.0)
AFTER = AfterDag("upstream", state=("success", "failed"))


@pytest.mark.parametrize(
    ("trigger", "key"),
    [
        (KAFKA, "kafka:k:9092:g:orders"),
        (S3_SQS, "s3-sqs:http://q/1"),
        (S3_KAFKA, "s3-kafka:k:9092:g:s3"),
        (S3_POLL, "s3-poll:http://s3:landing:crm/:.csv"),
        (CRON, "timer:nightly:2"),
        (EVERY, "timer:nightly:2"),
        (AFTER, "dag:upstream"),
    ],
)
def test_each_trigger_implements_the_protocol_with_the_source_keys_of_before(
    trigger: Any, key: str
) -> None:
    assert isinstance(trigger, Trigger)
    assert trigger.source_key("nightly", 2) == key
    assert subscription_of(trigger, dag_id="nightly", index=2) == key
    assert trigger.describe()


def test_timers_are_their_own_schedule_and_round_trip_through_their_spec() -> None:
    assert CRON.schedule is CRON and EVERY.schedule is EVERY
    assert (CRON.schedule.tz, EVERY.schedule.tz) == ("Europe/Berlin", "UTC")
    for timer in (CRON, EVERY):
        spec = timer.spec()
        assert spec is not None
        rebuilt = schedule_from_spec(spec)
        assert rebuilt.slots_between(0, 400_000) == timer.slots_between(0, 400_000)
    assert CRON.spec() == {"kind": "cron", "expr": "0 4 * * *", "tz": "Europe/Berlin"}
    assert EVERY.spec() == {"kind": "every", "seconds": 90, "start": 30.0}
    with pytest.raises(TriggerError, match="no schedule of kind 'hourly'"):
        schedule_from_spec({"kind": "hourly"})
    assert all(t.schedule is None for t in (KAFKA, S3_SQS, S3_KAFKA, S3_POLL, AFTER))


def test_dag_describes_its_timers_and_backfills_the_first_one() -> None:
    @dag(triggers=[KAFKA, EVERY, CRON])
    def mixed() -> None:
        noop()

    assert mixed.schedule is EVERY
    assert mixed.describe()["timers"] == [EVERY.spec(), CRON.spec()]


def test_a_dag_refuses_an_object_that_is_not_a_trigger() -> None:
    with pytest.raises(TriggerError) as info:

        @dag(dag_id="cronless", triggers=[CRON, "0 4 * * *"])
        def cronless() -> None:
            noop()

    message = str(info.value)
    assert "DAG 'cronless', trigger 1: '0 4 * * *' is not a trigger" in message
    assert "source_key" in message and "matches" in message


def test_sources_come_from_the_triggers() -> None:
    clock = ManualClock()
    timer = source_for(EVERY, dag_id="nightly", index=1, clock=clock)
    assert isinstance(timer, TimerSource) and timer.subscription == "timer:nightly:1"
    assert source_for(AFTER, dag_id="downstream", index=0, clock=clock) is None
    on_kafka = source_for(S3_KAFKA, dag_id="d", index=0, clock=clock)
    assert on_kafka is not None and on_kafka.subscription == S3_KAFKA.subscription
    with pytest.raises(TriggerError, match="not a Kafka trigger"):
        KAFKA.source(dag_id="d", index=0, clock=clock, sharing=[S3_KAFKA])


def test_one_kafka_consumer_is_not_read_by_two_kinds_of_trigger() -> None:
    same_group = S3Events(
        bucket="landing", kafka_topic="orders", bootstrap_servers="k:9092", group_id="g"
    )
    with pytest.raises(TriggerError, match=r"'orders' in group 'g'.*KafkaTopic and S3Events"):
        check_shared_consumers([KAFKA, CRON, same_group])
    other_group = S3Events(
        bucket="landing", kafka_topic="orders", bootstrap_servers="k:9092", group_id="h"
    )
    check_shared_consumers([KAFKA, KafkaTopic("orders", bootstrap_servers="k:9092"), other_group])


def test_after_dag_matches_the_upstream_states_it_names() -> None:
    assert AFTER.matches({"state": "failed"}) and not AFTER.matches({"state": "cancelled"})


@dataclass(frozen=True)
class Doorbell:
    """A trigger of a user's own (not one of Podium's classes)."""

    door: str
    filter: Any = None
    params: Any = None
    schedule = None
    consumer_key = None

    def source_key(self, dag_id: str, index: int) -> str:
        return "doorbells"

    def describe(self) -> str:
        return f"the {self.door} doorbell"

    def matches(self, payload: Mapping[str, Any]) -> bool:
        if payload.get("door") is None:
            raise ValueError("a ring without a door")
        return payload["door"] == self.door

    def source(
        self, *, dag_id: str, index: int, clock: Any, sharing: Sequence[Trigger] = ()
    ) -> EventSource | None:
        return None


def test_the_router_asks_any_trigger_through_the_protocol() -> None:
    @dag(triggers=[Doorbell("front", params=lambda p: {"ring": p["n"]})])
    def front(ring: int = 0) -> None:
        noop()

    @dag(triggers=[Doorbell("back", filter=lambda p: p["n"] > 1)])
    def back() -> None:
        noop()

    subs = [Subscription(front, front.triggers[0]), Subscription(back, back.triggers[0])]

    def ring(door: str | None, n: int) -> list[tuple[str, Outcome, Any]]:
        event = Event("doorbell", f"ring:{n}", {"door": door, "n": n})
        return [(d.dag_id, d.outcome, d.error or d.params) for d in route(event, subs)]

    assert ring("front", 1) == [
        ("front", Outcome.RAN, {"ring": 1}),
        ("back", Outcome.FILTERED, None),
    ]
    assert ring("back", 1)[1] == ("back", Outcome.FILTERED, None)  # its filter
    assert ring("back", 2)[1] == ("back", Outcome.RAN, {})
    assert ring(None, 3)[0] == (
        "front",
        Outcome.DEAD,
        "trigger matches() raised ValueError: a ring without a door",
    )


def test_the_web_ui_describes_any_trigger_through_the_protocol() -> None:
    from engine.web.triggers import dag_zone, describe_trigger

    bell = describe_trigger(Doorbell("front"), now=0.0)
    assert (bell["kind"], bell["words"], bell["text"], bell["next_at"]) == (
        "doorbell",
        "the front doorbell",
        "the front doorbell",
        None,
    )
    assert describe_trigger(EVERY, now=0.0)["next_at"] == 30.0
    assert str(dag_zone([Doorbell("front"), EVERY, CRON])) == "Europe/Berlin"
