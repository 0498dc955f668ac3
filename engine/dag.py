"""Defining pipelines: the ``@task`` and ``@dag`` decorators, the graph they build, and its validation.

Calling a task inside a ``@dag`` function does not run it: it adds a node to the DAG being built and returns
a ``TaskRef`` standing for the task's future result. Passing a ``TaskRef`` to another task makes a data edge;
``a >> b`` makes an order-only edge. The DAG function runs once, when it is decorated, so every definition
error surfaces at import time as a ``DAGError``.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

import orjson

from sensors.base import Schedule, Trigger, not_a_trigger

from .assets import Asset, as_assets
from .errors import DAGError, ParamError, TriggerError
from .retry import RetryPolicy
from .runners.base import Runner
from .states import TriggerRule
from .templating import Template, contains_template

P = ParamSpec("P")
R = TypeVar("R")

Callback = Callable[..., Any]

_building: contextvars.ContextVar[_DAGBuilder | None] = contextvars.ContextVar(
    "podium_dag_builder", default=None
)


_groups: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "podium_task_groups", default=()
)


class TaskGroup:
    """Tasks declared inside ``with TaskGroup("load"):`` get ids under that prefix (``load.clean``).

    Groups nest (``load.eu.clean``); the CLI and API address a task by its full id, and the web UI
    shows each group as one collapsible block."""

    def __init__(self, group_id: str) -> None:
        if not isinstance(group_id, str) or not group_id or "." in group_id or "[" in group_id:
            raise DAGError(
                f"a task group id is a non-empty name without '.' or '[', got {group_id!r}"
            )
        self.group_id = group_id
        self._token: contextvars.Token[tuple[str, ...]] | None = None

    def __enter__(self) -> TaskGroup:
        if _building.get() is None:
            raise DAGError(f"TaskGroup({self.group_id!r}) is used outside a @dag function")
        self._token = _groups.set((*_groups.get(), self.group_id))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _groups.reset(self._token)
        self._token = None


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
        _check_runner(f"task {name!r}", self.runner)
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
        builder = _building.get()
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
        builder = _building.get()
        if builder is None:
            raise DAGError(f"task {self.definition.name!r} was mapped outside a @dag function")
        return builder.add_task(
            self.definition, args, {**self.fixed, **kwargs}, map_count=count, map_names=names
        )

    def __repr__(self) -> str:
        return f"<partial task {self.definition.name}>"


class _ContextPlaceholder:
    """Where the task's ``Context`` goes in its call; replaced by the executor."""

    def __repr__(self) -> str:
        return "<context>"


CONTEXT = _ContextPlaceholder()


@dataclass(frozen=True)
class ParamRef:
    """Stands for a DAG parameter inside the DAG function; resolved to the run's value at run time."""

    name: str

    def __repr__(self) -> str:
        return f"<param {self.name}>"


class TaskRef:
    """The future result of one task in a DAG being built; also a handle for ``>>`` edges."""

    __slots__ = ("_builder", "task_id")

    def __init__(self, builder: _DAGBuilder, task_id: str) -> None:
        self._builder = builder
        self.task_id = task_id

    def __rshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef | Sequence[TaskRef]:
        for target in _as_refs(other):
            self._builder.add_order_edge(self, target)
        return other

    def __rrshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef:
        for source in _as_refs(other):
            self._builder.add_order_edge(source, self)
        return self

    def __lshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef | Sequence[TaskRef]:
        for source in _as_refs(other):
            self._builder.add_order_edge(source, self)
        return other

    def __rlshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef:
        for target in _as_refs(other):
            self._builder.add_order_edge(self, target)
        return self

    def __repr__(self) -> str:
        return f"<result of {self.task_id}>"

    def __bool__(self) -> bool:
        raise DAGError(
            f"the result of {self.task_id!r} is not known while the DAG is built; "
            "branch inside a task instead"
        )

    def __iter__(self) -> Any:
        raise DAGError(
            f"the result of {self.task_id!r} cannot be unpacked while the DAG is built; "
            "pass it whole to the next task"
        )


