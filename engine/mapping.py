"""Dynamic fan-out, pure: the instances of a mapped task (``process.map(files)``) once the lists it
maps over are known."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .dag_builder import Arg, TaskNode
from .errors import PodiumError
from .executor import resolve
from .run_state import instance_id
from .templating import Template, TemplateRenderError, render_map_source

DEFAULT_MAX_MAP_LENGTH = 10_000


class MapError(PodiumError):
    """A mapped task cannot be expanded: its input is not a list, lists differ in length, or it
    has more elements than ``max_map_length``."""


def instance_nodes(
    node: TaskNode,
    results: Mapping[str, bytes | None],
    params: Mapping[str, Any],
    max_length: int,
) -> list[TaskNode]:
    """One node per element of the mapped arguments (zipped), each bound to its element."""
    slots = [_slot(node, name) for name in node.mapped]
    lists: list[list[Any]] = []
    for name, (position, key) in zip(node.mapped, slots, strict=True):
        argument = node.args[position] if key is None else node.kwargs[key]
        value = resolve(argument.value, results, params)
        if isinstance(value, Template):  # a native template (YAML's map:): params and results
            try:
                value = render_map_source(value, params, results)
            except TemplateRenderError as exc:
                raise MapError(f"task {node.task_id!r} maps over {name!r}: {exc}") from None
        if not isinstance(value, (list, tuple)):
            raise MapError(
                f"task {node.task_id!r} maps over {name!r}, which is a "
                f"{type(value).__name__}, not a list"
            )
        lists.append(list(value))
    lengths = {len(v) for v in lists}
    if len(lengths) > 1:
        raise MapError(
            f"task {node.task_id!r} maps over lists of different lengths ({sorted(lengths)})"
        )
    count = lengths.pop() if lengths else 0
    if count > max_length:
        raise MapError(
            f"task {node.task_id!r} would have {count:,} instances, over max_map_length="
            f"{max_length:,} (raise Engine(max_map_length=...) or map over fewer, larger chunks)"
        )
    nodes = []
    for index in range(count):
        args = list(node.args)
        kwargs = dict(node.kwargs)
        for (position, key), values in zip(slots, lists, strict=True):
            if key is None:
                args[position] = Arg(values[index], False)
            else:
                kwargs[key] = Arg(values[index], False)
        nodes.append(
            dataclasses.replace(
                node,
                task_id=instance_id(node.task_id, index),
                args=tuple(args),
                kwargs=kwargs,
                mapped=(),
            )
        )
    return nodes


def _slot(node: TaskNode, name: str) -> tuple[int, str | None]:
    """Where the mapped parameter ``name`` is bound: ``(position in args, None)`` or ``(0, key)``."""
    if name in node.kwargs:
        return 0, name
    return list(node.definition.signature.parameters).index(name), None
