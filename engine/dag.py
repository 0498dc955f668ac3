"""Defining pipelines: the ``@dag`` decorator, the ``DAG`` it builds, and its validation.

A ``@dag`` function runs once, when it is decorated, under a ``DAGBuilder`` (``engine.dag_builder``):
each task it calls (``engine.tasks``) becomes a node. The DAG checks the graph (cycles, limits,
triggers, params) then, so every definition error surfaces at import time as a ``DAGError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import orjson

from sensors.base import Schedule, Trigger, not_a_trigger

from .dag_builder import DAGBuilder, ParamRef, TaskNode, building
from .errors import DAGError, ParamError, TriggerError
from .runners.base import Runner
from .tasks import Callback, check_runner


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
        check_runner(f"DAG {dag_id!r}", runner)
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

    builder = DAGBuilder(dag_id)
    token = building.set(builder)
    try:
        fn(**call_kwargs)
    finally:
        building.reset(token)
    return dag_from_builder(
        builder, params, triggers=triggers, source_file=inspect.getsourcefile(fn), **options
    )


def dag_from_builder(
    builder: DAGBuilder,
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