def _as_refs(value: TaskRef | Sequence[TaskRef]) -> list[TaskRef]:
    if isinstance(value, TaskRef):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, TaskRef) for v in value):
        return list(value)
    raise DAGError(f">> and << take tasks or lists of tasks, got {value!r}")


@dataclass(frozen=True, slots=True)
class Arg:
    """One bound argument of a task node: a constant, or a structure holding refs and params."""

    value: Any
    has_refs: bool


@dataclass(frozen=True, slots=True)
class TaskNode:
    """One task in a built DAG: the definition, its bound arguments and its edges."""

    task_id: str
    definition: TaskDef[Any, Any]
    options: TaskOptions
    args: tuple[Arg, ...]
    kwargs: Mapping[str, Arg]
    data_upstream: frozenset[str]
    upstream: tuple[str, ...]
    downstream: tuple[str, ...] = ()
    templated: bool = False  # some argument holds a ``Template``, rendered when a try starts
    mapped: tuple[
        str, ...
    ] = ()  # the parameters mapped over at run time (``.map()``, ``.expand()``)
    group: str | None = None  # the ``TaskGroup`` the task was declared in (its full id)

    @property
    def is_async(self) -> bool:
        return self.definition.is_async

    @property
    def context_param(self) -> str | None:
        return self.definition.context_param


