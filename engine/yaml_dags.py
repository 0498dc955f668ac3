"""YAML DAGs: read a file, report every problem with its line, compile a valid one into a ``DAG``.

A file goes through three stages, each reporting all it finds (never only the first):

1. YAML: syntax errors and duplicate keys, with the line and column of the problem;
2. shape: the pydantic models of ``engine.yaml_spec`` (types, bounds, unknown keys with "did you
   mean"), each error placed on the line of its key through the positions yaml's composer keeps;
3. meaning: unknown ``depends_on`` targets, cycles, ``call`` targets that do not import or do not
   take the given ``args``, templates that do not parse, triggers that do not build.

A valid file compiles through the same ``DAGBuilder`` as a ``@dag`` function, so a YAML DAG is an
ordinary ``DAG`` for the engine, the UI, backfills and reruns. Strings in ``args``, ``shell`` and
``http`` are templates (``engine.templating``), rendered when the try starts.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from . import steps
from .dag import DAG, DAGParam, dag_from_builder
from .dag_builder import DAGBuilder, TaskRef
from .errors import DAGError, PodiumError, describe_exception
from .tasks import TaskDef, task
from .templating import Template, single_expression
from .yaml_spec import (
    GROUP_PATTERN,
    PARAM_TYPES,
    DagSpec,
    Spec,
    TaskOptionsSpec,
    TaskSpec,
    TriggerSpec,
)

Loc = tuple[str | int, ...]
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a YAML DAG file: where (line and column from 1, the YAML path) and what."""

    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class YAMLDAGError(DAGError):
    """A YAML DAG file is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, file: Path, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        lines = []
        for p in problems:
            where = f"{file}:{p.line}:{p.column}" if p.line else str(file)
            lines.append(f"{where}: {p}")
        super().__init__("\n".join(lines))


def load_yaml_dag(file: str | Path) -> DAG:
    """The ``DAG`` a YAML file defines; raises ``YAMLDAGError`` listing every problem."""
    path = Path(file)
    text = _read_text(path)
    try:
        return _load_text(path, text)
    except RecursionError:  # nesting deeper than the parser or the models can recurse
        raise YAMLDAGError(path, [_too_deep(text)]) from None


def _load_text(path: Path, text: str) -> DAG:
    marks, problems = _positions(text)
    if problems:
        raise YAMLDAGError(path, problems)
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # what composes but does not construct: ``!!python/...``
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = (exc.problem or exc.context or "cannot be read").replace(
            "could not determine a constructor for the tag", "unsupported tag"
        )
        raise YAMLDAGError(path, [Problem(line, column, "", f"YAML error: {problem}")]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise YAMLDAGError(
            path, [Problem(1, 1, "", f"a DAG file is a mapping, this one is {kind}")]
        )
    where = _Where(marks)
    try:
        spec = DagSpec.model_validate(data)
    except ValidationError as exc:
        # report the shape errors, and what the parts that are well-formed get wrong too
        found = [where.problem(tuple(e["loc"]), _message(e)) for e in exc.errors()]
        compiler = _Compiler(
            path, where, _task_ids(data), _valid(TaskOptionsSpec, data, "defaults")
        )
        compiler.check(_valid_tasks(data), _valid_triggers(data))
        raise YAMLDAGError(path, _in_file_order(found + compiler.problems)) from None
    compiler = _Compiler(path, where, _task_ids(data), spec.defaults)
    builder, triggers = compiler.check(spec.tasks, dict(enumerate(spec.triggers)))
    dag = compiler.finish(spec, builder, triggers)
    if compiler.problems or dag is None:
        raise YAMLDAGError(path, _in_file_order(compiler.problems))
    return dag


def _task_ids(data: Mapping[str, Any]) -> list[str]:
    """The full ids of the tasks of a file: each key, under its ``group`` when it names one."""
    tasks = data.get("tasks")
    if not isinstance(tasks, dict):
        return []
    ids = []
    for key, raw in tasks.items():
        group = raw.get("group") if isinstance(raw, dict) else None
        grouped = isinstance(group, str) and re.match(GROUP_PATTERN, group)
        ids.append(f"{group}.{key}" if grouped else str(key))
    return ids


def _valid(model: type[Spec], data: Mapping[str, Any], key: str) -> Any:
    try:
        return model.model_validate(data.get(key) or {})
    except ValidationError:
        return model()


def _valid_tasks(data: Mapping[str, Any]) -> dict[str, TaskSpec]:
    tasks = data.get("tasks")
    items = tasks.items() if isinstance(tasks, dict) else ()
    found = ((str(task_id), _well_formed(TaskSpec, raw)) for task_id, raw in items)
    return {task_id: spec for task_id, spec in found if spec is not None}


def _valid_triggers(data: Mapping[str, Any]) -> dict[int, TriggerSpec]:
    triggers = data.get("triggers")
    items = triggers if isinstance(triggers, list) else ()  # else reported: must be a list
    found = enumerate(_well_formed(TriggerSpec, raw) for raw in items)
    return {index: spec for index, spec in found if spec is not None}


S = TypeVar("S", bound=Spec)


def _well_formed(model: type[S], raw: Any) -> S | None:
    """``raw`` validated, or without its keys that are wrong (already reported), or None."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        wrong = {e["loc"][0] for e in exc.errors() if e["loc"]}
        if not isinstance(raw, dict) or not wrong or any(not e["loc"] for e in exc.errors()):
            return None
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in wrong})
    except ValidationError:
        return None


# -- stage 1: YAML and positions --------------------------------------------------------------------


