"""S3 object-created events as Podium events: parsing notifications and planning bucket polls.

Pure: no I/O, no clock. ``sensors.s3`` wraps these functions in the SQS and polling sources, and the
Kafka sensor reuses :func:`events_from_notification` for S3 records delivered on a topic.

**Notification bodies** (:func:`events_from_notification`) come in the shapes S3 produces:

- an S3 event notification, ``{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket":
  {"name": ...}, "object": {"key", "size", "eTag", "versionId"?, "sequencer"?}}}, ...]}``, as S3
  sends it to SQS, SNS, Lambda (or MinIO/Ceph to Kafka, with ``"s3:ObjectCreated:Put"`` names);
- the same wrapped in an SNS envelope (``{"Type": "Notification", "Message": "<json>"}``, SNS to SQS
  without raw message delivery);
- an EventBridge event (``{"detail-type": "Object Created", "source": "aws.s3", "detail": {...}}``);
- the ``s3:TestEvent`` S3 sends when a notification configuration is saved: it gives no event.

Only ``ObjectCreated:*`` records become events; other event names and other buckets/prefixes/suffixes
give none. Notification keys are URL-encoded form style (``"red flower.jpg"`` arrives as
``red+flower.jpg``; moto also turns ``/`` into ``%2F``): they are decoded with ``unquote_plus``
before filtering. EventBridge keys are taken as they are (EventBridge does not encode them). A body
that is not JSON, or not one of these shapes, becomes one event with ``error`` set, so the engine
records it dead and the carrying message is acknowledged instead of redelivered forever.

**Event identity.** ``s3:{bucket}/{key}@{versionId or eTag}``, plus ``#{sequencer}`` when the record
has one (AWS always sends it; moto does not). A redelivered notification carries the same record, so
it gets the same id and the engine deduplicates it; a re-upload has a new sequencer (and a new
version or, usually, a new eTag), so it gets a new id. Polling has no sequencer and uses
``s3:{bucket}/{key}@{eTag}``: re-uploading identical bytes to an unversioned bucket is seen as the
same object.

**Poll cursor** (:class:`PollCursor`). S3 cannot list "what changed since": a poll lists the whole
prefix and keeps the objects the cursor has not seen. The cursor is ``since``, the greatest
LastModified emitted so far, and ``seen``, every emitted ``(key, eTag)`` whose LastModified is at
least ``since - lookback``. An object is new when its LastModified is after ``since``, or at least
``since - lookback`` and its ``(key, eTag)`` is not in ``seen``. New objects are emitted oldest first
and the cursor advances in the same transaction as their runs, so across restarts nothing is emitted
twice and, under the assumption below, nothing is skipped.

*Assumption:* an object becomes visible in a listing with a LastModified no older than
``since - lookback`` as it was at the poll before it appeared. S3 LastModified has one-second
resolution, so several objects share a LastModified and some of them may appear only after a poll
has already advanced ``since`` to it; ``seen`` is why they are still emitted (with ``lookback=0``,
``seen`` is exactly "the keys at ``since``"). LastModified is when S3 *began* the write (a multipart
upload's initiation), so an object that takes minutes to upload shows up in listings with a
LastModified minutes old: ``lookback`` must exceed the longest upload, or such objects are missed.
The cursor keeps one entry per object written in the last ``lookback`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import orjson

from engine.errors import describe_exception

from .base import Event

__all__ = [
    "S3_SOURCE",
    "KeyFilter",
    "ListedObject",
    "PollCursor",
    "event_from_listing",
    "events_from_notification",
    "listed_object",
    "object_event_id",
]

#: ``Event.source`` of every S3 event (``ctx.event["source"]`` in tasks).
S3_SOURCE = "s3"

_CREATED = "ObjectCreated:"
_NO_VERSION = ("", "null")  # unversioned objects carry no versionId; suspended versioning, "null"


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which objects a trigger wants: a bucket (None: any) and a key prefix and suffix."""

    bucket: str | None = None
    prefix: str = ""
    suffix: str = ""

    def matches(self, bucket: str, key: str) -> bool:
        """True when the (decoded) ``key`` in ``bucket`` passes this filter."""
        return (
            (self.bucket is None or bucket == self.bucket)
            and key.startswith(self.prefix)
            and key.endswith(self.suffix)
        )


