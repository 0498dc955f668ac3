"""Templated values: strings rendered with Jinja2 when a try starts.

A task argument is a template only when it says so: ``Template("s3://landing/{{ params.day }}/")``
(anywhere inside the arguments, nested in lists and dicts too). A plain string is never rendered,
whatever it contains or ends with. YAML DAGs mark their fields the same way (``engine.yaml_dags``).

Rendering uses an ``ImmutableSandboxedEnvironment`` with strict undefined names and this context:

========================  ========================================================================
``params``                the run's params (after defaults and coercion)
``run_id``, ``dag_id``,   the try's identity
``task_id``,
``try_number``
``logical_date``          an aware UTC ``datetime``, or None for a run that has none (manual runs)
``event``                 the triggering event (a mapping; empty for a run no event started)
``ds``, ``ds_nodash``     the logical date as ``2026-11-25`` / ``20261125`` (UTC)
``tasks``                 upstream results: ``tasks.extract.result`` (``tasks['load.clean'].result``
                          for a task in a group); naming one makes it a data edge
========================  ========================================================================

``Template(source, native=True)`` for a source that is one expression (``"{{ tasks.x.result }}"``)
renders to the expression's value with its type when JSON has one (a list stays a list, a number a
number; a datetime becomes text); YAML DAGs use it for ``args``.

Filters: ``ds`` and ``ds_nodash`` (of a date, a datetime or an ISO string) and ``add_days(n)``
(the same kind of value, ``n`` days later; negative ``n`` for earlier):
``{{ logical_date | add_days(-1) | ds }}``, ``{{ params.day | add_days(1) }}``.

A name that is not there fails the try before the task's body runs, with a message naming the task,
the field and the missing name: ``task 'load' field 'path': 'params' has no attribute 'dy' (did you
mean 'day'?)``. A template that does not parse is a ``DAGError`` when the DAG is defined.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from . import serialization
from .errors import DAGError, PodiumError, describe_exception

if TYPE_CHECKING:
    from .context import Context
    from .dag_builder import TaskNode

CONTEXT_NAMES = (
    "params",
    "run_id",
    "dag_id",
    "task_id",
    "try_number",
    "logical_date",
    "event",
    "ds",
    "ds_nodash",
    "tasks",
)


class TemplateError(DAGError):
    """A template does not parse (raised when the DAG is defined)."""


class TemplateRenderError(PodiumError):
    """A template could not be rendered when the try started: a missing name, a bad date."""


class _Named(dict[str, Any]):
    """A mapping of the context that knows its own name, so a missing key names where it was missing."""

    __slots__ = (
        "_podium_note",
        "_podium_path",
    )  # underscored: the sandbox hides them from templates

    def __init__(self, data: Mapping[str, Any], path: str, note: str = "") -> None:
        super().__init__(data)
        self._podium_path = path
        self._podium_note = note


class _Missing(StrictUndefined):
    """Undefined names fail at once, with a message that says which name was missing where."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name, owner = self._undefined_name, self._undefined_obj
        if self._undefined_hint:
            return self._undefined_hint
        if owner is missing:
            return f"{name!r} is undefined{_did_you_mean(name, CONTEXT_NAMES)}"
        if isinstance(owner, _Named):
            text = f"{owner._podium_path!r} has no attribute {name!r}{_did_you_mean(name, owner)}"
            return f"{text} ({owner._podium_note})" if owner._podium_note else text
        return f"{type(owner).__name__} value has no attribute {name!r}"


def _did_you_mean(name: object, known: Sequence[str] | Mapping[str, Any]) -> str:
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _DateFilterError(ValueError):
    pass


def _as_date(value: Any, what: str) -> date:
    if isinstance(value, date):  # datetime is a date too
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            raise _DateFilterError(f"{what}: {value!r} is not an ISO date") from None
    if value is None:
        raise _DateFilterError(f"{what}: no date (this run has no logical_date)")
    raise _DateFilterError(f"{what}: expects a date, a datetime or an ISO string, got {value!r}")


def ds(value: Any) -> str:
    """``2026-11-25``: the date part of a date, datetime or ISO string."""
    day = _as_date(value, "ds")
    return (day.date() if isinstance(day, datetime) else day).isoformat()


def ds_nodash(value: Any) -> str:
    """``20261125``."""
    return ds(value).replace("-", "")


def add_days(value: Any, days: int) -> Any:
    """``value`` plus ``days`` days, of the same kind (a string in, an ISO string out)."""
    if not isinstance(days, int) or isinstance(days, bool):
        raise _DateFilterError(f"add_days: the number of days must be an integer, got {days!r}")
    moved = _as_date(value, "add_days") + timedelta(days=days)
    return moved.isoformat() if isinstance(value, str) else moved


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, where a context mapping's keys come before dict methods: ``params.items`` is the
    param named ``items`` when there is one."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Named) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment() -> _Environment:
    env = _Environment(undefined=_Missing, autoescape=False, keep_trailing_newline=True)
    env.filters.update(ds=ds, ds_nodash=ds_nodash, add_days=add_days)
    return env


