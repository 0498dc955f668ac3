"""The ``Context`` a task receives when it declares a ``ctx`` parameter."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import anyio.from_thread

from . import serialization
from .assets import ReportedAssetEvent, check_uri

TASK_LOGGER = logging.getLogger("podium.task")


class Context:
    """Facts about the running try of a task, and its durable checkpoint.

    ``checkpoint(value)`` returns once the value is committed to the state store; the next try of the
    same task instance (after a failure or an engine crash) reads it back as ``last_checkpoint``.
    Sync tasks, which run in worker threads, call ``checkpoint_sync(value)`` instead.

    ``asset_event(uri, metadata=..., schema=...)`` reports data the task wrote (when the URI is known
    only at run time, e.g. from params); like the task's outlets, it is recorded if and when the try
    succeeds, in the transaction that records the success. ``asset_event_sync`` is its sync twin.
    """

    __slots__ = (
        "_save_checkpoint",
        "asset_events",
        "dag_id",
        "error",
        "event",
        "last_checkpoint",
        "log",
        "logical_date",
        "params",
        "run_id",
        "task_id",
        "try_number",
    )

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        params: Mapping[str, Any],
        try_number: int,
        logical_date: datetime | None,
        event: Mapping[str, Any] | None,
        last_checkpoint: Any,
        save_checkpoint: Callable[[Any], Coroutine[Any, Any, None]],
    ) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.params = params
        self.try_number = try_number
        self.logical_date = logical_date
        self.event = event
        self.last_checkpoint = last_checkpoint
        self._save_checkpoint = save_checkpoint
        self.error: BaseException | None = None
        self.asset_events: list[ReportedAssetEvent] = []  # reported by this try
        self.log = logging.LoggerAdapter(
            TASK_LOGGER,
            {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "try_number": try_number},
        )

    async def checkpoint(self, value: Any) -> None:
        """Persist ``value`` as this task's progress; returns after it is committed."""
        await self._save_checkpoint(value)
        self.last_checkpoint = value

    def checkpoint_sync(self, value: Any) -> None:
        """``checkpoint`` for sync tasks running in a worker thread."""
        anyio.from_thread.run(self._save_checkpoint, value)
        self.last_checkpoint = value

    async def asset_event(
        self,
        uri: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        schema: list[Any] | None = None,
    ) -> None:
        """Report that this try wrote the asset ``uri`` (``metadata`` such as ``{"rows": 1234}``,
        ``schema`` such as ``[{"name": "id", "type": "int"}]``, both JSON-serializable). Recorded
        when the try succeeds; a failed try's reports are dropped."""
        self.asset_event_sync(uri, metadata=metadata, schema=schema)

    def asset_event_sync(
        self,
        uri: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        schema: list[Any] | None = None,
    ) -> None:
        """``asset_event`` for sync tasks (it needs no await: nothing is written before success)."""
        check_uri(uri)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(
                f"asset event metadata must be a mapping, got {type(metadata).__name__}"
            )
        if schema is not None and not isinstance(schema, (list, tuple)):
            raise TypeError(f"asset event schema must be a list, got {type(schema).__name__}")
        serialization.dumps({"metadata": metadata, "schema": schema})  # TypeError now, not later
        self.asset_events.append(
            ReportedAssetEvent(uri, dict(metadata) if metadata else None, schema)
        )

    def __repr__(self) -> str:
        return f"<Context {self.dag_id}/{self.run_id}/{self.task_id} try {self.try_number}>"
