"""Polling a bucket for new objects: the source of ``S3Events`` without ``queue_url`` or
``kafka_topic``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, NoReturn

import anyio
from aiobotocore.session import get_session

from engine.errors import describe_exception

from .aws import AWS_ERRORS, RECONNECT, aws_client, client_kwargs
from .base import Event, EventBatch, EventSink
from .s3_records import (
    KeyFilter,
    ListedObject,
    PollCursor,
    event_from_listing,
    listed_object,
)

log = logging.getLogger("podium.sensors.s3")

Start = Literal["new", "existing"]


class S3PollSource:
    """Lists ``bucket``/``prefix`` every ``poll_interval`` seconds and emits the objects not seen.

    The cursor (``sensors.s3_records.PollCursor``) is committed with each batch's runs under the id
    :attr:`subscription` and loaded at start. On the very first start, ``start="new"`` records what
    is already in the bucket without emitting it, ``"existing"`` emits it. New objects are emitted
    oldest first in batches of at most ``max_batch``; a batch that fails to store is re-emitted at
    the next poll (the engine deduplicates what did get stored).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        suffix: str = "",
        endpoint_url: str | None = None,
        region_name: str | None = "us-east-1",
        poll_interval: float = 30.0,
        start: Start = "new",
        lookback: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
        subscription: str | None = None,
        page_size: int = 1000,
        max_batch: int = 500,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.key_filter = KeyFilter(bucket=bucket, prefix=prefix, suffix=suffix)
        self.poll_interval = poll_interval
        self.start = start
        self.lookback = lookback
        self.page_size = page_size
        self.max_batch = max_batch
        self.subscription = subscription or (
            f"s3-poll:{endpoint_url or 'aws'}:{bucket}:{prefix}:{suffix}"
        )
        self._client_kwargs = client_kwargs(endpoint_url, region_name, client_options or {})

    @property
    def cursor_id(self) -> str:
        return self.subscription

    async def run(self, sink: EventSink) -> NoReturn:
        stored = await sink.load_cursor(self.cursor_id)
        cursor = None if stored is None else PollCursor.from_json(stored, lookback=self.lookback)
        session = get_session()
        delays = RECONNECT.delays()
        while True:
            try:
                async with aws_client(session, "s3", self._client_kwargs) as s3:
                    while True:
                        while not sink.accepting:
                            await sink.wait_accepting()
                        cursor = await self._poll(s3, sink, cursor)
                        delays.reset()
                        await anyio.sleep(self.poll_interval)
            except AWS_ERRORS as exc:
                delay = next(delays)
                log.warning(
                    "%s: %s; listing again in %.1fs",
                    self.subscription,
                    describe_exception(exc),
                    delay,
                )
            await anyio.sleep(delay)

    async def _poll(self, s3: Any, sink: EventSink, cursor: PollCursor | None) -> PollCursor | None:
        """One listing; returns the cursor as committed afterwards (None: no baseline yet)."""
        if cursor is None and self.start == "new":
            baseline = PollCursor(lookback=self.lookback)
            async for page in self._pages(s3):
                baseline = baseline.advance(page)
            return baseline if await self._commit(sink, [], baseline) else None
        current = cursor or PollCursor(lookback=self.lookback)
        fresh: list[ListedObject] = []
        async for page in self._pages(s3):
            fresh.extend(o for o in page if current.is_new(o))
        fresh = current.new_objects(fresh)
        for first in range(0, len(fresh), self.max_batch):
            if first:
                while not sink.accepting:
                    await sink.wait_accepting()
            chunk = fresh[first : first + self.max_batch]
            following = current.advance(chunk)
            events = [event_from_listing(self.bucket, o) for o in chunk]
            if not await self._commit(sink, events, following):
                break  # stay at the last committed cursor; the next poll emits the rest again
            current = following
        return current

    async def _pages(self, s3: Any) -> AsyncIterator[list[ListedObject]]:
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": self.page_size}
        )
        async for page in pages:
            objects = (listed_object(entry) for entry in page.get("Contents", []))
            yield [o for o in objects if self.key_filter.matches(self.bucket, o.key)]

    async def _commit(self, sink: EventSink, events: list[Event], cursor: PollCursor) -> bool:
        batch = EventBatch(self.subscription, events, cursor=(self.cursor_id, cursor.to_json()))
        await sink.publish(batch)
        try:
            await batch.stored()
        except Exception as exc:
            log.warning(
                "%s: %d event(s) not stored (%s); the next poll emits them again",
                self.subscription,
                len(events),
                describe_exception(exc),
            )
            return False
        if events:
            log.info("%s: %d new object(s)", self.subscription, len(events))
        return True
