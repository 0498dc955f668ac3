"""YAML DAGs: read a file, report every problem with its line, compile a valid one into a ``DAG``.

A file goes through three stages, each reporting all it finds (never only the first):

1. YAML: syntax errors and duplicate keys, with the line and column of the problem;
2. shape: the pydantic models of ``engine.yaml_spec`` (types, bounds, unknown keys with "did you
   mean"), each error placed on the line of its key through the positions yaml's composer keeps;
3. meaning: unknown ``depends_on`` targets, cycles, ``call`` targets that do not import or do not
   take the given ``args``, templates that do not parse, triggers that do not build.

Stages 1 and 2 live in ``engine.yaml_problems``, stage 3 in ``engine.yaml_compiler``. A valid file
compiles through the same ``DAGBuilder`` as a ``@dag`` function, so a YAML DAG is an
ordinary ``DAG`` for the engine, the UI, backfills and reruns. Strings in ``args``, ``shell`` and
``http`` are templates (``engine.templating``), rendered when the try starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from .dag import DAG
from .yaml_compiler import Compiler
from .yaml_problems import (
    Problem,
    Where,
    YAMLDAGError,
    in_file_order,
    message_for,
    positions,
    read_text,
    too_deep,
)
from .yaml_spec import GROUP_PATTERN, DagSpec, Spec, TaskOptionsSpec, TaskSpec, TriggerSpec

__all__ = ["YAML_SUFFIXES", "Problem", "YAMLDAGError", "load_yaml_dag", "yaml_files"]

YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml_dag(file: str | Path) -> DAG:
    """The ``DAG`` a YAML file defines; raises ``YAMLDAGError`` listing every problem."""
    path = Path(file)
    text = read_text(path)
    try:
        return _load_text(path, text)
    except RecursionError:  # nesting deeper than the parser or the models can recurse
        raise YAMLDAGError(path, [too_deep(text)]) from None


def _load_text(path: Path, text: str) -> DAG:
    marks, problems = positions(text)
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
    where = Where(marks)
    try:
        spec = DagSpec.model_validate(data)
    except ValidationError as exc:
        # report the shape errors, and what the parts that are well-formed get wrong too
        found = [where.problem(tuple(e["loc"]), message_for(e)) for e in exc.errors()]
        compiler = Compiler(path, where, _task_ids(data), _valid(TaskOptionsSpec, data, "defaults"))
        compiler.check(_valid_tasks(data), _valid_triggers(data))
        raise YAMLDAGError(path, in_file_order(found + compiler.problems)) from None
    compiler = Compiler(path, where, _task_ids(data), spec.defaults)
    builder, triggers = compiler.check(spec.tasks, dict(enumerate(spec.triggers)))
    dag = compiler.finish(spec, builder, triggers)
    if compiler.problems or dag is None:
        raise YAMLDAGError(path, in_file_order(compiler.problems))
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


def yaml_files(folder: Path) -> Iterator[Path]:
    """The YAML DAG files under ``folder`` (names starting with ``_`` or ``.`` left out)."""
    for suffix in YAML_SUFFIXES:
        for file in folder.rglob(f"*{suffix}"):
            if not file.name.startswith(("_", ".")):
                yield file
