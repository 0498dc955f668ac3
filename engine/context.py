"""The ``Context`` a task receives when it declares a ``ctx`` parameter."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import anyio.from_thread

TASK_LOGGER = logging.getLogger("podium.task")


class Context:
    """Facts about the running try of a task, and its durable checkpoint.

    ``checkpoint(value)`` returns once the value is committed to the state store; the next try of the
    same task instance (after a failure or an engine crash) reads it back as ``last_checkpoint``.
    Sync tasks, which run in worker threads, call ``checkpoint_sync(value)`` instead.
    """

    __slots__ = (
        "_save_checkpoint",
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

    def __repr__(self) -> str:
        return f"<Context {self.dag_id}/{self.run_id}/{self.task_id} try {self.try_number}>"