ENVIRONMENT = _environment()


class Template:
    """A string rendered with Jinja2 when the try starts, e.g. ``Template("{{ params.day }}")``.

    Parsed when it is made, so a syntax error surfaces when the DAG is defined. ``native=True``: a
    source that is exactly one ``{{ expression }}`` renders to the expression's value (any type);
    other sources render to text either way. ``task_references``: the tasks whose results the
    template reads (``tasks.<id>.result``), which become data edges of the task that holds it.
    """

    __slots__ = ("_compiled", "_expression", "native", "source", "task_references")

    def __init__(self, source: str, *, native: bool = False) -> None:
        if not isinstance(source, str):
            raise TemplateError(f"Template takes a string, got {type(source).__name__}")
        self.source = source
        self.native = native
        try:
            tree = ENVIRONMENT.parse(source)
            self._compiled = ENVIRONMENT.from_string(tree)
            expression = single_expression(source) if native else None
            self._expression = (
                ENVIRONMENT.compile_expression(expression, undefined_to_none=False)
                if expression is not None
                else None
            )
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"invalid template {_short(source)}: {(exc.message or 'syntax error').rstrip('.')} "
                f"(template line {exc.lineno})"
            ) from None
        self.task_references = _task_references(tree)

    def render(self, context: Mapping[str, Any]) -> Any:
        """The rendered text, or for a native one-expression template its value; raises jinja2's
        errors (``render_arguments`` names the field)."""
        if self._expression is None:
            return self._compiled.render(context)
        value = self._expression(context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        value = _plain(value)
        # a value JSON cannot carry (a datetime) renders as text, as it would in a longer string
        return value if _is_json(value) else self._compiled.render(context)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Template)
            and other.source == self.source
            and other.native == self.native
        )

    def __hash__(self) -> int:
        return hash((Template, self.source, self.native))

    def __repr__(self) -> str:
        return f"Template({self.source!r}{', native=True' if self.native else ''})"


_ONE_EXPRESSION = re.compile(r"\A\{\{-?(?P<body>(?:(?!\{\{|\}\}|\{%|\{#).)*?)-?\}\}\Z", re.DOTALL)


def single_expression(source: str) -> str | None:
    """The expression of a source that is exactly one ``{{ ... }}``, else None."""
    found = _ONE_EXPRESSION.match(source.strip())
    return found.group("body").strip() if found else None


def _task_references(tree: nodes.Template) -> frozenset[str]:
    """The task ids named as ``tasks.<id>.result`` or ``tasks['<id>'].result`` in ``tree``."""
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        parts: list[str] = []
        current: nodes.Node = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            if isinstance(current, nodes.Getattr):
                parts.append(current.attr)
            elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
                parts.append(current.arg.value)
            else:
                parts.clear()
                break
            current = current.node
        if not (isinstance(current, nodes.Name) and current.name == "tasks" and parts):
            continue
        parts.reverse()  # from ``tasks`` outwards: ["load", "clean", "result", ...]
        if "result" in parts[1:]:
            found.add(".".join(parts[: parts.index("result", 1)]))
    return frozenset(found)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    """A rendered native value without the context's own mapping type (plain dicts and lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _short(text: str, limit: int = 60) -> str:
    value = repr(text)
    return value if len(value) <= limit else value[: limit - 4] + "...'"


def contains_template(value: Any) -> bool:
    """Whether ``value`` is or holds (in lists, tuples and dict values) a ``Template``."""
    if isinstance(value, Template):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains_template(v) for v in value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    return False


def render_context(ctx: Context, tasks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The names a template sees, from the try's ``Context``; ``tasks``: the upstream results it
    may read (``results_context``)."""
    logical_date = ctx.logical_date
    no_date = "this run has no logical_date (it was not started by a timer or a backfill)"
    values: dict[str, Any] = {
        "params": _named(ctx.params, "params"),
        "run_id": ctx.run_id,
        "dag_id": ctx.dag_id,
        "task_id": ctx.task_id,
        "try_number": ctx.try_number,
        "logical_date": logical_date,
        "event": _named(ctx.event or {}, "event", "" if ctx.event else "this run has no event"),
        "tasks": _Named(tasks or {}, "tasks"),
    }
    if logical_date is None:
        values["ds"] = _Missing(hint=f"'ds' is undefined: {no_date}", name="ds")
        values["ds_nodash"] = _Missing(hint=f"'ds_nodash' is undefined: {no_date}", name="ds")
    else:
        values["ds"] = ds(logical_date)
        values["ds_nodash"] = ds_nodash(logical_date)
    return values


def results_context(task_ids: Iterable[str], result_of: Callable[[str], Any]) -> dict[str, Any]:
    """``tasks`` for ``render_context``: ``{id: {"result": value}}`` for each of ``task_ids``, both
    under the full id (``tasks['load.clean']``) and nested by group (``tasks.load.clean``)."""
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for task_id in task_ids:
        entry = _named({"result": result_of(task_id)}, f"tasks.{task_id}")
        flat[task_id] = entry
        *groups, name = task_id.split(".")
        level, path = nested, "tasks"
        for group in groups:
            path = f"{path}.{group}"
            level = level.setdefault(group, _Named({}, path))
        level.setdefault(name, entry)
    return {**nested, **flat}


