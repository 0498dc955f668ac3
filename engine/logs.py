"""Per-try task logs: what a task writes through ``ctx.log`` or the ``logging`` module is stored in
the state file, attributed by a context variable, so concurrent tasks never mix their lines.

The context variable is set around each try; worker threads of sync tasks inherit it (anyio copies
the context into the thread). Lines go through the batched writer, so they are readable while the
task still runs. Each try keeps at most ``max_bytes`` of log text; past that one marker line says
how much was dropped.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.writer import StoreWriter


@dataclass(slots=True)
class TryLog:
    owner: object
    run_id: str
    task_id: str
    try_number: int
    lines: int = 0
    size: int = 0
    truncated: bool = False
    dropped: int = field(default=0)


current_try: contextvars.ContextVar[TryLog | None] = contextvars.ContextVar(
    "podium_current_try", default=None
)

DEFAULT_MAX_LOG_BYTES = 1024 * 1024


class TaskLogHandler(logging.Handler):
    """Routes records emitted inside a task try to that try's stored log."""

    def __init__(self, writer: StoreWriter, max_bytes: int) -> None:
        super().__init__(level=logging.DEBUG)
        self._writer = writer
        self._max_bytes = max_bytes
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        attempt = current_try.get()
        if attempt is None or attempt.owner is not self:
            return  # not inside a task try of this engine
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        size = len(message.encode("utf-8", "replace"))
        if attempt.truncated:
            attempt.dropped += size
            return
        if attempt.size + size > self._max_bytes:
            attempt.truncated = True
            attempt.dropped += size
            message = f"[log truncated: this try exceeded {self._max_bytes:,} bytes of log]"
        attempt.size += size
        attempt.lines += 1
        self._writer.record_log(
            attempt.run_id,
            attempt.task_id,
            attempt.try_number,
            attempt.lines,
            record.created,
            record.levelname,
            message,
        )


def install(handler: TaskLogHandler) -> None:
    """Attach to the root logger (once per engine) so the ``logging`` module's records are seen."""
    root = logging.getLogger()
    root.addHandler(handler)
    task_logger = logging.getLogger("podium.task")
    if task_logger.level == logging.NOTSET or task_logger.level > logging.INFO:
        task_logger.setLevel(logging.INFO)


def uninstall(handler: TaskLogHandler) -> None:
    logging.getLogger().removeHandler(handler)
