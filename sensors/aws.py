"""What the S3 and SQS sources share of AWS: the errors they outlive by reconnecting, their
reconnect back-off, and a client that is closed even when its task is cancelled."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
from botocore.exceptions import BotoCoreError, ClientError

from engine.backoff import Backoff

#: Errors of the AWS SDK and the network that a source outlives by reconnecting.
AWS_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    ClientError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)
RECONNECT = Backoff(0.5, cap=30.0)
CLOSE_TIMEOUT = 5.0


@asynccontextmanager
async def aws_client(session: Any, service: str, kwargs: Mapping[str, Any]) -> AsyncIterator[Any]:
    """An aiobotocore client that is closed even when the task is cancelled (shielded, bounded)."""
    context = session.create_client(service, **kwargs)
    client = await context.__aenter__()
    try:
        yield client
    finally:
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await context.__aexit__(None, None, None)


def client_kwargs(
    endpoint_url: str | None, region_name: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if endpoint_url is not None:
        kwargs["endpoint_url"] = endpoint_url
    if region_name is not None:
        kwargs["region_name"] = region_name
    kwargs.update(options)
    return kwargs
