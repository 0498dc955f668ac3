"""Podium: an asyncio, event-driven data orchestration engine with durable SQLite state.

The public API: define pipelines with ``@task`` and ``@dag``, run them with ``Engine``.
"""

from .assets import Asset
from .clock import Clock, ManualClock, SystemClock
from .context import Context
from .dag import DAG, TaskDef, TaskRef, dag, task
from .engine import Engine
from .errors import (
    DAGError,
    DAGNotFoundError,
    EngineStoppedError,
    ParamError,
    PodiumError,
    ResultError,
    RunNotFoundError,
    Skip,
    SourceError,
    StoreError,
    StoreLockedError,
    TaskTimeoutError,
    TriggerError,
)
from .models import Run, TaskInstance, TaskTry
from .retry import RetryPolicy
from .states import RunState, TaskState, TriggerRule

__all__ = [
    "DAG",
    "Asset",
    "Clock",
    "Context",
    "DAGError",
    "DAGNotFoundError",
    "Engine",
    "EngineStoppedError",
    "ManualClock",
    "ParamError",
    "PodiumError",
    "ResultError",
    "RetryPolicy",
    "Run",
    "RunNotFoundError",
    "RunState",
    "Skip",
    "SourceError",
    "StoreError",
    "StoreLockedError",
    "SystemClock",
    "TaskDef",
    "TaskInstance",
    "TaskRef",
    "TaskState",
    "TaskTimeoutError",
    "TaskTry",
    "TriggerError",
    "TriggerRule",
    "dag",
    "task",
]