class _DAGBuilder:
    def __init__(self, dag_id: str) -> None:
        self.dag_id = dag_id
        self.nodes: dict[str, dict[str, Any]] = {}
        self.order_edges: list[tuple[str, str]] = []
        self._name_uses: dict[str, int] = {}

    def add_task(
        self,
        definition: TaskDef[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        map_count: int = 0,
        map_names: tuple[str, ...] = (),
        group: str | None = None,
    ) -> TaskRef:
        """Add a node; the first ``map_count`` parameters and those in ``map_names`` are mapped.
        ``group``: the task group's full id (default: the ``with TaskGroup`` blocks around)."""
        groups = tuple(group.split(".")) if group is not None else _groups.get()
        task_id = self._assign_id(definition, groups)
        mapped = self._mapped_names(definition, task_id, map_count, map_names)
        try:
            bound = definition.call_signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise DAGError(f"DAG {self.dag_id!r}, task {task_id!r}: {exc}") from None
        missing = [
            name
            for name, p in definition.call_signature.parameters.items()
            if name not in bound.arguments
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if missing:
            raise DAGError(
                f"DAG {self.dag_id!r}, task {task_id!r}: missing argument(s) {', '.join(missing)}"
            )
        self._check_mapped_values(task_id, mapped, bound)
        refs: set[str] = set()
        arguments: dict[str, Any] = {}
        for name in definition.signature.parameters:
            if name == definition.context_param:
                arguments[name] = CONTEXT
            elif name in bound.arguments:
                arguments[name] = bound.arguments[name]
        ordered: OrderedDict[str, Any] = OrderedDict(arguments)
        full = inspect.BoundArguments(definition.signature, ordered)
        bound_args = tuple(self._arg(v, refs, task_id) for v in full.args)
        bound_kwargs = {k: self._arg(v, refs, task_id) for k, v in full.kwargs.items()}
        if definition.options.trigger_rule is TriggerRule.ALWAYS and refs:
            raise DAGError(
                f"DAG {self.dag_id!r}, task {task_id!r}: trigger rule 'always' does not wait for "
                f"upstream tasks, so it cannot take their results ({', '.join(sorted(refs))}); "
                "use 'all_done'"
            )
        self.nodes[task_id] = {
            "definition": definition,
            "args": bound_args,
            "kwargs": bound_kwargs,
            "data_upstream": refs,
            "templated": any(
                a.has_refs and contains_template(a.value)
                for a in (*bound_args, *bound_kwargs.values())
            ),
            "mapped": mapped,
            "group": ".".join(groups) or None,
        }
        return TaskRef(self, task_id)

    def _mapped_names(
        self,
        definition: TaskDef[Any, Any],
        task_id: str,
        map_count: int,
        map_names: tuple[str, ...],
    ) -> tuple[str, ...]:
        """The mapped parameters: the first ``map_count`` and ``map_names``, each a named one."""
        parameters = definition.call_signature.parameters
        named = [
            n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        names = (*list(parameters)[:map_count], *map_names)
        for name in names:
            if name not in named:
                raise DAGError(
                    f"DAG {self.dag_id!r}, task {task_id!r}: cannot map over {name!r}, which is "
                    f"not a named parameter of {definition.name} ({', '.join(named) or 'none'})"
                )
        return names

    def _check_mapped_values(
        self, task_id: str, names: tuple[str, ...], bound: inspect.BoundArguments
    ) -> None:
        """Each mapped parameter is bound to something a list can come from."""
        for name in names:
            value = bound.arguments.get(name)
            if not isinstance(value, (TaskRef, ParamRef, list, tuple)) and not (
                isinstance(value, Template) and value.native
            ):
                raise DAGError(
                    f"DAG {self.dag_id!r}, task {task_id!r}: .map() maps over an upstream "
                    f"task's result, a list or a param, got {type(value).__name__} for {name!r}"
                )

    def _assign_id(self, definition: TaskDef[Any, Any], groups: tuple[str, ...]) -> str:
        prefix = "".join(f"{g}." for g in groups)
        if definition.options.task_id is not None:
            task_id = prefix + definition.options.task_id
            if task_id in self.nodes:
                raise DAGError(f"DAG {self.dag_id!r}: duplicate task id {task_id!r}")
            return task_id
        base = prefix + definition.name
        n = self._name_uses.get(base, 0)
        while True:
            n += 1
            task_id = base if n == 1 else f"{base}_{n}"
            if task_id not in self.nodes:
                break
        self._name_uses[base] = n
        return task_id

    def _arg(self, value: Any, refs: set[str], task_id: str) -> Arg:
        found = self._collect_refs(value, refs, task_id)
        return Arg(value, found)

    def _collect_refs(self, value: Any, refs: set[str], task_id: str) -> bool:
        if isinstance(value, TaskRef):
            if value._builder is not self or value.task_id not in self.nodes:
                raise DAGError(
                    f"DAG {self.dag_id!r}, task {task_id!r}: unknown reference to "
                    f"{value.task_id!r}, which belongs to another DAG"
                )
            refs.add(value.task_id)
            return True
        if isinstance(value, Template):
            for upstream in sorted(value.task_references):
                if upstream not in self.nodes:
                    known = difflib.get_close_matches(upstream, list(self.nodes), n=1)
                    hint = f" (did you mean {known[0]!r}?)" if known else ""
                    raise DAGError(
                        f"DAG {self.dag_id!r}, task {task_id!r}: template {value.source!r} reads "
                        f"the result of {upstream!r}, which is not a task declared before it{hint}"
                    )
                refs.add(upstream)
            return True
        if isinstance(value, (ParamRef, _ContextPlaceholder)):
            return True
        if isinstance(value, (list, tuple)):
            found = False
            for item in value:
                found = self._collect_refs(item, refs, task_id) or found
            return found
        if isinstance(value, dict):
            found = False
            for item in value.values():
                found = self._collect_refs(item, refs, task_id) or found
            return found
        return False

    def add_order_edge(self, source: TaskRef, target: TaskRef) -> None:
        for ref in (source, target):
            if ref._builder is not self:
                raise DAGError(
                    f"DAG {self.dag_id!r}: unknown reference to {ref.task_id!r} in a >> edge"
                )
        if source.task_id == target.task_id:
            raise DAGError(f"DAG {self.dag_id!r}: cycle {source.task_id} -> {source.task_id}")
        self.order_edges.append((source.task_id, target.task_id))


@dataclass(frozen=True)
class DAGParam:
    name: str
    default: Any
    required: bool
    annotation: Any


class DAG:
    """A validated pipeline: task nodes in topological order, params, triggers and run limits."""

    def __init__(
        self,
        dag_id: str,
        nodes: Mapping[str, TaskNode],
        *,
        params: Mapping[str, DAGParam],
        triggers: Sequence[Any] = (),
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | Literal["pause"] | None = None,
        on_retry: Callback | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        source_file: str | None = None,
        sla: float | None = None,
        runner: Runner | None = None,
    ) -> None:
        _check_runner(f"DAG {dag_id!r}", runner)
        if isinstance(on_failure, str) and on_failure != "pause":
            raise DAGError(
                f'DAG {dag_id!r}: on_failure takes a callback or "pause", got {on_failure!r}'
            )
        self.dag_id = dag_id
        self.params = dict(params)
        self.triggers: list[Trigger] = _check_triggers(dag_id, triggers)
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        self.on_success = on_success
        self.on_failure = on_failure
        self.on_retry = on_retry
        self.description = description
        self.tags = tuple(tags)
        self.source_file = source_file
        self.sla = sla
        self.runner = runner  # the tasks' runner unless a task names its own
        self.order = _topological_order(dag_id, nodes)
        self.tasks: dict[str, TaskNode] = {tid: nodes[tid] for tid in self.order}
        self.roots = tuple(tid for tid in self.order if not self.tasks[tid].upstream)
        _check_limit(dag_id, "max_active_runs", max_active_runs)
        _check_limit(dag_id, "max_active_tasks", max_active_tasks)

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id} ({len(self.tasks)} tasks)>"

    @property
    def schedule(self) -> Schedule | None:
        """The schedule of the DAG's first timer trigger (what a backfill enumerates), or None."""
        return next((t.schedule for t in self.triggers if t.schedule is not None), None)

    def validate_params(
        self, given: Mapping[str, Any] | None, *, strict: bool = True
    ) -> dict[str, Any]:
        """The run's params: ``given`` over the defaults, checked and coerced by annotation.

        ``strict=False`` (event-triggered runs) keeps keys the DAG does not declare instead of rejecting them.
        """
        given = dict(given or {})
        bad_keys = [k for k in given if not isinstance(k, str)]
        if bad_keys:
            raise ParamError(
                f"DAG {self.dag_id!r}: param names must be strings, got {_short(bad_keys[0])}"
            )
        unknown = sorted(set(given) - set(self.params))
        if unknown and strict:
            known = ", ".join(self.params) or "none"
            raise ParamError(
                f"DAG {self.dag_id!r}: unknown param(s) {', '.join(unknown)} (declared: {known})"
            )
        result: dict[str, Any] = {}
        for name, param in self.params.items():
            if name in given:
                result[name] = _coerce(self.dag_id, param, given.pop(name))
            elif param.required:
                raise ParamError(f"DAG {self.dag_id!r}: missing required param {name!r}")
            else:
                result[name] = param.default
        result.update(given)
        return result

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the graph (for the store, the CLI and the API)."""
        return {
            "dag_id": self.dag_id,
            "params": {
                n: {
                    "default": p.default,
                    "required": p.required,
                    "type": getattr(p.annotation, "__name__", None),
                }
                for n, p in self.params.items()
            },
            "tasks": [
                {
                    "task_id": tid,
                    "upstream": list(node.upstream),
                    "pool": node.options.pool,
                    "trigger_rule": str(node.options.trigger_rule),
                    "retries": node.options.retry.retries,
                    "group": node.group,
                    "mapped": bool(node.mapped),
                    "inlets": [a.uri for a in node.options.inlets],
                    "outlets": [a.uri for a in node.options.outlets],
                }
                for tid, node in self.tasks.items()
            ],
            "triggers": [repr(t) for t in self.triggers],
            "timers": _timer_specs(self.triggers),
            "trigger_assets": _trigger_assets(self.triggers),
        }


def _check_triggers(dag_id: str, triggers: Iterable[Any]) -> list[Trigger]:
    """``triggers`` as a list, each one checked to implement ``sensors.base.Trigger``."""
    from sensors.assets import OnAssets

    checked: list[Trigger] = []
    for index, trigger in enumerate(triggers):
        if not isinstance(trigger, Trigger):
            raise TriggerError(f"DAG {dag_id!r}, trigger {index}: {not_a_trigger(trigger)}")
        checked.append(trigger)
    if sum(isinstance(t, OnAssets) for t in checked) > 1:
        raise TriggerError(
            f"DAG {dag_id!r}: one OnAssets trigger per DAG; combine the conditions with | instead"
        )
    return checked


def _trigger_assets(triggers: Iterable[Trigger]) -> list[str]:
    """The URIs an ``OnAssets`` trigger names, so tools without the DAG's code (the CLI's
    catalog) know what the DAG consumes."""
    from sensors.assets import OnAssets

    return [uri for t in triggers if isinstance(t, OnAssets) for uri in t.uris]


def _timer_specs(triggers: Iterable[Trigger]) -> list[dict[str, Any]]:
    """The timer triggers' schedules as data, so tools without the DAG's code (the CLI) can compute
    their slots (``sensors.timers.schedule_from_spec``)."""
    schedules = (t.schedule for t in triggers)
    specs = (s.spec() for s in schedules if s is not None)
    return [spec for spec in specs if spec is not None]


_COERCIBLE = {int, float, bool, str, list, dict}


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: error messages name a value without copying it all."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce(dag_id: str, param: DAGParam, value: Any) -> Any:
    target = param.annotation
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target in (list, dict) and isinstance(value, str):  # ``--param files='["a", "b"]'``
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ParamError(
                f"DAG {dag_id!r}: param {param.name!r} expects {target.__name__} (as JSON), "
                f"got {_short(value)}"
            ) from None
    if target not in _COERCIBLE or isinstance(value, target) or value is None:
        return value
    if isinstance(value, str) and target not in (list, dict):
        try:
            if target is bool:
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return target(value)
        except ValueError:
            raise ParamError(
                f"DAG {dag_id!r}: param {param.name!r} expects {target.__name__}, "
                f"got {_short(value)}"
            ) from None
    raise ParamError(
        f"DAG {dag_id!r}: param {param.name!r} expects {target.__name__}, "
        f"got {type(value).__name__} {_short(value)}"
    )


def _check_runner(owner: str, runner: Any) -> None:
    if runner is not None and not isinstance(runner, Runner):
        raise DAGError(
            f"{owner}: runner must be a runner such as Process(workers=4), got {runner!r}"
        )


def _check_limit(dag_id: str, name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DAGError(f"DAG {dag_id!r}: {name} must be an int >= 1 or None, got {value!r}")


def _topological_order(dag_id: str, nodes: Mapping[str, TaskNode]) -> list[str]:
    """Kahn's order (stable by definition order); on a cycle, raise naming its path."""
    indegree = {tid: len(node.upstream) for tid, node in nodes.items()}
    ready = [tid for tid, deg in indegree.items() if deg == 0]
    order: list[str] = []
    while ready:
        tid = ready.pop(0)
        order.append(tid)
        for child in nodes[tid].downstream:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) != len(nodes):
        raise DAGError(f"DAG {dag_id!r} has a cycle: {' -> '.join(_find_cycle(nodes))}")
    return order