def object_event_id(
    bucket: str,
    key: str,
    *,
    etag: str | None,
    version_id: str | None = None,
    sequencer: str | None = None,
) -> str:
    """``s3:{bucket}/{key}@{version_id or etag}``, plus ``#{sequencer}`` when there is one."""
    version = version_id if version_id not in (None, *_NO_VERSION) else None
    ident = f"s3:{bucket}/{key}@{version or etag or ''}"
    return f"{ident}#{sequencer}" if sequencer else ident


# --------------------------------------------------------------------------------------------------
# notifications


def events_from_notification(
    body: bytes | str | Mapping[str, Any],
    *,
    source_id: str,
    only: Sequence[KeyFilter] | None = None,
) -> list[Event]:
    """The object-created events in one notification message; never raises.

    ``source_id`` is the carrying message's own stable identity (``sqs:{message id}``,
    ``kafka:{topic}:{partition}:{offset}``): it names the dead event made from a body that cannot be
    parsed. ``only`` keeps the records matching any of the filters (None: every record).
    """
    raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else None
    if not isinstance(body, Mapping):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [_bad(source_id, f"not JSON: {exc}", raw)]
    try:
        return _parse(body, source_id=source_id, only=only, raw=raw, depth=0)
    except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as exc:
        return [
            _bad(source_id, f"not an S3 event notification: {describe_exception(exc)}", raw, body)
        ]


def _parse(
    body: Any,
    *,
    source_id: str,
    only: Sequence[KeyFilter] | None,
    raw: bytes | None,
    depth: int,
) -> list[Event]:
    if not isinstance(body, Mapping):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    if "Records" in body:
        records = body["Records"]
        if not isinstance(records, list):
            raise TypeError("'Records' is not a list")
        events = []
        for index, record in enumerate(records):
            try:
                event = _from_record(record, only)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                event = _bad(
                    f"{source_id}#{index}", f"bad S3 record: {describe_exception(exc)}", raw, record
                )
            if event is not None:
                events.append(event)
        return events
    if body.get("Event") == "s3:TestEvent":
        return []
    if body.get("Type") == "Notification" and "Message" in body and depth == 0:
        message = body["Message"]
        inner = orjson.loads(message) if isinstance(message, str | bytes) else message
        return _parse(inner, source_id=source_id, only=only, raw=raw, depth=1)
    if body.get("source") == "aws.s3" and "detail-type" in body:
        event = _from_eventbridge(body, only)
        return [] if event is None else [event]
    raise ValueError(f"unrecognised message with keys {sorted(body)[:8]}")


def _from_record(record: Any, only: Sequence[KeyFilter] | None) -> Event | None:
    if not isinstance(record, Mapping):
        raise TypeError(f"record is a {type(record).__name__}, not an object")
    name = str(record.get("eventName", ""))
    if not name.removeprefix("s3:").startswith(_CREATED):
        return None
    s3 = record["s3"]
    obj = s3["object"]
    return _object_event(
        bucket=str(s3["bucket"]["name"]),
        key=unquote_plus(str(obj["key"])),
        obj=obj,
        etag_field="eTag",
        version_field="versionId",
        payload=record,
        when=record.get("eventTime"),
        only=only,
    )


def _from_eventbridge(event: Mapping[str, Any], only: Sequence[KeyFilter] | None) -> Event | None:
    if event["detail-type"] != "Object Created":
        return None
    detail = event["detail"]
    # "source" would shadow the event's own source in ctx.event; the rest is kept as sent.
    return _object_event(
        bucket=str(detail["bucket"]["name"]),
        key=str(detail["object"]["key"]),
        obj=detail["object"],
        etag_field="etag",
        version_field="version-id",
        payload={k: v for k, v in event.items() if k != "source"},
        when=event.get("time"),
        only=only,
    )


def _object_event(
    *,
    bucket: str,
    key: str,
    obj: Mapping[str, Any],
    etag_field: str,
    version_field: str,
    payload: Mapping[str, Any],
    when: Any,
    only: Sequence[KeyFilter] | None,
) -> Event | None:
    """The event of one created object, whatever notification format carried it."""
    if only is not None and not any(f.matches(bucket, key) for f in only):
        return None
    etag = _etag(obj.get(etag_field))
    event_id = object_event_id(
        bucket,
        key,
        etag=etag,
        version_id=_str_or_none(obj.get(version_field)),
        sequencer=_str_or_none(obj.get("sequencer")),
    )
    params = {"bucket": bucket, "key": key, "size": _int_or_none(obj.get("size")), "etag": etag}
    return Event(
        source=S3_SOURCE,
        event_id=event_id,
        payload={**payload, **params},
        params=params,
        logical_date=_epoch(when),
    )


