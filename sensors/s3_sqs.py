"""S3 event notifications delivered to an SQS queue: the source of ``S3Events(queue_url=...)``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import anyio
from aiobotocore.session import get_session

from engine.errors import describe_exception

from .aws import AWS_ERRORS, RECONNECT, aws_client, client_kwargs
from .base import Event, EventBatch, EventSink
from .s3_records import (
    KeyFilter,
    events_from_notification,
)

log = logging.getLogger("podium.sensors.s3")

DEFAULT_VISIBILITY = 60


class S3SqsSource:
    """Reads S3 event notifications from an SQS queue.

    Each receive (up to 10 messages, a ``wait_time`` s long poll) becomes one ``EventBatch``. While
    it is being stored the messages' visibility is renewed every ``visibility_timeout / 2`` seconds;
    once stored, every message is deleted, including those that gave no event (test events, other
    prefixes) or a dead one (unparseable). If storing fails nothing is deleted, and SQS redelivers
    the messages after the visibility timeout. No receive is made while the sink is not accepting.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        filters: Sequence[KeyFilter] | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = "us-east-1",
        visibility_timeout: int = DEFAULT_VISIBILITY,
        wait_time: int = 20,
        client_options: Mapping[str, Any] | None = None,
        subscription: str | None = None,
    ) -> None:
        self.queue_url = queue_url
        self.filters = list(filters) if filters is not None else None
        self.visibility_timeout = visibility_timeout
        self.wait_time = wait_time
        self.subscription = subscription or f"s3-sqs:{queue_url}"
        self._client_kwargs = client_kwargs(endpoint_url, region_name, client_options or {})

    async def run(self, sink: EventSink) -> NoReturn:
        session = get_session()
        delays = RECONNECT.delays()
        while True:
            try:
                async with aws_client(session, "sqs", self._client_kwargs) as sqs:
                    while True:
                        await self._receive_once(sqs, sink)
                        delays.reset()
            except AWS_ERRORS as exc:
                delay = next(delays)
                log.warning(
                    "%s: %s; reconnecting in %.1fs",
                    self.subscription,
                    describe_exception(exc),
                    delay,
                )
            await anyio.sleep(delay)

    async def _receive_once(self, sqs: Any, sink: EventSink) -> None:
        while not sink.accepting:
            await sink.wait_accepting()
        response = await sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_time,
            VisibilityTimeout=self.visibility_timeout,
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if not messages:
            return
        events = [
            event
            for message in messages
            for event in events_from_notification(
                message.get("Body", ""),
                source_id=f"sqs:{message['MessageId']}",
                only=self.filters,
            )
        ]
        if events and not await self._store(sqs, sink, messages, events):
            return  # not acknowledged: SQS redelivers them after the visibility timeout
        await self._delete(sqs, messages)

    async def _store(
        self, sqs: Any, sink: EventSink, messages: list[dict[str, Any]], events: list[Event]
    ) -> bool:
        batch = EventBatch(self.subscription, events)
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_invisible, sqs, messages)
            try:
                await sink.publish(batch)
                await batch.stored()
            except Exception as exc:
                failure = exc
            tg.cancel_scope.cancel()
        if isinstance(failure, anyio.ClosedResourceError | anyio.BrokenResourceError):
            raise failure  # the engine's bus is closed: it is stopping
        if failure is not None:
            log.warning(
                "%s: %d event(s) from %d message(s) not stored (%s); leaving them to SQS "
                "redelivery",
                self.subscription,
                len(events),
                len(messages),
                describe_exception(failure),
            )
            return False
        return True

    async def _keep_invisible(self, sqs: Any, messages: list[dict[str, Any]]) -> NoReturn:
        entries = [
            {
                "Id": str(i),
                "ReceiptHandle": m["ReceiptHandle"],
                "VisibilityTimeout": self.visibility_timeout,
            }
            for i, m in enumerate(messages)
        ]
        while True:
            await anyio.sleep(self.visibility_timeout / 2)
            try:
                response = await sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except AWS_ERRORS as exc:
                log.warning("%s: cannot extend visibility: %s", self.subscription, exc)
                continue
            for failed in response.get("Failed", []):
                log.warning("%s: cannot extend visibility: %s", self.subscription, failed)

    async def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        response = await sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        for failed in response.get("Failed", []):
            # Redelivered later and deduplicated by the engine: harmless but worth seeing.
            log.warning("%s: cannot delete message: %s", self.subscription, failed)
