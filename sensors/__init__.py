"""Podium's event sources: declare them in ``@dag(triggers=[...])``.

A sensor only produces events and acknowledges them once their runs are stored; it knows nothing
about DAGs. Every trigger implements ``Trigger`` (a timer's slots are its ``Schedule``); a class of
your own that implements it works in ``triggers=[...]`` too.
"""

from .base import Event, EventBatch, EventSink, EventSource, Schedule, Trigger
from .dag_completion import AfterDag
from .kafka import KafkaTopic
from .s3 import S3Events
from .timers import Cron, Every

__all__ = [
    "AfterDag",
    "Cron",
    "Event",
    "EventBatch",
    "EventSink",
    "EventSource",
    "Every",
    "KafkaTopic",
    "S3Events",
    "Schedule",
    "Trigger",
]
