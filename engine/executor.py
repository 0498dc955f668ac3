"""Running one try of one task: resolve its inputs, call it under its cancel scope and timeout, and
classify how it ended. No state store, no scheduling: the engine records what this returns."""

from __future__ import annotations

import functools
import traceback as tb
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio

from . import serialization
from .context import Context
from .dag_builder import CONTEXT, ParamRef, TaskNode, TaskRef
from .errors import ResultError, Skip, TaskTimeoutError, describe_exception
from .runners.base import RunnerSession, TryCall
from .templating import render_arguments


class Outcome(Enum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class TryResult:
    outcome: Outcome
    result: bytes | None = None
    error: BaseException | None = None
    message: str | None = None
    traceback: str | None = None


def resolve(
    value: Any, results: Mapping[str, bytes | None], params: Mapping[str, Any], ctx: Any = None
) -> Any:
    """Replace task references by their (JSON round-tripped) results and params by their values.

    Every consumer decodes its own copy, so a task cannot mutate another's input, and results look the
    same whether they come from memory or from the store after a restart.
    """
    if isinstance(value, TaskRef):
        return serialization.loads(results.get(value.task_id))
    if isinstance(value, ParamRef):
        return params.get(value.name)
    if value is CONTEXT:
        return ctx
    if isinstance(value, list):
        return [resolve(v, results, params, ctx) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, results, params, ctx) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, results, params, ctx) for k, v in value.items()}
    return value


async def run_try(
    node: TaskNode,
    *,
    scope: anyio.CancelScope,
    results: Mapping[str, bytes | None],
    params: Mapping[str, Any],
    context_factory: Callable[[], Context],
    thread_limiter: anyio.CapacityLimiter,
    max_result_bytes: int | None,
    runner: RunnerSession | None = None,
    run_id: str = "",  # runners: which try the runner session runs (a Dask key names it)
    try_number: int = 0,
) -> TryResult:
    """Run one try of ``node``. Cancellation of ``scope`` ends it as CANCELLED; an outer
    cancellation (engine torn down) propagates untouched. ``runner``: the session that runs the
    body (engine/runners); None runs it here (async on the loop, sync in a thread)."""
    timed_out = False
    value: Any = None
    try:
        ctx = context_factory() if node.context_param is not None or node.templated else None
        args = [
            resolve(a.value, results, params, ctx) if a.has_refs else a.value for a in node.args
        ]
        kwargs = {
            k: resolve(a.value, results, params, ctx) if a.has_refs else a.value
            for k, a in node.kwargs.items()
        }
        if node.templated:  # templated values (engine/templating.py): rendered before the body runs
            assert ctx is not None
            args, kwargs = render_arguments(node, args, kwargs, ctx, results)
        body: Callable[[], Awaitable[Any]]
        if runner is None:
            body = functools.partial(
                _invoke, node.definition.fn, node.is_async, args, kwargs, thread_limiter
            )
        else:  # runners (engine/runners): the task's runner session runs the body
            call = TryCall(node, args, kwargs, ctx, run_id=run_id, try_number=try_number)
            body = functools.partial(runner.call, call)
        with scope:
            timeout = node.options.timeout
            if timeout is None:
                value = await body()
            else:
                with anyio.move_on_after(timeout) as timeout_scope:
                    value = await body()
                timed_out = timeout_scope.cancelled_caught
        if scope.cancelled_caught:
            return TryResult(Outcome.CANCELLED, message="cancelled")
        if timed_out:
            error = TaskTimeoutError(f"task {node.task_id!r} exceeded its timeout of {timeout}s")
            return TryResult(Outcome.FAILED, error=error, message=describe_exception(error))
        data = serialization.encode_result(
            value, what=f"result of task {node.task_id!r}", max_bytes=max_result_bytes
        )
        return TryResult(Outcome.SUCCESS, result=data)
    except Skip as exc:
        return TryResult(Outcome.SKIPPED, message=str(exc) or "skipped")
    except ResultError as exc:
        return TryResult(Outcome.FAILED, error=exc, message=describe_exception(exc))
    except (Exception, SystemExit) as exc:  # a task that raises fails its try, never the engine
        return TryResult(
            Outcome.FAILED,
            error=exc,
            message=describe_exception(exc),
            traceback="".join(tb.format_exception(exc)),
        )


async def _invoke(
    fn: Callable[..., Any],
    is_async: bool,
    args: list[Any],
    kwargs: dict[str, Any],
    thread_limiter: anyio.CapacityLimiter,
) -> Any:
    if is_async:
        return await fn(*args, **kwargs)
    call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
    return await anyio.to_thread.run_sync(call, limiter=thread_limiter, abandon_on_cancel=True)
