"""Stage 3 of reading a YAML DAG file: what the models cannot check (imports, dependencies and the
results templates name, ``map:`` and groups, templates that parse, triggers that build), and
compiling a valid file through the same ``DAGBuilder`` as a ``@dag`` function."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import steps
from .dag import DAG, DAGParam, dag_from_builder
from .dag_builder import DAGBuilder, TaskRef
from .errors import DAGError, PodiumError, describe_exception
from .tasks import TaskDef, task
from .templating import Template, single_expression
from .yaml_problems import Loc, Problem, Where, did_you_mean
from .yaml_spec import PARAM_TYPES, DagSpec, TaskOptionsSpec, TaskSpec, TriggerSpec

TEMPLATE_MARK = re.compile(r"\{\{|\{%|\{#")


class Compiler:
    """Checks what the models cannot (imports, dependencies, templates, triggers) on the parts of a
    file that are well-formed, and builds the ``DAG`` when nothing is wrong."""

    def __init__(
        self, file: Path, where: Where, task_ids: list[str], defaults: TaskOptionsSpec
    ) -> None:
        self.file = file
        self.where = where
        self.task_ids = task_ids
        self.defaults = defaults
        self.problems: list[Problem] = []
        self.unresolved: set[str] = set()  # tasks naming a task they cannot depend on (reported)
        self.reads: dict[str, set[str]] = {}  # task key -> the tasks whose results it reads

    def report(self, loc: Loc, message: str) -> None:
        self.problems.append(self.where.problem(loc, message))

    def check(
        self, tasks: Mapping[str, TaskSpec], triggers: Mapping[int, TriggerSpec]
    ) -> tuple[DAGBuilder, list[Any]]:
        """Check ``tasks`` and ``triggers``; the builder holding the tasks, and the built triggers."""
        self._check_keys(tasks)
        order = self._check_dependencies(tasks)
        built = (self._trigger(index, trigger) for index, trigger in triggers.items())
        triggers_built = [trigger for trigger in built if trigger is not None]
        builder = DAGBuilder("yaml")
        refs: dict[str, TaskRef] = {}
        key_of = {task_spec.full_id(key): key for key, task_spec in tasks.items()}
        for key in order:  # upstream tasks first: a template naming a result needs its task
            if any(key_of.get(upstream) in self.unresolved for upstream in self.reads[key]):
                self.unresolved.add(key)  # its upstream was not built: nothing more to say
            ref = self._add_task(builder, key, tasks[key])
            if ref is not None:
                refs[tasks[key].full_id(key)] = ref
        for key, task_spec in tasks.items():
            task_id = task_spec.full_id(key)
            for upstream in task_spec.depends_on:
                if upstream in refs and task_id in refs and upstream != task_id:
                    builder.add_order_edge(refs[upstream], refs[task_id])
        return builder, triggers_built

    def finish(self, spec: DagSpec, builder: DAGBuilder, triggers: list[Any]) -> DAG | None:
        """The ``DAG``, when nothing was reported."""
        if self.problems:
            return None
        builder.dag_id = spec.dag_id or self.file.stem
        params = {
            name: DAGParam(name, p.default, p.required, PARAM_TYPES[p.type])
            for name, p in spec.params.items()
        }
        try:
            return dag_from_builder(
                builder,
                params,
                triggers=triggers,
                source_file=str(self.file),
                description=spec.description,
                tags=spec.tags,
                max_active_runs=spec.max_active_runs,
                max_active_tasks=spec.max_active_tasks,
            )
        except PodiumError as exc:  # a check of the DAG model itself that the stages above missed
            self.report((), str(exc))
            return None

    def _check_keys(self, tasks: Mapping[str, TaskSpec]) -> None:
        for key in tasks:
            if "." in key or "[" in key:
                self.report(
                    ("tasks", key),
                    "a task key has no '.' or '[' (to put a task in a group, give it group:)",
                )

    def _check_dependencies(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Report unknown and circular dependencies (``depends_on`` and results named in
        templates); the keys of the tasks outside any cycle, upstream first."""
        upstream_of: dict[str, list[str]] = {}
        for key, task_spec in tasks.items():
            task_id = task_spec.full_id(key)
            named: list[tuple[Loc, str]] = [
                (("tasks", key, "depends_on", index), upstream)
                for index, upstream in enumerate(task_spec.depends_on)
            ]
            reads = self._result_references(key, task_spec)
            self.reads[key] = {upstream for _, upstream in reads}
            named += reads
            upstream_of[task_id] = []
            for loc, upstream in named:
                if upstream not in self.task_ids:
                    self.report(loc, f"unknown task {upstream!r}{self._task_hint(upstream)}")
                    self.unresolved.add(key)
                elif upstream == task_id:
                    self.report(loc, "a task cannot depend on itself")
                    self.unresolved.add(key)
                elif upstream not in upstream_of[task_id]:
                    upstream_of[task_id].append(upstream)
        graph = {tid: [u for u in ups if u in upstream_of] for tid, ups in upstream_of.items()}
        key_of = {task_spec.full_id(key): key for key, task_spec in tasks.items()}
        cycle = _find_cycle(graph)
        if cycle:
            self.report(("tasks", key_of[cycle[0]], "depends_on"), f"cycle {' -> '.join(cycle)}")
            self.unresolved.update(key_of[tid] for tid in cycle)
            return []
        return [key_of[tid] for tid in _upstream_first(graph)]

    def _task_hint(self, name: str) -> str:
        """ "did you mean" for a task id, knowing that a task in a group is named by its full id."""
        grouped = [tid for tid in self.task_ids if tid.rpartition(".")[2] == name]
        if len(grouped) == 1:
            return f" (did you mean {grouped[0]!r}? a task in a group is named by its full id)"
        return did_you_mean(name, self.task_ids)

    def _result_references(self, key: str, spec: TaskSpec) -> list[tuple[Loc, str]]:
        """The tasks whose results ``spec``'s templates name (``tasks.<id>.result``), with where."""
        fields: list[tuple[Loc, Any]] = [
            (("tasks", key, "args"), spec.args),
            (("tasks", key, "map"), spec.mapped),
        ]
        if spec.shell is not None:
            fields.append((("tasks", key, "shell"), spec.shell.model_dump(exclude_none=True)))
        if spec.http is not None:
            body = spec.http.model_dump(exclude_none=True, by_alias=True)
            fields.append((("tasks", key, "http"), body))
        found: list[tuple[Loc, str]] = []
        for loc, value in fields:
            for where, text in _strings(loc, value):
                if not TEMPLATE_MARK.search(text):
                    continue
                try:
                    references = Template(text).task_references
                except DAGError:
                    continue  # reported where the task is built
                found += [(where, upstream) for upstream in sorted(references)]
        return found

    def _trigger(self, index: int, spec: TriggerSpec) -> Any:
        from sensors import AfterDag, Cron, Every, KafkaTopic, S3Events

        try:
            if spec.cron is not None:
                c = spec.cron
                return Cron(c.schedule, tz=c.tz, catchup=c.catchup)
            if spec.every is not None:
                return Every(seconds=spec.every.seconds, catchup=spec.every.catchup)
            if spec.kafka is not None:
                return KafkaTopic(**spec.kafka.model_dump())
            if spec.s3 is not None:
                return S3Events(**spec.s3.model_dump())
            if spec.after is not None:
                states = spec.after.state
                return AfterDag(spec.after.dag, state=states[0] if len(states) == 1 else states)
        except (PodiumError, ValueError) as exc:
            kind = next(k for k in ("cron", "every", "kafka", "s3", "after") if getattr(spec, k))
            text = str(exc) if isinstance(exc, PodiumError) else describe_exception(exc)
            self.report(("triggers", index, kind), text)
        return None

    def _add_task(self, builder: DAGBuilder, key: str, spec: TaskSpec) -> TaskRef | None:
        fn: Callable[..., Any] | None
        mapped: dict[str, Any] = {}
        if spec.call is not None:
            where: Loc = ("tasks", key, "args")
            fn = self._import(("tasks", key, "call"), spec.call)
            kwargs = self._templates(where, spec.args, native=True)
            mapped = self._map_sources(("tasks", key, "map"), spec.mapped)
        elif spec.shell is not None:
            where, fn = ("tasks", key, "shell"), steps.shell
            kwargs = self._templates(where, spec.shell.model_dump(exclude_none=True))
        else:
            assert spec.http is not None
            where, fn = ("tasks", key, "http"), steps.http
            arguments = spec.http.model_dump(exclude_none=True, by_alias=True)
            kwargs = self._templates(where, arguments)
        if fn is None:
            return None
        if not self._check_map_names(("tasks", key, "map"), fn, spec.call, mapped):
            return None
        if key in self.unresolved:
            return None
        options = {
            **self.defaults.model_dump(exclude_none=True),
            **spec.model_dump(include=set(TaskOptionsSpec.model_fields), exclude_none=True),
        }
        try:
            definition: TaskDef[Any, Any] = task(task_id=key, **options)(fn)
            return builder.add_task(
                definition,
                (),
                {**kwargs, **mapped},
                map_names=tuple(mapped),
                group=spec.group,
            )
        except DAGError as exc:
            message = str(exc).removeprefix(f"DAG {builder.dag_id!r}, task {spec.full_id(key)!r}: ")
            self.report(("tasks", key, "map") if mapped and "map" in message else where, message)
            return None

    def _check_map_names(
        self, loc: Loc, fn: Callable[..., Any], target: str | None, mapped: Mapping[str, Any]
    ) -> bool:
        """Whether every ``map:`` key is a parameter of ``fn`` (else reported)."""
        try:
            parameters = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            return True  # no signature to check against: the builder reports what it finds
        ok = True
        for name in mapped:
            if name not in parameters:
                hint = did_you_mean(name, parameters) or f" (it takes {', '.join(parameters)})"
                self.report((*loc, name), f"{target} has no parameter {name!r}{hint}")
                ok = False
        return ok

    def _map_sources(self, loc: Loc, mapped: Mapping[str, Any]) -> dict[str, Any]:
        """Each ``map:`` value as the builder maps it: a list, or a one-expression template."""
        sources: dict[str, Any] = {}
        for name, value in mapped.items():
            if isinstance(value, list) and not any(True for _ in _template_strings(value)):
                sources[name] = value
            elif isinstance(value, str) and single_expression(value) is not None:
                sources[name] = self._templates((*loc, name), value, native=True)
            else:
                self.report(
                    (*loc, name),
                    "map takes a list, '{{ tasks.<id>.result }}' or '{{ params.<name> }}' "
                    f"(one expression), got {_short(value)}",
                )
        return sources

    def _import(self, loc: Loc, target: str) -> Callable[..., Any] | None:
        module_name, _, name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # whatever the module raises on import is the file's problem
            self.report(loc, f"cannot import module {module_name!r}: {describe_exception(exc)}")
            return None
        value = getattr(module, name, None)
        if isinstance(value, TaskDef):
            value = value.fn  # a @task function: its options come from the YAML
        if value is None:
            functions = [
                n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            ]
            hint = did_you_mean(name, functions)
            self.report(loc, f"module {module_name!r} has no function {name!r}{hint}")
            return None
        if not callable(value) or inspect.isclass(value):
            self.report(loc, f"{target!r} is not a function")
            return None
        return value

    def _templates(self, loc: Loc, value: Any, *, native: bool = False) -> Any:
        """``value`` with every string that holds template syntax made a ``Template``; ``native``:
        one that is a single expression keeps its value's type."""
        if isinstance(value, str):
            if not TEMPLATE_MARK.search(value):
                return value
            try:
                return Template(value, native=native)
            except DAGError as exc:
                self.report(loc, str(exc))
                return value
        if isinstance(value, list):
            return [self._templates((*loc, i), v, native=native) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._templates((*loc, k), v, native=native) for k, v in value.items()}
        return value


def _strings(loc: Loc, value: Any) -> Iterator[tuple[Loc, str]]:
    """Every string inside ``value`` (lists and mapping values), with its path."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings((*loc, i), v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings((*loc, k), v)


def _template_strings(value: Any) -> Iterator[str]:
    return (text for _, text in _strings((), value) if TEMPLATE_MARK.search(text))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _upstream_first(graph: Mapping[str, list[str]]) -> list[str]:
    """The nodes of an acyclic ``graph`` (node -> its upstream nodes), each after its upstreams,
    otherwise in the graph's order."""
    done: dict[str, None] = {}

    def place(node: str) -> None:
        if node in done:
            return
        for upstream in graph[node]:
            place(upstream)
        done[node] = None

    for node in graph:
        place(node)
    return list(done)


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    """A cycle of ``graph`` (task -> its upstream tasks) as a path in run order, or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for upstream in graph[node]:
            if state.get(upstream) == 1:
                loop = [*stack[stack.index(upstream) :], upstream]
                return loop[::-1]
            if upstream not in state and (found := visit(upstream)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return []