def _positions(text: str) -> tuple[dict[Loc, tuple[int, int]], list[Problem]]:
    """The (line, column) of every key and list item by its path, and the YAML-level problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return {}, [Problem(line, column, "", message)]
    except yaml.reader.ReaderError as exc:
        return {}, [_reader_problem(text, exc)]
    except yaml.YAMLError as exc:
        return {}, [Problem(None, None, "", f"YAML error: {exc}")]
    marks: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []
    if root is not None:
        _walk(root, (), marks, problems)
    return marks, problems


def _read_text(path: Path) -> str:
    """The file's text; a file that is not UTF-8 is a ``YAMLDAGError`` at its first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(data[: exc.start].decode("utf-8"))
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start or continue a character"
        raise YAMLDAGError(path, [Problem(line, column, "", message)]) from None


def _line_column(before: str) -> tuple[int, int]:
    """The line and column (from 1) just after ``before``, the text that precedes a position."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def _too_deep(text: str) -> Problem:
    """Where a file nests too deeply: the line that opens the most brackets or is most indented."""
    depth, deepest, where = 0, -1, 1
    for number, line in enumerate(text.splitlines(), start=1):
        indent = len(line) - len(line.lstrip(" -"))
        for char in line:
            depth += (char in "[{") - (char in "]}")
            if depth + indent > deepest:
                deepest, where = depth + indent, number
    return Problem(where, 1, "", "nested too deeply to read (a DAG file needs a few levels)")


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not accept (a control character), where it is."""
    line, column = _line_column(text[: exc.position])
    return Problem(
        line, column, "", f"YAML syntax error: character {exc.character:#06x} is not allowed"
    )


def _walk(
    node: yaml.Node, loc: Loc, marks: dict[Loc, tuple[int, int]], problems: list[Problem]
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):  # ``? [a, b]``: YAML allows, we cannot
                problems.append(
                    Problem(*position, _dotted(loc), "a key must be a name, not a list or mapping")
                )
                continue
            key = key_node.value
            child = (*loc, key)
            if child in marks:
                line = marks[child][0]
                problems.append(
                    Problem(*position, _dotted(child), f"duplicate key (first at line {line})")
                )
                continue
            marks[child] = position
            _walk(value_node, child, marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, child, marks, problems)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Where:
    """Turns a YAML path into a ``Problem`` at the line of the deepest key of it that the file has."""

    def __init__(self, marks: Mapping[Loc, tuple[int, int]]) -> None:
        self._marks = marks

    def problem(self, loc: Loc, message: str) -> Problem:
        for end in range(len(loc), 0, -1):
            position = self._marks.get(loc[:end])
            if position is not None:
                return Problem(*position, _dotted(loc), message)
        return Problem(1, 1, _dotted(loc), message)


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


# -- stage 2: messages for the models' errors ------------------------------------------------------

_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "missing": "required",
}


def _message(error: Mapping[str, Any]) -> str:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _keys_at(loc[:-1])
        hint = _did_you_mean(str(loc[-1]), known)
        listing = f" (known: {', '.join(known)})" if known else ""
        return f"unknown key {loc[-1]!r}{hint or listing}"
    if kind in ("model_type", "model_attributes_type"):
        keys = _keys_at(loc)
        return f"must be a mapping (keys: {', '.join(keys)})" if keys else "must be a mapping"
    if kind == "literal_error":
        return f"must be one of: {ctx.get('expected', '')}".replace("'", "")
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} items"
    for bound, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx and kind.startswith(("greater", "less")):
            return f"must be {word} {ctx[bound]}"
    if kind == "string_pattern_mismatch" and loc[-1:] == ("call",):
        return "must be 'module:function' (e.g. 'pipelines.steps:load')"
    if kind == "string_pattern_mismatch" and loc[-1:] == ("group",):
        return "must be names of letters, digits, '_' or '-' joined by '.' (e.g. 'load.eu')"
    if kind == "string_pattern_mismatch" and loc[-1:] == ("dag_id",):
        return "must not contain '/'"
    message = str(error["msg"])
    return message[0].lower() + message[1:] if message else kind


def _keys_at(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts (for "unknown key" hints)."""
    current: Any = DagSpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or name): f for name, f in current.model_fields.items()}
            if part not in fields:
                return []
            current = fields[str(part)].annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- stage 3: meaning, and compiling ----------------------------------------------------------------

_TEMPLATE_MARK = re.compile(r"\{\{|\{%|\{#")


class _Compiler:
    """Checks what the models cannot (imports, dependencies, templates, triggers) on the parts of a
    file that are well-formed, and builds the ``DAG`` when nothing is wrong."""

    def __init__(
        self, file: Path, where: _Where, task_ids: list[str], defaults: TaskOptionsSpec
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
        return _did_you_mean(name, self.task_ids)

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
                if not _TEMPLATE_MARK.search(text):
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
                hint = _did_you_mean(name, parameters) or f" (it takes {', '.join(parameters)})"
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
            hint = _did_you_mean(name, functions)
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
            if not _TEMPLATE_MARK.search(value):
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
    return (text for _, text in _strings((), value) if _TEMPLATE_MARK.search(text))


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


def yaml_files(folder: Path) -> Iterator[Path]:
    """The YAML DAG files under ``folder`` (names starting with ``_`` or ``.`` left out)."""
    for suffix in YAML_SUFFIXES:
        for file in folder.rglob(f"*{suffix}"):
            if not file.name.startswith(("_", ".")):
                yield file