def _find_cycle(nodes: Mapping[str, TaskNode]) -> list[str]:
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(tid: str) -> list[str] | None:
        color[tid] = 1
        stack.append(tid)
        for child in nodes[tid].downstream:
            if color.get(child) == 1:
                return [*stack[stack.index(child) :], child]
            if child not in color:
                found = visit(child)
                if found:
                    return found
        stack.pop()
        color[tid] = 2
        return None

    for tid in nodes:
        if tid not in color:
            cycle = visit(tid)
            if cycle:
                return cycle
    return []  # unreachable when called after Kahn found leftovers


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


@overload
def dag(fn: Callable[..., Any], /) -> DAG: ...
@overload
def dag(
    fn: None = None,
    /,
    *,
    dag_id: str | None = None,
    triggers: Iterable[Any] = (),
    max_active_runs: int | None = None,
    max_active_tasks: int | None = None,
    on_success: Callback | None = None,
    on_failure: Callback | Literal["pause"] | None = None,
    on_retry: Callback | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    sla: float | None = None,
    runner: Runner | None = None,
) -> Callable[[Callable[..., Any]], DAG]: ...
def dag(fn: Any = None, /, **options: Any) -> Any:
    """Declare a DAG. The function runs once, now, to build the graph; its parameters are the DAG's params.

    Options: ``dag_id`` (default: the function name), ``triggers`` (sensors), ``max_active_runs``,
    ``max_active_tasks`` (per run), ``on_success`` / ``on_failure`` / ``on_retry`` callbacks,
    ``description``, ``tags``, ``runner`` (where its tasks run unless a task names its own).
    """
    if fn is not None:
        return build_dag(fn)

    def decorate(f: Callable[..., Any]) -> DAG:
        return build_dag(f, **options)

    return decorate


