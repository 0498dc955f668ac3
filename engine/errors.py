"""One exception tree for the whole engine.

Library errors (sqlite3, aiokafka, aiobotocore) are translated into these where they enter, so callers
catch ``PodiumError`` and its subclasses only.
"""

from __future__ import annotations


class PodiumError(Exception):
    """Base of every error Podium raises on purpose."""


class DAGError(PodiumError):
    """A DAG or task definition is invalid (cycle, duplicate id, unknown reference, bad limit)."""


class ParamError(DAGError):
    """Run parameters do not match the DAG's signature (unknown or missing parameter)."""


class DAGNotFoundError(PodiumError):
    """No DAG with this id is registered with the engine."""


class RunNotFoundError(PodiumError):
    """No run with this id exists in the state store."""


class StoreError(PodiumError):
    """The state store failed (disk full, read-only file, corrupt schema)."""


class StoreLockedError(StoreError):
    """Another live engine process owns this state file."""


class ResultError(PodiumError):
    """A task's result cannot be stored: not JSON-serializable or larger than the size cap."""


class TaskTimeoutError(PodiumError):
    """A task ran longer than its ``timeout=``."""


class EngineStoppedError(PodiumError):
    """The engine stopped while the task was running."""


class TriggerError(PodiumError):
    """A trigger (sensor) is misconfigured or its events cannot be turned into runs."""


class SourceError(TriggerError):
    """An event source (Kafka, SQS, S3) failed; the message names the topic, queue or bucket."""


class MetricsError(PodiumError):
    """Podium's metrics cannot be exported on the given registry (another engine exports there)."""


class LineageEventError(PodiumError):
    """An OpenLineage event sent to Podium (``POST /api/v1/lineage``) is not a valid RunEvent."""


class StepError(PodiumError):
    """A built-in step failed: a shell command exited non-zero or timed out, an HTTP call answered
    an unexpected status or could not connect."""


class RunnerError(PodiumError):
    """A runner could not run a try: an argument cannot be sent to a worker process, a worker
    died (the message names the signal or exit code), a runner was not started."""


class WorkerDiedError(RunnerError):
    """The worker process running a try died (a segfault, an OOM kill, ``os._exit``)."""


class VirtualenvError(RunnerError):
    """A task's virtualenv could not be built (the message ends with uv's own), or a task cannot
    run in one (its function is not importable, an argument is not JSON)."""


class Skip(Exception):
    """Raise inside a task to mark it ``skipped``; downstream tasks follow their trigger rules."""


def describe_exception(exc: BaseException) -> str:
    """An exception as people read it in logs, stored errors and messages: ``ValueError: bad input``.

    The type's name alone when the message is empty (or is that name); the message alone when it
    already begins with ``Name:``."""
    name, text = type(exc).__name__, str(exc).strip()
    if not text or text == name:
        return name
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


__all__ = [
    "DAGError",
    "DAGNotFoundError",
    "EngineStoppedError",
    "LineageEventError",
    "MetricsError",
    "ParamError",
    "PodiumError",
    "ResultError",
    "RunNotFoundError",
    "RunnerError",
    "Skip",
    "SourceError",
    "StepError",
    "StoreError",
    "StoreLockedError",
    "TaskTimeoutError",
    "TriggerError",
    "VirtualenvError",
    "WorkerDiedError",
    "describe_exception",
]
