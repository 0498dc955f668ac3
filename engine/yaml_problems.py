"""Stages 1 and 2 of reading a YAML DAG file: the YAML itself (syntax, duplicate keys, where each
key is) and the words for the shape errors of the pydantic models (``engine.yaml_spec``). Every
problem is a ``Problem`` with its line, column and YAML path; ``YAMLDAGError`` lists them all."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from .errors import DAGError
from .yaml_spec import DagSpec

Loc = tuple[str | int, ...]


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


# -- stage 1: YAML and positions --------------------------------------------------------------------


def positions(text: str) -> tuple[dict[Loc, tuple[int, int]], list[Problem]]:
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


def read_text(path: Path) -> str:
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


def too_deep(text: str) -> Problem:
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
                    Problem(*position, dotted(loc), "a key must be a name, not a list or mapping")
                )
                continue
            key = key_node.value
            child = (*loc, key)
            if child in marks:
                line = marks[child][0]
                problems.append(
                    Problem(*position, dotted(child), f"duplicate key (first at line {line})")
                )
                continue
            marks[child] = position
            _walk(value_node, child, marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, child, marks, problems)


def dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Where:
    """Turns a YAML path into a ``Problem`` at the line of the deepest key of it that the file has."""

    def __init__(self, marks: Mapping[Loc, tuple[int, int]]) -> None:
        self._marks = marks

    def problem(self, loc: Loc, message: str) -> Problem:
        for end in range(len(loc), 0, -1):
            position = self._marks.get(loc[:end])
            if position is not None:
                return Problem(*position, dotted(loc), message)
        return Problem(1, 1, dotted(loc), message)


def in_file_order(problems: list[Problem]) -> list[Problem]:
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


def message_for(error: Mapping[str, Any]) -> str:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _keys_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), known)
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


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
