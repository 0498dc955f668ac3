"""Podium: an asyncio, event-driven data orchestration engine with durable SQLite state.

The public API: define pipelines with ``@task`` and ``@dag``, run them with ``Engine``; alerts go to
``SlackWebhook``, ``JSONWebhook`` or ``CallbackNotifier`` (any ``Notifier``), tuned by
``SlownessPolicy`` and ``SLA``. Where tasks run: ``Local`` (default), ``Process`` (a pool of worker
processes), ``Dask`` (a Dask cluster), any ``Runner``. Triggers are in ``sensors``.
"""

from .alerts import Alert, AlertKind
from .assets import Asset
from .clock import Clock, ManualClock, SystemClock
from .context import Context
from .dag import DAG, dag
from .dag_builder import TaskGroup, TaskRef
from .engine import Engine
from .errors import (
    DAGError,
    DAGNotFoundError,
    EngineStoppedError,
    LineageEventError,
    MetricsError,
    ParamError,
    PodiumError,
    ResultError,
    RunnerError,
    RunNotFoundError,
    Skip,
    SourceError,
    StepError,
    StoreError,
    StoreLockedError,
    TaskTimeoutError,
    TriggerError,
    VirtualenvError,
    WorkerDiedError,
)
from .lineage_events import LineageOptions
from .models import Run, TaskInstance, TaskTry
from .notifiers import CallbackNotifier, JSONWebhook, Notifier, SlackWebhook
from .retry import RetryPolicy
from .runners import Dask, Local, Process, Runner, Virtualenv
from .slowness import SLA, SlownessPolicy
from .states import RunState, TaskState, TriggerRule
from .tasks import PartialTask, TaskDef, task
from .templating import Template, TemplateError, TemplateRenderError

__all__ = [
    "DAG",
    "SLA",
    "Alert",
    "AlertKind",
    "Asset",
    "CallbackNotifier",
    "Clock",
    "Context",
    "DAGError",
    "DAGNotFoundError",
    "Dask",
    "Engine",
    "EngineStoppedError",
    "JSONWebhook",
    "LineageEventError",
    "LineageOptions",
    "Local",
    "ManualClock",
    "MetricsError",
    "Notifier",
    "ParamError",
    "PartialTask",
    "PodiumError",
    "Process",
    "ResultError",
    "RetryPolicy",
    "Run",
    "RunNotFoundError",
    "RunState",
    "Runner",
    "RunnerError",
    "Skip",
    "SlackWebhook",
    "SlownessPolicy",
    "SourceError",
    "StepError",
    "StoreError",
    "StoreLockedError",
    "SystemClock",
    "TaskDef",
    "TaskGroup",
    "TaskInstance",
    "TaskRef",
    "TaskState",
    "TaskTimeoutError",
    "TaskTry",
    "Template",
    "TemplateError",
    "TemplateRenderError",
    "TriggerError",
    "TriggerRule",
    "Virtualenv",
    "VirtualenvError",
    "WorkerDiedError",
    "dag",
    "task",
]
