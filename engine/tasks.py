"""Declaring tasks: the ``@task`` decorator, a task's options, and mapping a task (``.map``,
``.expand``, ``.partial``). A ``TaskDef`` called inside a ``@dag`` function adds a node to the DAG
being built (``engine.dag_builder``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from .assets import Asset, as_assets
from .dag_builder import building
from .errors import DAGError
from .retry import RetryPolicy
from .runners.base import Runner
from .states import TriggerRule

P = ParamSpec("P")
R = TypeVar("R")

Callback = Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """Everything a task declares besides its function; ``override()`` replaces any of it per use."""

    task_id: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    pool: str | None = None
    priority: int = 0
    concurrency: int | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    on_success: Callback | None = None
    on_failure: Callback | Literal["pause"] | None = None
    on_retry: Callback | None = None
    sla: float | None = None
    inlets: tuple[Asset, ...] = ()  # the assets the task reads (lineage)
    outlets: tuple[Asset, ...] = ()  # the assets it writes: one asset event each per success
    runner: Runner | None = None  # where the try runs (engine/runners); None: the DAG's or engine's

    def validate(self, name: str) -> None:
        check_runner(f"task {name!r}", self.runner)
        if self.sla is not None and not self.sla > 0:
            raise DAGError(f"task {name!r}: sla must be > 0 seconds, got {self.sla!r}")
        if isinstance(self.on_failure, str) and self.on_failure != "pause":
            raise DAGError(
                f'task {name!r}: on_failure takes a callback or "pause", got {self.on_failure!r}'
            )
        if self.timeout is not None and not self.timeout > 0:
            raise DAGError(f"task {name!r}: timeout must be > 0 seconds, got {self.timeout!r}")
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise DAGError(
                f"task {name!r}: concurrency must be an int >= 1, got {self.concurrency!r}"
            )
        if self.pool is not None and (not isinstance(self.pool, str) or not self.pool):
            raise DAGError(f"task {name!r}: pool must be a non-empty string, got {self.pool!r}")
        if not isinstance(self.priority, int):
            raise DAGError(f"task {name!r}: priority must be an int, got {self.priority!r}")


@dataclass(frozen=True, slots=True)
class _FunctionShape:
    """What binding calls needs to know of a task function, computed once per function."""

    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature
    context_param: str | None
    call_signature: inspect.Signature  # what callers bind against: without the Context parameter

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _FunctionShape:
        signature = inspect.signature(fn)
        context_param = _find_context_param(signature)
        call_signature = signature.replace(
            parameters=[p for n, p in signature.parameters.items() if n != context_param]
        )
        return cls(fn, inspect.iscoroutinefunction(fn), signature, context_param, call_signature)


class TaskDef(Generic[P, R]):
    """A function declared with ``@task``. Call it inside a ``@dag`` function to add it to the DAG."""

    def __init__(
        self, fn: Callable[P, R], options: TaskOptions, *, _shape: _FunctionShape | None = None
    ) -> None:
        self.fn = fn
        self.options = options
        self.name = options.task_id or fn.__name__
        # a task used many times (``override(task_id=...)`` in a loop) shares one analysis of fn
        shape = _shape if _shape is not None and _shape.fn is fn else _FunctionShape.of(fn)
        self._shape = shape
        self.is_async = shape.is_async
        self.signature = shape.signature
        self.context_param = shape.context_param
        self.call_signature = shape.call_signature
        options.validate(self.name)
        if options.trigger_rule is TriggerRule.ALWAYS:
            pass  # checked per use, where the inputs are known
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def override(self, **changes: Any) -> TaskDef[P, R]:
        """The same task with some options replaced, e.g. ``clean.override(task_id="clean_eu")(rows)``."""
        return TaskDef(self.fn, _make_options(self.options, **changes), _shape=self._shape)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        builder = building.get()
        if builder is None:
            raise DAGError(
                f"task {self.name!r} was called outside a @dag function; "
                f"call {self.name}.fn(...) to run the plain function"
            )
        # At definition time a call stands for the task's future result: a ``TaskRef`` typed as ``R``
        # so that passing it to the next task type-checks.
        ref: Any = builder.add_task(self, args, kwargs)
        return cast(R, ref)

    def map(self, *mapped: Any, **partial: Any) -> Any:
        """One instance of this task per element, created at run time: ``process.map(files)``.

        Positional arguments are mapped (each an upstream task's result that is a list, a list, or
        a list-valued param; several are zipped and must have the same length); keyword arguments
        go whole to every instance. Downstream tasks receive the list of the instances' results, in
        order. Each instance has its own state, tries, log and result (task id ``process[0]``, ...).
        To map by parameter name: ``process.expand(path=files)``."""
        return self.partial(**partial).map(*mapped)

    def expand(self, **mapped: Any) -> Any:
        """``map`` by parameter name: ``load.expand(path=files)``; with fixed arguments,
        ``load.partial(bucket="landing").expand(path=files)``."""
        return self.partial().expand(**mapped)

    def partial(self, **fixed: Any) -> PartialTask:
        """This task with ``fixed`` keyword arguments, given whole to every instance of a following
        ``.map(...)`` or ``.expand(...)``."""
        return PartialTask(self, fixed)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


class PartialTask:
    """A task with some arguments fixed (``TaskDef.partial``), waiting to be mapped."""

    def __init__(self, definition: TaskDef[Any, Any], fixed: Mapping[str, Any]) -> None:
        self.definition = definition
        self.fixed = dict(fixed)

    def map(self, *mapped: Any) -> Any:
        """One instance per element of the positional arguments (see ``TaskDef.map``)."""
        if not mapped:
            raise DAGError(
                f"task {self.definition.name!r}.map() needs at least one positional argument to map"
            )
        return self._add(mapped, {}, len(mapped), ())

    def expand(self, **mapped: Any) -> Any:
        """One instance per element of the named arguments, zipped (see ``TaskDef.expand``)."""
        if not mapped:
            raise DAGError(f"task {self.definition.name!r}.expand() needs an argument to map")
        both = sorted(set(mapped) & set(self.fixed))
        if both:
            raise DAGError(
                f"task {self.definition.name!r}: {', '.join(both)} is both mapped and fixed"
            )
        return self._add((), {**self.fixed, **mapped}, 0, tuple(mapped))

    def _add(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], count: int, names: tuple[str, ...]
    ) -> Any:
        builder = building.get()
        if builder is None:
            raise DAGError(f"task {self.definition.name!r} was mapped outside a @dag function")
        return builder.add_task(
            self.definition, args, {**self.fixed, **kwargs}, map_count=count, map_names=names
        )

    def __repr__(self) -> str:
        return f"<partial task {self.definition.name}>"


def check_runner(owner: str, runner: Any) -> None:
    if runner is not None and not isinstance(runner, Runner):
        raise DAGError(
            f"{owner}: runner must be a runner such as Process(workers=4), got {runner!r}"
        )


def _find_context_param(signature: inspect.Signature) -> str | None:
    from .context import Context

    for name, p in signature.parameters.items():
        annotation = p.annotation
        if annotation is Context or annotation == "Context" or name == "ctx":
            return name
    return None


def _make_options(base: TaskOptions | None = None, **opts: Any) -> TaskOptions:
    base = base or TaskOptions()
    retry_fields = {
        "retries": "retries",
        "retry_delay": "delay",
        "retry_backoff": "backoff",
        "max_retry_delay": "max_delay",
        "retry_jitter": "jitter",
        "retry_on": "retry_on",
    }
    retry_changes: dict[str, Any] = {}
    option_changes: dict[str, Any] = {}
    for key, value in opts.items():
        if key in retry_fields:
            if key == "retry_on" and isinstance(value, type):
                value = (value,)
            retry_changes[retry_fields[key]] = value
        elif key == "retry" and isinstance(value, RetryPolicy):
            option_changes["retry"] = value
        elif key == "trigger_rule":
            try:
                option_changes[key] = TriggerRule(value)
            except ValueError:
                rules = ", ".join(r.value for r in TriggerRule)
                raise DAGError(f"unknown trigger rule {value!r} (one of: {rules})") from None
        elif key in ("inlets", "outlets"):
            option_changes[key] = as_assets(value, key)
        elif key in TaskOptions.__dataclass_fields__:
            option_changes[key] = value
        else:
            raise DAGError(f"unknown task option {key!r}")
    if retry_changes:
        option_changes["retry"] = replace(option_changes.get("retry", base.retry), **retry_changes)
    return replace(base, **option_changes)


@overload
def task(fn: Callable[P, R], /) -> TaskDef[P, R]: ...
@overload
def task(
    fn: None = None,
    /,
    *,
    task_id: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    max_retry_delay: float | None = None,
    retry_jitter: float = 0.0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    timeout: float | None = None,
    pool: str | None = None,
    priority: int = 0,
    concurrency: int | None = None,
    trigger_rule: str | TriggerRule = TriggerRule.ALL_SUCCESS,
    on_success: Callback | None = None,
    on_failure: Callback | Literal["pause"] | None = None,
    on_retry: Callback | None = None,
    sla: float | None = None,
    inlets: Iterable[Asset | str] = (),
    outlets: Iterable[Asset | str] = (),
    runner: Runner | None = None,
) -> Callable[[Callable[P, R]], TaskDef[P, R]]: ...
def task(fn: Any = None, /, **options: Any) -> Any:
    """Declare a task. Bare (``@task``) or with options (``@task(retries=3, pool="db")``).

    Options: ``task_id``, ``retries``, ``retry_delay`` (s), ``retry_backoff`` (factor), ``max_retry_delay``,
    ``retry_jitter`` (0..1), ``retry_on`` (exception types), ``timeout`` (s), ``pool``, ``priority`` (higher
    first), ``concurrency`` (live tries of this task across all runs), ``trigger_rule``, and the callbacks
    ``on_success``, ``on_failure``, ``on_retry`` (called with the task's Context, sync or async;
    ``on_failure="pause"`` pauses the run instead of failing downstream tasks), and ``sla`` (seconds
    after the run's logical date by which the task should have succeeded; a miss is alerted).
    ``inlets`` / ``outlets``: the assets (``Asset`` or URI strings) it reads and writes; each
    success records one asset event per outlet, committed with the success (see docs/assets.md).
    ``runner``: where its tries run, e.g. ``Process(workers=4)`` (see ``engine.runners``).
    """
    if fn is not None:
        return TaskDef(fn, TaskOptions())
    task_options = _make_options(**options)

    def decorate(f: Callable[P, R]) -> TaskDef[P, R]:
        return TaskDef(f, task_options)

    return decorate
