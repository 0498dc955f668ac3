"""The graph a DAG definition builds: task references, nodes, task groups and the builder.

Calling a task inside a ``@dag`` function adds a node through the ``DAGBuilder`` that the function
runs under (``building``) and returns a ``TaskRef`` standing for the task's future result. Passing a
``TaskRef`` to another task (or naming ``tasks.<id>.result`` in a ``Template``) makes a data edge;
``a >> b`` makes an order-only edge. ``engine.dag`` turns a builder into a validated ``DAG``.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DAGError
from .states import TriggerRule
from .templating import Template, contains_template

if TYPE_CHECKING:
    from .tasks import TaskDef, TaskOptions

building: contextvars.ContextVar[DAGBuilder | None] = contextvars.ContextVar(
    "podium_dag_builder", default=None
)
"""The builder of the ``@dag`` function running now, if any."""

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
        if building.get() is None:
            raise DAGError(f"TaskGroup({self.group_id!r}) is used outside a @dag function")
        self._token = _groups.set((*_groups.get(), self.group_id))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _groups.reset(self._token)
        self._token = None


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

    def __init__(self, builder: DAGBuilder, task_id: str) -> None:
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


class DAGBuilder:
    """Adds tasks (``add_task``) and order edges (``add_order_edge``) to a DAG being built; YAML DAGs
    (``engine.yaml_dags``) build through it too, so they become the same ``DAG`` as ``@dag`` functions."""

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