def build_dag(
    fn: Callable[..., Any],
    *,
    dag_id: str | None = None,
    triggers: Iterable[Any] = (),
    **options: Any,
) -> DAG:
    dag_id = dag_id or fn.__name__
    if not isinstance(dag_id, str) or not dag_id or "/" in dag_id:
        raise DAGError(f"invalid DAG id {dag_id!r}")
    params: dict[str, DAGParam] = {}
    call_kwargs: dict[str, ParamRef] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DAGError(f"DAG {dag_id!r}: *args/**kwargs params are not supported ({name})")
        required = p.default is inspect.Parameter.empty
        annotation = p.annotation
        if isinstance(annotation, str):
            annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation)
        params[name] = DAGParam(name, None if required else p.default, required, annotation)
        call_kwargs[name] = ParamRef(name)

    builder = _DAGBuilder(dag_id)
    token = _building.set(builder)
    try:
        fn(**call_kwargs)
    finally:
        _building.reset(token)
    return dag_from_builder(
        builder, params, triggers=triggers, source_file=inspect.getsourcefile(fn), **options
    )


DAGBuilder = _DAGBuilder
"""Adds tasks (``add_task``) and order edges (``add_order_edge``) to a DAG being built; YAML DAGs
(``engine.yaml_dags``) build through it too, so they become the same ``DAG`` as ``@dag`` functions."""