def stored_results(results: Mapping[str, bytes | None]) -> Callable[[str], Any]:
    """``result_of`` for ``results_context`` over a run's stored (JSON-encoded) results."""
    return lambda task_id: serialization.loads(results.get(task_id))


def _named(value: Any, path: str, note: str = "") -> Any:
    if isinstance(value, Mapping):
        return _Named({k: _named(v, f"{path}.{k}") for k, v in value.items()}, path, note)
    if isinstance(value, list):
        return [_named(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def render_arguments(
    node: TaskNode,
    args: list[Any],
    kwargs: dict[str, Any],
    ctx: Context,
    results: Mapping[str, bytes | None] | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` with every ``Template`` rendered; a failure names task and field.
    ``results``: the run's stored results, which templates naming ``tasks.<id>.result`` read."""
    context = render_context(ctx, results_context(_referenced(node), stored_results(results or {})))
    names = _positional_names(node.definition.signature, len(args))
    rendered_args = [
        _render(a, context, node.task_id, name) for a, name in zip(args, names, strict=True)
    ]
    rendered_kwargs = {k: _render(v, context, node.task_id, k) for k, v in kwargs.items()}
    return rendered_args, rendered_kwargs


def render_map_source(
    template: Template, params: Mapping[str, Any], results: Mapping[str, bytes | None]
) -> Any:
    """The value a mapped task maps over, from a template that reads ``params`` and ``tasks`` (the
    other names are not known yet when a mapped task expands)."""
    context = {
        "params": _named(params, "params"),
        "tasks": _Named(
            results_context(template.task_references, stored_results(results)), "tasks"
        ),
    }
    try:
        return template.render(context)
    except UndefinedError as exc:
        message = exc.message or "undefined name"
    except Exception as exc:  # a sandbox refusal or an error inside a filter
        message = describe_exception(exc)
    raise TemplateRenderError(f"{template.source!r}: {message}") from None


def _referenced(node: TaskNode) -> set[str]:
    """The tasks whose results ``node``'s templates read."""
    found: set[str] = set()
    for argument in (*node.args, *node.kwargs.values()):
        for _, template in _templates_in(argument.value, ""):
            found |= template.task_references
    return found


def _positional_names(signature: inspect.Signature, count: int) -> list[str]:
    names: list[str] = []
    for param in signature.parameters.values():
        if len(names) >= count:
            break
        if param.kind is param.VAR_POSITIONAL:
            names.extend(f"{param.name}[{i}]" for i in range(count - len(names)))
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            names.append(param.name)
    return names + [f"argument {i}" for i in range(len(names), count)]


def _render(value: Any, context: Mapping[str, Any], task_id: str, field: str) -> Any:
    if isinstance(value, Template):
        try:
            return value.render(context)
        except UndefinedError as exc:
            message = exc.message or "undefined name"
        except _DateFilterError as exc:
            message = str(exc)
        except Exception as exc:  # a sandbox refusal or an error inside a filter
            message = describe_exception(exc)
        raise TemplateRenderError(f"task {task_id!r} field {field!r}: {message}") from None
    if isinstance(value, list):
        return [_render(v, context, task_id, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_render(v, context, task_id, f"{field}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _render(v, context, task_id, f"{field}.{k}") for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class RenderedField:
    """One template of a task's arguments, rendered: its field (``path``, ``options.since``,
    ``argv[1]``) and the text, or the error the try would fail with."""

    field: str
    value: str | None = None
    error: str | None = None


def render_fields(
    node: TaskNode, ctx: Context, result_of: Callable[[str], Any] | None = None
) -> list[RenderedField]:
    """Every ``Template`` in ``node``'s arguments rendered on its own, in argument order; unlike
    ``render_arguments`` a failure does not stop the others (``podium render`` shows them all).
    ``result_of``: an upstream task's result (default: a placeholder naming it)."""
    context = render_context(
        ctx, results_context(_referenced(node), result_of or _result_placeholder)
    )
    names = _positional_names(node.definition.signature, len(node.args))
    values = [*zip(names, (a.value for a in node.args), strict=True)]
    values += [(name, a.value) for name, a in node.kwargs.items()]
    rendered: list[RenderedField] = []
    for name, value in values:
        for field, template in _templates_in(value, name):
            try:
                text = _render(template, context, node.task_id, field)
                rendered.append(RenderedField(field, text if isinstance(text, str) else repr(text)))
            except TemplateRenderError as exc:
                rendered.append(RenderedField(field, error=str(exc)))
    return rendered


def _result_placeholder(task_id: str) -> str:
    return f"<result of {task_id}>"


def _templates_in(value: Any, field: str) -> Iterator[tuple[str, Template]]:
    """The templates inside ``value`` with their field names, named as ``_render`` names them."""
    if isinstance(value, Template):
        yield field, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _templates_in(v, f"{field}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _templates_in(v, f"{field}.{k}")
