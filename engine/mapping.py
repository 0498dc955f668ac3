"""Dynamic fan-out, pure: the instances of a mapped task (``process.map(files)``) once the lists it
maps over are known."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .dag import Arg, TaskNode
from .errors import PodiumError
from .executor import resolve
from .run_state import instance_id

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
    lists: list[list[Any]] = []
    for position in node.mapped:
        value = resolve(node.args[position].value, results, params)
        if not isinstance(value, (list, tuple)):
            raise MapError(
                f"task {node.task_id!r} maps over argument {position + 1}, which is a "
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
        for position, values in zip(node.mapped, lists, strict=True):
            args[position] = Arg(values[index], False)
        nodes.append(
            dataclasses.replace(
                node, task_id=instance_id(node.task_id, index), args=tuple(args), mapped=()
            )
        )
    return nodes
