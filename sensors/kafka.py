"""Kafka topic trigger: one run per message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from .base import EventFilter, ParamsMapper


@dataclass(frozen=True)
class KafkaTopic:
    """Start one run per message on ``topic``.

    A JSON-object value becomes the run's params over the DAG's defaults; any other value becomes
    ``{"value": ...}``. The run key is ``kafka:{topic}:{partition}:{offset}``; the consumer commits an
    offset only after the run for that message is stored.
    """

    topic: str
    _: KW_ONLY
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "podium"
    value_format: Literal["json", "raw"] = "json"
    filter: EventFilter | None = None
    params: ParamsMapper | None = None
    dead_letter_topic: str | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict)
