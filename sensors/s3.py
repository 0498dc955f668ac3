"""S3 object-created triggers: notifications via SQS (or Kafka), or polling a bucket."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from .base import EventFilter, ParamsMapper


@dataclass(frozen=True)
class S3Events:
    """Start one run per object created under ``bucket``/``prefix``.

    Events come from S3 event notifications delivered to the SQS queue ``queue_url``. Run params are
    ``{"bucket", "key", "size", "etag"}``.
    """

    bucket: str
    _: KW_ONLY
    prefix: str = ""
    suffix: str = ""
    queue_url: str | None = None
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