def dag_from_builder(
    builder: _DAGBuilder,
    params: Mapping[str, DAGParam],
    *,
    triggers: Iterable[Any] = (),
    source_file: str | None = None,
    **options: Any,
) -> DAG:
    """The validated ``DAG`` of what ``builder`` holds (raises ``DAGError``)."""
    dag_id = builder.dag_id
    if not builder.nodes:
        raise DAGError(f"DAG {dag_id!r} has no tasks")

    upstream: dict[str, list[str]] = {tid: [] for tid in builder.nodes}
    for tid, spec in builder.nodes.items():
        upstream[tid].extend(sorted(spec["data_upstream"]))
    for source, target in builder.order_edges:
        if source not in upstream[target]:
            upstream[target].append(source)
    downstream: dict[str, list[str]] = {tid: [] for tid in builder.nodes}
    for tid, ups in upstream.items():
        for up in ups:
            downstream[up].append(tid)
    nodes = {
        tid: TaskNode(
            task_id=tid,
            definition=spec["definition"],
            options=spec["definition"].options,
            args=spec["args"],
            kwargs=spec["kwargs"],
            data_upstream=frozenset(spec["data_upstream"]),
            upstream=tuple(upstream[tid]),
            downstream=tuple(downstream[tid]),
            templated=spec["templated"],
            mapped=spec.get("mapped", ()),
            group=spec.get("group"),
        )
        for tid, spec in builder.nodes.items()
    }
    return DAG(
        dag_id,
        nodes,
        params=params,
        triggers=list(triggers),
        source_file=source_file,
        **options,
    )
