"""``Dask(address=...)``: each try runs on a running Dask cluster (optional extra ``podium[dask]``).

The engine keeps one ``distributed.Client(asynchronous=True)`` per engine and address, on its own
event loop, opened when the engine starts and closed when it stops. A try is submitted as
``run_job`` (``dask_worker.py``) under the key ``podium-{run_id}-{task_id}-{try}``: a try started
again after a crash or a retry is a new try number, so a new key, and a committed success is never
submitted again. Dask's own retries are off; the task's retry policy decides.

- **Results** come back through the Dask future as JSON (the engine stores results as JSON); an
  exception the task raised comes back whole, with the worker's traceback as its cause.
- **Logs**: the worker sends each log line (``logging``, ``ctx.log``, prints) as an event on this
  client's topic, ``podium-logs-<client id>`` (``Worker.log_event`` -> the scheduler ->
  ``Client.subscribe_topic``), tagged with the try's key; the engine writes it into that try's log.
  The reply says how many were sent, and the engine waits (up to ``log_drain`` seconds) for the
  last of them before it records the outcome.
- **Checkpoints**: the worker parks the value and sends a ``checkpoint`` event on the same topic;
  the engine takes the value from that worker (``Client.run``), commits it, and answers the worker
  the same way; the task's ``ctx.checkpoint`` returns then (``dask_checkpoints.py``). If the value
  cannot travel (the worker or the scheduler went away), the try fails.
- **Cancel and timeout**: the future is cancelled. A queued try then never runs. A running one
  cannot be interrupted by Dask: the try's log says so and names the worker; it runs on to its end
  there (its next ``ctx.checkpoint`` raises), and its result (and later log lines) are dropped,
  since nothing waits for its key.
- **A cluster that goes away** fails the tries in flight with a ``RunnerError`` naming the
  scheduler; the next try reconnects (a fresh client), so the task's retry policy carries it over
  the outage. The engine and its other runners go on serving.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import logging
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .. import serialization
from ..errors import RunnerError, describe_exception
from ..logs import TryLog, current_try
from . import wire
from .base import RunnerHost, TryCall
from .children import commit_checkpoint
from .process import _rebuild

log = logging.getLogger("podium.runners.dask")

# a try's worker sends its next checkpoint only once the last is answered: one waits per worker
# that runs the key (Dask may run it again elsewhere if a worker dies)
_CHECKPOINTS_BUFFER = 8


@dataclass(frozen=True, kw_only=True)
class Dask:
    """Run tries on the Dask cluster whose scheduler listens at ``address``
    (``"tcp://10.0.0.5:8786"``).

    ``connect_timeout``: seconds to reach the scheduler (at engine start, and again after it went
    away); ``log_drain``: seconds to wait for a finished try's last log lines. The workers need
    Podium (and the tasks' modules, or the DAG files at the same path) importable. Equal settings
    share one client per engine."""

    address: str
    connect_timeout: float = 10.0
    log_drain: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise RunnerError(f"Dask(address=...) needs a scheduler address, got {self.address!r}")
        if not self.connect_timeout > 0 or not self.log_drain >= 0:
            raise RunnerError("Dask(connect_timeout=..., log_drain=...) need seconds > 0 and >= 0")
        if importlib.util.find_spec("distributed") is None:
            raise RunnerError("Dask(...) needs the distributed package: pip install 'podium[dask]'")

    def open(self, host: RunnerHost) -> DaskSession:
        return DaskSession(self, host)


@dataclass(slots=True)
class _Try:
    """A try waiting on the cluster: where its log lines and checkpoints go, which worker runs it."""

    log: TryLog | None
    checkpoints: MemoryObjectSendStream[dict[str, Any]]
    worker: str | None = None
    received: int = 0
    expected: int | None = None
    drained: anyio.Event = field(default_factory=anyio.Event)


class DaskSession:
    """The open ``Dask`` runner of one engine (an async context manager)."""

    def __init__(self, spec: Dask, host: RunnerHost) -> None:
        self.spec = spec
        self._host = host
        self._client: Any = None  # distributed.Client, connected and subscribed
        self._comm: Any = None  # the client's scheduler stream when it subscribed
        self._topic = ""
        self._tries: dict[str, _Try] = {}
        self._lock = anyio.Lock()
        self._attempts = 0
        self._last_error: RunnerError | None = None
        self._base = contextvars.Context()

    async def __aenter__(self) -> Self:
        # The client's background tasks copy the context they start in: the engine's, never a try's
        self._base = contextvars.copy_context()
        try:
            await self._connect()
        except RunnerError as exc:
            log.warning("%s; tries on it will connect when they start", exc)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._close()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (None while the scheduler cannot be reached)."""
        return self._client

    # -- running a try ------------------------------------------------------------------------------

    async def call(self, call: TryCall) -> Any:
        from .dask_worker import run_job

        job = wire.job_for(call)  # a RunnerError here fails the try before it is submitted
        client = await self._connected()
        key = f"podium-{call.run_id}-{call.task_id}-{call.try_number}"
        checkpoints, requests = anyio.create_memory_object_stream[dict[str, Any]](
            _CHECKPOINTS_BUFFER
        )
        entry = _Try(current_try.get(), checkpoints)
        self._tries[key] = entry
        future: Any = None
        try:
            try:
                future = client.submit(
                    run_job,
                    job,
                    self._topic,
                    key,
                    self._host.max_log_bytes,
                    logging.getLogger().getEffectiveLevel(),
                    key=key,
                    pure=False,
                    retries=0,
                )
                reply = await self._reply(client, future, call, requests)
            except anyio.get_cancelled_exc_class():
                if future is not None:
                    with anyio.CancelScope(shield=True):
                        await self._abandon(client, future, call.task_id, entry)
                raise
            except FutureCancelled as exc:  # the client lost the scheduler
                raise RunnerError(
                    f"task {call.task_id!r}: the Dask scheduler at {self.spec.address} went away "
                    f"while the try was queued or running ({describe_exception(exc)})"
                ) from None
            except RunnerError:  # a checkpoint could not travel
                raise
            except Exception as exc:  # distributed's own failures (a worker killed, closed, ...)
                raise RunnerError(
                    f"task {call.task_id!r}: Dask could not run the try: {describe_exception(exc)}"
                ) from exc
            await self._drain(entry, reply[-1])
        finally:
            self._tries.pop(key, None)
            checkpoints.close()
            requests.close()
            if future is not None:
                future.release()  # a try still running there: its checkpoints are refused now
        if reply[0] == "ok":
            return serialization.loads(reply[1])
        raise _rebuild((*reply[:5], False))

    async def _reply(
        self,
        client: Any,
        future: Any,
        call: TryCall,
        requests: MemoryObjectReceiveStream[dict[str, Any]],
    ) -> tuple[Any, ...]:
        """The future's reply (or what it raised), serving the try's checkpoints meanwhile."""
        outcome: list[tuple[bool, Any]] = []
        settled = anyio.Event()

        async def settle() -> None:
            try:
                outcome.append((True, await future))
            except Exception as exc:
                outcome.append((False, exc))
            settled.set()
            tg.cancel_scope.cancel()  # stops serving checkpoints: the try is over

        async with anyio.create_task_group() as tg:
            tg.start_soon(settle)
            failure = await self._serve_checkpoints(client, call, requests)
            # the worker waits for an answer that will not come: if the scheduler went away, the
            # future says so shortly; else the try fails with this (and its release frees the
            # worker's thread)
            with anyio.move_on_after(self.spec.connect_timeout):
                await settled.wait()
            if not outcome:
                outcome.append((False, failure))
            tg.cancel_scope.cancel()
        ok, value = outcome[0]
        if not ok:
            raise value
        return tuple(value)

    async def _serve_checkpoints(
        self,
        client: Any,
        call: TryCall,
        requests: MemoryObjectReceiveStream[dict[str, Any]],
    ) -> RunnerError:
        """Commit the try's checkpoints as they come; returns only if one could not travel."""
        while True:
            request = await requests.receive()
            try:
                await self._checkpoint(client, call, request)
            except Exception as exc:  # distributed's: the worker or the scheduler is gone
                return RunnerError(
                    f"task {call.task_id!r}: a checkpoint could not travel between the engine "
                    f"and Dask worker {request.get('worker')}: {describe_exception(exc)}"
                )

    async def _checkpoint(self, client: Any, call: TryCall, request: dict[str, Any]) -> None:
        """Take a checkpoint from the worker that sent it, commit it, and answer the worker."""
        from .dask_checkpoints import answer, take

        key, seq, worker = str(request["key"]), int(request["seq"]), str(request["worker"])
        taken = await client.run(take, key, seq, workers=[worker])
        data = taken.get(worker)
        if data is None:
            return  # the try stopped waiting for it there (stopped, or its worker closes)
        error = await commit_checkpoint(call.context, serialization.loads(data))
        await client.run(answer, key, seq, error, workers=[worker])

    async def _abandon(self, client: Any, future: Any, task_id: str, entry: _Try) -> None:
        """The try was cancelled or timed out: cancel its future, and say what that does."""
        with anyio.move_on_after(self.spec.connect_timeout):
            try:
                await client.cancel([future], reason="podium: the try was cancelled or timed out")
            except Exception as exc:
                log.debug("cancelling %s failed: %s", future.key, describe_exception(exc))
        if entry.worker is None:
            log.warning(
                "task %r: stopped before it started on a Dask worker; its Dask future is "
                "cancelled, so it will not run",
                task_id,
            )
        else:
            log.warning(
                "task %r: stopped while it runs on Dask worker %s. Dask cannot interrupt a "
                "running task: it runs on to its end there (or to its next ctx.checkpoint, which "
                "raises), and its result is discarded",
                task_id,
                entry.worker,
            )

    async def _drain(self, entry: _Try, sent: int) -> None:
        """Wait for the try's last log lines (they travel apart from its result)."""
        entry.expected = sent
        if entry.received >= sent:
            return
        with anyio.move_on_after(self.spec.log_drain):
            await entry.drained.wait()
        if entry.received < sent:
            log.warning(
                "%d of the try's log lines from the Dask worker did not arrive",
                sent - entry.received,
            )

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A message from a worker on this client's topic (runs in the client's task)."""
        try:
            self._route(event[1])
        except Exception as exc:  # a malformed message must not stop the client's report loop
            log.debug("dropped a Dask event: %s", describe_exception(exc))

    def _route(self, msg: Any) -> None:
        entry = self._tries.get(str(msg.get("key"))) if isinstance(msg, dict) else None
        if entry is None:
            return  # a try no longer waited for (cancelled, timed out): dropped
        kind = msg.get("kind")
        if kind == "start":
            entry.worker = f"{msg.get('worker')} (pid {msg.get('pid')})"
            message = f"running on Dask worker {entry.worker}"
            self._write(entry, "podium.runners.dask", logging.INFO, message, msg.get("created"))
        elif kind == "checkpoint":
            try:
                entry.checkpoints.send_nowait(msg)
            except anyio.WouldBlock:
                log.warning(
                    "dropped a checkpoint of %s: %d are waiting",
                    msg.get("key"),
                    _CHECKPOINTS_BUFFER,
                )
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the try ended meanwhile: its worker's checkpoint is refused there
        elif kind == "log":
            created = msg.get("created")
            name, levelno = str(msg["name"]), int(msg["levelno"])
            self._write(entry, name, levelno, str(msg["message"]), created)
            entry.received += 1
            if entry.expected is not None and entry.received >= entry.expected:
                entry.drained.set()

    @staticmethod
    def _write(
        entry: _Try, name: str, levelno: int, message: str, created: float | None = None
    ) -> None:
        record = logging.LogRecord(name, levelno, "", 0, message, None, None)
        if created is not None:
            record.created = created
        token = current_try.set(entry.log)  # into that try's log, as if it logged here
        try:
            logging.getLogger(name).handle(record)
        finally:
            current_try.reset(token)

    # -- the client ---------------------------------------------------------------------------------

    async def _connected(self) -> Any:
        """The client, connected to the scheduler with this session's topic subscribed; a fresh
        one if the last lost its scheduler. Tries that waited on a failed attempt share its error."""
        attempt = self._attempts
        async with self._lock:
            client = self._client
            if (
                client is not None
                and client.status == "running"
                and client.scheduler_comm is self._comm
            ):
                return client
            if self._attempts != attempt and self._last_error is not None:
                raise self._last_error
            await self._connect()
            return self._client

    async def _connect(self) -> None:
        await self._close()
        self._attempts += 1
        opening = asyncio.get_running_loop().create_task(self._open(), context=self._base.copy())
        try:
            await opening
        except RunnerError as exc:
            self._last_error = exc
            raise
        self._last_error = None

    async def _open(self) -> None:
        from distributed import Client

        address = self.spec.address
        client: Any = None
        try:
            with anyio.fail_after(self.spec.connect_timeout + 1):
                client = Client(
                    address,
                    asynchronous=True,
                    timeout=self.spec.connect_timeout,
                    set_as_default=False,
                )
                await client
        except Exception as exc:
            if client is not None:
                with anyio.move_on_after(self.spec.connect_timeout):
                    await client.close()
            raise RunnerError(
                f"cannot reach the Dask scheduler at {address}: {describe_exception(exc)}"
            ) from None
        self._topic = f"podium-logs-{client.id}"
        client.subscribe_topic(self._topic, self._on_event)
        self._client, self._comm = client, client.scheduler_comm

    async def _close(self) -> None:
        client, self._client, self._comm = self._client, None, None
        if client is not None:
            with anyio.move_on_after(self.spec.connect_timeout):
                try:
                    await client.close()
                except Exception as exc:  # a client whose scheduler is gone may fail to close
                    log.debug("closing the Dask client failed: %s", describe_exception(exc))
