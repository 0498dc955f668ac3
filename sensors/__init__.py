"""Podium's event sources: declare them in ``@dag(triggers=[...])``.

A sensor only produces events and acknowledges them once their runs are stored; it knows nothing
about DAGs. Every trigger implements ``Trigger`` (a timer's slots are its ``Schedule``); a class of
your own that implements it works in ``triggers=[...]`` too.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .assets import OnAssets
from .base import Event, EventBatch, EventSink, EventSource, Schedule, Trigger
from .dag_completion import AfterDag
from .timers import Cron, Every

if TYPE_CHECKING:
    from .kafka import KafkaTopic
    from .s3 import S3Events

# The Kafka and S3 sensors pull in aiokafka and aiobotocore (most of a second of imports): they are
# loaded on first use, so an engine whose DAGs use neither starts without them.
_LAZY = {"KafkaTopic": ".kafka", "S3Events": ".s3"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AfterDag",
    "Cron",
    "Event",
    "EventBatch",
    "EventSink",
    "EventSource",
    "Every",
    "KafkaTopic",
    "OnAssets",
    "S3Events",
    "Schedule",
    "Trigger",
]
