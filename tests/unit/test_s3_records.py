"""S3 events without I/O: notification parsing, event ids, the poll cursor, trigger validation.

Samples follow the AWS formats (``Records`` notifications as S3 sends them to SQS/SNS, the SNS
envelope, EventBridge) and moto's variant (no sequencer, ``/`` encoded as ``%2F``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import TriggerError
from sensors.base import Event
from sensors.s3 import S3Events, source_for
from sensors.s3_records import (
    KeyFilter,
    ListedObject,
    PollCursor,
    event_from_listing,
    events_from_notification,
    listed_object,
    object_event_id,
)

ETAG = "d41d8cd98f00b204e9800998ecf8427e"
VERSION = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
SEQUENCER = "0055AED6DCD90281E5"


def aws_record(
    key: str,
    *,
    bucket: str = "landing",
    event_name: str = "ObjectCreated:Put",
    size: int = 1024,
    etag: str = ETAG,
    version_id: str | None = None,
    sequencer: str | None = SEQUENCER,
) -> dict[str, Any]:
    """A record as AWS S3 sends it (``key`` must already be URL-encoded)."""
    obj: dict[str, Any] = {"key": key, "size": size, "eTag": etag}
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2024-05-02T10:15:30.123Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "podium-landing",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def notification(*records: dict[str, Any]) -> bytes:
    return orjson.dumps({"Records": list(records)})


TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2024-05-02T10:15:00.000Z",
    "Bucket": "landing",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sns_envelope(message: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:landing-events",
        "Subject": "Amazon S3 Notification",
        "Message": orjson.dumps(message).decode(),
        "Timestamp": "2024-05-02T10:15:30.456Z",
        "SignatureVersion": "1",
    }


def eventbridge(key: str, *, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-05-02T10:15:30Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:s3:::landing"],
        "detail": {
            "version": "0",
            "bucket": {"name": "landing"},
            "object": {
                "key": key,
                "size": 5,
                "etag": ETAG,
                "version-id": VERSION,
                "sequencer": SEQUENCER,
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def parse(body: Any, only: Sequence[KeyFilter] | None = None) -> list[Event]:
    return events_from_notification(body, source_id="sqs:msg-1", only=only)


# ------------------------------------------------------------------------------ notifications


def test_aws_put_record_becomes_one_event() -> None:
    record = aws_record("crm/new+file+%C3%BC.csv", version_id=VERSION)
    (event,) = parse(notification(record))
    assert event.source == "s3"
    assert event.error is None
    assert event.event_id == f"s3:landing/crm/new file ü.csv@{VERSION}#{SEQUENCER}"
    assert event.params == {
        "bucket": "landing",
        "key": "crm/new file ü.csv",
        "size": 1024,
        "etag": ETAG,
    }
    # the payload is the record as sent, plus the decoded key and the other params
    assert event.payload["s3"] == record["s3"]
    assert event.payload["eventName"] == "ObjectCreated:Put"
    assert event.payload["key"] == "crm/new file ü.csv"
    assert event.logical_date == datetime(2024, 5, 2, 10, 15, 30, 123000, UTC).timestamp()


def test_ids_use_version_then_etag_plus_sequencer() -> None:
    assert object_event_id("b", "k", etag="e") == "s3:b/k@e"
    assert object_event_id("b", "k", etag="e", version_id="v") == "s3:b/k@v"
    assert object_event_id("b", "k", etag="e", version_id="null") == "s3:b/k@e"
    assert object_event_id("b", "k", etag="e", sequencer="0A") == "s3:b/k@e#0A"
    assert object_event_id("b", "k", etag="e", version_id="v", sequencer="0A") == "s3:b/k@v#0A"


def test_redelivery_keeps_the_id_and_a_reupload_gets_a_new_one() -> None:
    first = notification(aws_record("crm/a.csv"))
    (event,) = parse(first)
    (again,) = parse(copy.deepcopy(first))
    assert again.event_id == event.event_id == f"s3:landing/crm/a.csv@{ETAG}#{SEQUENCER}"
    (reupload,) = parse(
        notification(aws_record("crm/a.csv", etag="0cc175b9c0f1b6a8", sequencer="0055AED6DCD9FFFF"))
    )
    assert reupload.event_id != event.event_id
    # moto sends no sequencer: the eTag alone tells uploads apart
    (moto_event,) = parse(notification(aws_record("crm%2Fa.csv", sequencer=None)))
    assert moto_event.event_id == f"s3:landing/crm/a.csv@{ETAG}"


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        # AWS: form encoding, "/" kept
        ("crm/new+file+%C3%BC.csv", "crm/new file ü.csv"),
        ("crm/a%2Bb%3Dc%26d.csv", "crm/a+b=c&d.csv"),
        ("crm/2024-05-02+10%3A15%3A30.log", "crm/2024-05-02 10:15:30.log"),
        # moto: quote_plus including "/"
        ("crm%2Fnew+file+%C3%BC.csv", "crm/new file ü.csv"),
        ("crm%2Fa%2Bb%3Dc%26d.csv", "crm/a+b=c&d.csv"),
        ("%E6%97%A5%E6%9C%AC%2F%E3%83%87%E3%83%BC%E3%82%BF.csv", "日本/データ.csv"),
    ],
)
def test_keys_are_url_decoded(sent: str, key: str) -> None:
    (event,) = parse(notification(aws_record(sent)))
    assert event.params is not None
    assert event.params["key"] == key
    assert event.event_id.startswith(f"s3:landing/{key}@")


def test_test_event_and_other_event_names_give_nothing() -> None:
    assert parse(orjson.dumps(TEST_EVENT)) == []
    assert parse(sns_envelope(TEST_EVENT)) == []
    removed = aws_record("crm/a.csv", event_name="ObjectRemoved:Delete")
    restored = aws_record("crm/a.csv", event_name="ObjectRestore:Completed")
    assert parse(notification(removed, restored)) == []
    assert parse({"Records": []}) == []


def test_every_created_flavour_counts() -> None:
    names = ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy"]
    records = [aws_record(f"crm/{i}.csv", event_name=n) for i, n in enumerate(names)]
    records.append(aws_record("crm/minio.csv", event_name="s3:ObjectCreated:Put"))  # MinIO/Ceph
    assert [e.params["key"] for e in parse(notification(*records)) if e.params] == [
        "crm/0.csv",
        "crm/1.csv",
        "crm/2.csv",
        "crm/minio.csv",
    ]


def test_filters_apply_to_decoded_keys() -> None:
    body = notification(
        aws_record("crm%2Fnew+file.csv", sequencer=None),
        aws_record("crm/new+file.json"),
        aws_record("other%2Fnew+file.csv"),
        aws_record("crm/new+file.csv", bucket="elsewhere"),
    )
    wanted = KeyFilter(bucket="landing", prefix="crm/new ", suffix=".csv")
    assert [e.event_id for e in parse(body, only=[wanted])] == [
        f"s3:landing/crm/new file.csv@{ETAG}"
    ]
    json_too = KeyFilter(bucket="landing", prefix="crm/", suffix=".json")
    assert len(parse(body, only=[wanted, json_too])) == 2  # any filter
    assert len(parse(body, only=[KeyFilter(prefix="crm/")])) == 3  # any bucket
    assert len(parse(body)) == 4  # no filter
    assert parse(body, only=[]) == []


def test_bytes_str_and_dict_bodies_agree() -> None:
    body = notification(aws_record("crm/a.csv"), aws_record("crm/b.csv", etag="beef"))
    as_bytes, as_str, as_dict = parse(body), parse(body.decode()), parse(orjson.loads(body))
    assert as_bytes == as_str == as_dict
    assert len(as_bytes) == 2


def test_sns_wrapped_notification() -> None:
    body = orjson.dumps(sns_envelope({"Records": [aws_record("crm/new+file+%C3%BC.csv")]}))
    (event,) = parse(body)
    assert event.event_id == f"s3:landing/crm/new file ü.csv@{ETAG}#{SEQUENCER}"


def test_eventbridge_event() -> None:
    (event,) = parse(eventbridge("crm/new file ü.csv"))  # EventBridge keys are not encoded
    assert event.event_id == f"s3:landing/crm/new file ü.csv@{VERSION}#{SEQUENCER}"
    assert event.params == {
        "bucket": "landing",
        "key": "crm/new file ü.csv",
        "size": 5,
        "etag": ETAG,
    }
    assert "source" not in event.payload  # would shadow ctx.event["source"]
    assert event.payload["detail"]["reason"] == "PutObject"
    assert parse(eventbridge("crm/a.csv", detail_type="Object Deleted")) == []
    assert parse(eventbridge("other/a.csv"), only=[KeyFilter(prefix="crm/")]) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        "",
        b"[1, 2]",
        b"42",
        b'{"hello": "world"}',
        b'{"Records": {"not": "a list"}}',
        orjson.dumps({"Type": "Notification", "Message": "{broken"}),
    ],
)
def test_malformed_bodies_give_one_dead_event(body: bytes | str) -> None:
    (event,) = parse(body)
    assert event.event_id == "sqs:msg-1"
    assert event.source == "s3"
    assert event.error
    assert event.params is None
    assert event.raw == (body.encode() if isinstance(body, str) else body)


def test_a_bad_record_is_dead_and_the_others_still_run() -> None:
    broken = aws_record("crm/b.csv")
    del broken["s3"]["object"]["key"]
    bad_size = aws_record("crm/c.csv", size=0)
    bad_size["s3"]["object"]["size"] = "object-size in bytes"
    good, dead, dead_too = parse(notification(aws_record("crm/a.csv"), broken, bad_size))
    assert good.error is None
    assert (dead.event_id, dead_too.event_id) == ("sqs:msg-1#1", "sqs:msg-1#2")
    assert dead.error is not None and "KeyError" in dead.error
    assert dead_too.error is not None and "ValueError" in dead_too.error


# ------------------------------------------------------------------------------ listing and cursor

T0 = datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC)


def obj(key: str, second: float, etag: str = "e") -> ListedObject:
    return ListedObject(key=key, size=1, etag=etag, last_modified=T0 + timedelta(seconds=second))


def test_listed_object_from_botocore_entry() -> None:
    entry = {
        "Key": "crm/new file ü.csv",
        "LastModified": T0,
        "ETag": f'"{ETAG}"',
        "Size": 12,
        "StorageClass": "STANDARD",
    }
    listed = listed_object(entry)
    assert listed == ListedObject("crm/new file ü.csv", 12, ETAG, T0)
    event = event_from_listing("landing", listed)
    assert event.event_id == f"s3:landing/crm/new file ü.csv@{ETAG}"
    assert event.params == {
        "bucket": "landing",
        "key": "crm/new file ü.csv",
        "size": 12,
        "etag": ETAG,
    }
    assert event.logical_date == T0.timestamp()
    naive = listed_object({**entry, "LastModified": "2024-05-02T10:00:00"})
    assert naive.last_modified == T0


def test_cursor_remembers_the_keys_of_its_last_second() -> None:
    cursor = PollCursor(lookback=0)
    first = cursor.new_objects([obj("b", 1), obj("a", 1), obj("z", 0)])
    assert [o.key for o in first] == ["z", "a", "b"]  # oldest first, then by key
    cursor = cursor.advance(first)
    assert cursor.since == T0 + timedelta(seconds=1)
    assert {e[0] for e in cursor.seen} == {"a", "b"}  # only the keys at `since`
    # "c" was written in the same second but listed only now: still new; nothing else is
    listing = [obj("z", 0), obj("a", 1), obj("b", 1), obj("c", 1)]
    assert [o.key for o in cursor.new_objects(listing)] == ["c"]
    # an overwrite gets a new etag and is new again, even within the same second
    assert [o.key for o in cursor.new_objects([obj("a", 1, etag="f")])] == ["a"]
    assert [o.key for o in cursor.new_objects([obj("z", 2)])] == ["z"]


def test_cursor_survives_json() -> None:
    cursor = PollCursor(lookback=30).advance([obj("crm/ü x.csv", 1), obj("crm/b", 5)])
    stored = orjson.loads(orjson.dumps(cursor.to_json()))
    assert PollCursor.from_json(stored, lookback=30) == cursor
    assert PollCursor().to_json() == {"since": None, "seen": []}


def test_lookback_catches_objects_listed_late_with_an_old_last_modified() -> None:
    cursor = PollCursor(lookback=60).advance([obj("a", 100)])
    slow_upload = obj("big", 50)  # a multipart upload begun 50 s before "a", listed after it
    assert cursor.new_objects([obj("a", 100), slow_upload]) == [slow_upload]
    too_old = obj("ancient", 30)
    assert cursor.new_objects([too_old]) == []  # older than since - lookback: never emitted
    assert PollCursor(lookback=0).advance([obj("a", 100)]).new_objects([slow_upload]) == []
    # entries older than the window are dropped from the cursor
    later = cursor.advance([obj("b", 200)])
    assert {e[0] for e in later.seen} == {"b"}


def test_advance_in_chunks_equals_advance_at_once() -> None:
    objects = [obj(f"k{i}", i // 3) for i in range(10)]
    for lookback in (0, 1, 5):
        cursor = PollCursor(lookback=lookback)
        stepwise = cursor
        for chunk in (objects[:4], objects[4:5], objects[5:]):
            stepwise = stepwise.advance(chunk)
        assert stepwise == cursor.advance(objects)


@settings(max_examples=200, deadline=None)
@given(
    uploads=st.lists(
        st.tuples(
            st.integers(0, 12),  # poll before which the object becomes visible
            st.integers(0, 3),  # how many seconds before that poll its LastModified lies
            st.sampled_from("abcdef"),  # key (overwrites happen)
        ),
        max_size=40,
    ),
    lookback=st.integers(0, 3),
    chunk=st.integers(1, 4),
    restarts=st.sets(st.integers(0, 12)),
)
def test_polling_emits_every_listed_object_once(
    uploads: list[tuple[int, int, str]], lookback: int, chunk: int, restarts: set[int]
) -> None:
    """Model of S3 polling: poll ``p`` happens at second ``p``; an object first listed at poll
    ``p`` has LastModified within ``lookback`` seconds before the previous poll (the documented
    assumption). Every (key, etag) current at some poll is emitted exactly once, whatever the
    chunking and restarts (cursor stored as JSON and read back)."""
    uploads = [(p, min(age, lookback + 1), k) for p, age, k in uploads]
    bucket: dict[str, ListedObject] = {}
    listed: set[tuple[str, str]] = set()
    emitted: list[tuple[str, str]] = []
    cursor = PollCursor(lookback=lookback)
    for poll in range(13):
        for n, (p, age, key) in enumerate(uploads):
            if p == poll:
                previous = bucket.get(key)
                modified = max(poll - age, previous.last_modified.second if previous else 0)
                bucket[key] = obj(key, modified, etag=f"e{n}")
        listed |= {(o.key, o.etag) for o in bucket.values()}
        fresh = cursor.new_objects(bucket.values())
        for start in range(0, len(fresh), chunk):
            part = fresh[start : start + chunk]
            emitted.extend((o.key, o.etag) for o in part)
            cursor = cursor.advance(part)
        if poll in restarts:
            cursor = PollCursor.from_json(
                orjson.loads(orjson.dumps(cursor.to_json())), lookback=lookback
            )
    assert sorted(emitted) == sorted(listed)


# ------------------------------------------------------------------------------ the trigger


def test_modes_and_subscriptions() -> None:
    sqs = S3Events(
        bucket="landing", prefix="crm/", queue_url="http://q/1", endpoint_url="http://s3"
    )
    assert (sqs.mode, sqs.subscription) == ("sqs", "s3-sqs:http://q/1")
    kafka = S3Events(bucket="landing", kafka_topic="s3-events", bootstrap_servers="k:9092")
    assert (kafka.mode, kafka.subscription) == ("kafka", "s3-kafka:k:9092:podium:s3-events")
    poll = S3Events(bucket="landing", prefix="crm/", suffix=".csv", endpoint_url="http://s3")
    assert (poll.mode, poll.subscription) == ("poll", "s3-poll:http://s3:landing:crm/:.csv")
    assert S3Events(bucket="landing").subscription == "s3-poll:aws:landing::"
    assert poll.matches({"bucket": "landing", "key": "crm/a.csv"})
    assert not poll.matches({"bucket": "landing", "key": "crm/a.json"})
    assert not poll.matches({"value": 1})
    assert sqs.describe() == "s3://landing/crm/ via SQS http://q/1"
    assert kafka.describe() == "s3://landing/ via Kafka topic s3-events"
    assert poll.describe() == "s3://landing/crm/*.csv polled every 30s"
    secret = S3Events(bucket="landing", client_options={"aws_secret_access_key": "hunter2"})
    assert "hunter2" not in repr(secret)


def test_kafka_messages_use_the_same_parser() -> None:
    trigger = S3Events(bucket="landing", prefix="crm/", kafka_topic="s3-events")
    body = notification(aws_record("crm/a.csv"), aws_record("other/b.csv"))
    (event,) = trigger.events_from_message(body, source_id="kafka:s3-events:0:7")
    assert event.event_id == f"s3:landing/crm/a.csv@{ETAG}#{SEQUENCER}"
    (dead,) = trigger.events_from_message(b"garbage", source_id="kafka:s3-events:0:8")
    assert (dead.event_id, dead.error is not None) == ("kafka:s3-events:0:8", True)
    assert trigger.events_from_message(orjson.dumps(TEST_EVENT), source_id="x") == []
    with pytest.raises(TriggerError, match="Kafka sensor"):
        source_for(trigger)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue_url": "q", "kafka_topic": "t"}, "not both"),
        ({"bootstrap_servers": "k:9092"}, "need kafka_topic"),
        ({"visibility_timeout": 30}, "SQS"),
        ({"queue_url": "q", "visibility_timeout": 0}, "visibility_timeout"),
        ({"queue_url": "q", "start": "existing"}, "polling only"),
        ({"start": "oldest"}, "start must be"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"lookback": -1}, "lookback"),
        ({"queue_url": "q", "wait_time": 21}, "wait_time"),
    ],
)
def test_bad_combinations_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        S3Events(bucket="landing", **kwargs)
    with pytest.raises(TriggerError, match="bucket"):
        S3Events(bucket="")