def _bad(event_id: str, error: str, raw: bytes | None, body: Any = None) -> Event:
    if raw is None and body is not None:
        raw = orjson.dumps(body, default=repr)
    text = raw.decode("utf-8", "replace") if raw is not None else None
    return Event(source=S3_SOURCE, event_id=event_id, payload={"body": text}, error=error, raw=raw)


# --------------------------------------------------------------------------------------------------
# polling


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One entry of a ListObjectsV2 page."""

    key: str
    size: int
    etag: str
    last_modified: datetime  # timezone-aware


def listed_object(entry: Mapping[str, Any]) -> ListedObject:
    """A ListObjectsV2 ``Contents`` entry (as botocore returns it) as a :class:`ListedObject`."""
    modified = entry["LastModified"]
    if isinstance(modified, str):
        modified = datetime.fromisoformat(modified)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return ListedObject(
        key=str(entry["Key"]),
        size=int(entry.get("Size", 0)),
        etag=_etag(entry.get("ETag")) or "",
        last_modified=modified.astimezone(UTC),
    )


def event_from_listing(bucket: str, obj: ListedObject) -> Event:
    """The event of a listed object: id ``s3:{bucket}/{key}@{etag}``, run params as notifications."""
    params = {"bucket": bucket, "key": obj.key, "size": obj.size, "etag": obj.etag}
    return Event(
        source=S3_SOURCE,
        event_id=object_event_id(bucket, obj.key, etag=obj.etag),
        payload={
            "eventName": "ObjectCreated:Listed",
            "last_modified": obj.last_modified.isoformat(),
            **params,
        },
        params=params,
        logical_date=obj.last_modified.timestamp(),
    )


@dataclass(frozen=True, slots=True)
class PollCursor:
    """Where a bucket poll resumes; see the module docstring. JSON-able via ``to_json``."""

    since: datetime | None = None
    seen: frozenset[tuple[str, str, datetime]] = frozenset()  # (key, etag, last modified)
    lookback: float = 0.0

    def is_new(self, obj: ListedObject) -> bool:
        """True when ``obj`` has not been emitted (and is not older than the cursor looks back)."""
        if self.since is None or obj.last_modified > self.since:
            return True
        if obj.last_modified < self.since - timedelta(seconds=self.lookback):
            return False
        return (obj.key, obj.etag, obj.last_modified) not in self.seen

    def new_objects(self, listing: Iterable[ListedObject]) -> list[ListedObject]:
        """The objects of ``listing`` to emit, oldest first (then by key)."""
        return sorted(
            (o for o in listing if self.is_new(o)), key=lambda o: (o.last_modified, o.key)
        )

    def advance(self, emitted: Iterable[ListedObject]) -> PollCursor:
        """The cursor once ``emitted`` (objects ``is_new`` accepted, all of them older than or as
        old as every new object left behind) are stored. ``advance(a).advance(b)`` equals
        ``advance(a + b)``."""
        entries = set(self.seen)
        since = self.since
        for obj in emitted:
            entries.add((obj.key, obj.etag, obj.last_modified))
            if since is None or obj.last_modified > since:
                since = obj.last_modified
        if since is None:
            return self
        floor = since - timedelta(seconds=self.lookback)
        kept = frozenset(e for e in entries if e[2] >= floor)
        return PollCursor(since=since, seen=kept, lookback=self.lookback)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "seen": sorted([key, etag, modified.isoformat()] for key, etag, modified in self.seen),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], *, lookback: float) -> PollCursor:
        """Read a stored cursor; ``lookback`` is the trigger's current setting."""
        since = value.get("since")
        seen = frozenset(
            (str(key), str(etag), datetime.fromisoformat(modified))
            for key, etag, modified in value.get("seen", ())
        )
        return cls(
            since=None if since is None else datetime.fromisoformat(since),
            seen=seen,
            lookback=lookback,
        )


# --------------------------------------------------------------------------------------------------
# helpers


def _etag(value: Any) -> str | None:
    """An ETag without the quotes ListObjectsV2 puts around it (notifications send none)."""
    if value is None:
        return None
    return str(value).strip('"')


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    return int(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
