"""The ``RequestPoller``: work that other processes leave in the state file for the serving engine.

``podium trigger`` inserts queued runs, and ``podium pause/rerun/backfill ...`` insert rows in the
``requests`` table. The poller adopts those runs into the ``RunBook`` and performs the requests
through ``OPERATIONS``, an explicit table from request name to ``Operations`` method; each request is
marked ``running`` (committed) before it starts, so a crash never performs it twice, and its outcome
goes back into its row for the CLI that asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio

from . import serialization
from .backfill import BackfillResult
from .errors import PodiumError, describe_exception
from .models import Run
from .operations import Operations
from .recorder import Recorder
from .runbook import RunBook
from .store import Store
from .store import queries as q

Operation = Callable[..., Awaitable[Any]]

OPERATIONS: dict[str, Callable[[Operations], Operation]] = {
    "pause": lambda ops: ops.pause_dag,
    "unpause": lambda ops: ops.unpause_dag,
    "rerun": lambda ops: ops.rerun,
    "resume": lambda ops: ops.resume,
    "cancel": lambda ops: ops.cancel,
    "cancel_task": lambda ops: ops.cancel_task,
    "backfill": lambda ops: ops.backfill,
}
"""The operations another process may ask for, by the name stored in ``requests.operation``."""


async def perform(
    ops: Operations, operation: str, args: dict[str, Any], *, actor: str, **extra: Any
) -> Any:
    """Perform a named operation with its stored arguments; returns a JSON-ready description."""
    try:
        method = OPERATIONS[operation](ops)
    except KeyError:
        raise PodiumError(
            f"unknown operation {operation!r} (known: {', '.join(sorted(OPERATIONS))})"
        ) from None
    return describe_result(await method(**args, actor=actor, **extra))


def describe_result(result: Any) -> Any:
    """An operation's result as JSON-ready data (stored for the CLI that asked for it)."""
    if isinstance(result, Run):
        return {"run_id": result.run_id, "state": result.state.value}
    if isinstance(result, BackfillResult):
        return {
            "dag_id": result.dag_id,
            "slots": len(result.slots),
            "created": len(result.created),
            "rerun": len(result.rerun),
            "skipped": len(result.skipped),
            "failed": result.failed,
        }
    return result


class RequestPoller:
    def __init__(
        self,
        *,
        book: RunBook,
        ops: Operations,
        store: Store,
        recorder: Recorder,
        interval: float,
        spawn: Callable[..., None],
    ) -> None:
        self._book = book
        self._ops = ops
        self._store = store
        self._recorder = recorder
        self._interval = interval
        self._spawn = spawn
        self.last_seq = 0
        self.stopping = False

    async def prepare(self) -> None:
        """Skip runs already in the file (restart recovery adopts those); fail requests that were
        running when the previous engine stopped."""
        self.last_seq = await self._store.max_seq()
        self._recorder.execute(q.ABANDON_REQUESTS, ())

    async def serve(self) -> NoReturn:
        while True:
            await anyio.sleep(self._interval)
            if self.stopping:
                await anyio.sleep_forever()
            await self.poll_once()

    async def poll_once(self) -> None:
        for row in await self._store.queued_run_rows_after(self.last_seq):
            self.last_seq = max(self.last_seq, row.seq)
            await self._book.adopt(row, recovering=False)
        for request in await self._store.pending_requests():
            self._recorder.execute(q.FINISH_REQUEST, ("running", None, None, request.id))
            await self._recorder.flush()  # marked before it runs: a crash never runs it twice
            self._spawn(self._execute, request.id, request.actor, request.operation, request.args)

    async def _execute(self, request_id: int, actor: str, operation: str, args: bytes) -> None:
        outcome: tuple[str, bytes | None, str | None]
        try:
            described = await perform(self._ops, operation, serialization.loads(args), actor=actor)
            outcome = ("done", serialization.dumps_for_display(described), None)
        except (PodiumError, KeyError, TypeError) as exc:
            outcome = ("failed", None, describe_exception(exc))
        self._recorder.execute(q.FINISH_REQUEST, (*outcome, request_id))
        await self._recorder.flush()
