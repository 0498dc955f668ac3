"""Mapped tasks and task groups as the pages show them: a mapped task's instances and their state
counts, a group's tasks and theirs, the worst state of a mix, and the graph with some groups
collapsed into one node each. Pure: a run (or only its states) in, plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..dag import DAG
from ..models import Run
from ..run_state import split_instance_id

# Worst first: the state a mix is coloured by (a failed instance turns its task's node red).
SEVERITY = (
    "failed",
    "upstream_failed",
    "cancelled",
    "up_for_retry",
    "paused",
    "running",
    "queued",
    "pending",
    "skipped",
    "success",
)
SYMBOLS = {
    "success": "✓",
    "running": "⟳",
    "failed": "✗",
    "queued": "…",
    "pending": "○",
    "up_for_retry": "↻",
    "upstream_failed": "⊘",
    "skipped": "⤼",
    "cancelled": "⊗",
    "paused": "⏸",
}
TIMES = "\u00d7"  # the multiplication sign of "load x200"
AUTO_COLLAPSE_OVER = 10  # a DAG with more tasks than this shows its top-level groups collapsed


def instances_by_task(task_ids: Iterable[str]) -> dict[str, list[str]]:
    """The instance ids (``load[0]``, ...) of each mapped task among ``task_ids``, by index."""
    found: dict[str, list[tuple[int, str]]] = {}
    for tid in task_ids:
        base, index = split_instance_id(tid)
        if index >= 0:
            found.setdefault(base, []).append((index, tid))
    return {base: [tid for _, tid in sorted(items)] for base, items in found.items()}


def is_instance(task_id: str) -> bool:
    return split_instance_id(task_id)[1] >= 0


def state_counts(states: Iterable[str]) -> dict[str, int]:
    """How many of each state, worst first (only the states present)."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return {s: counts[s] for s in sorted(counts, key=_rank)}


def worst_state(counts: Mapping[str, int]) -> str | None:
    present = [s for s, n in counts.items() if n]
    return min(present, key=_rank) if present else None


def mix_text(counts: Mapping[str, int]) -> str:
    """``180 ✓ 15 ⟳ 5 ✗``: the counts, worst last, as the node's second line."""
    ordered = sorted((s for s, n in counts.items() if n), key=_rank, reverse=True)
    return " ".join(f"{counts[s]} {SYMBOLS.get(s, s)}" for s in ordered)


def mix_words(counts: Mapping[str, int]) -> str:
    """``180 success, 15 running, 5 failed`` (hover text, the timeline)."""
    ordered = sorted((s for s, n in counts.items() if n), key=_rank, reverse=True)
    return ", ".join(f"{counts[s]} {s}" for s in ordered)


def _rank(state: str) -> int:
    return SEVERITY.index(state) if state in SEVERITY else len(SEVERITY)


@dataclass(frozen=True, slots=True)
class MappedSummary:
    """A mapped task's instances as the run page and the API show them."""

    task_id: str
    instances: tuple[str, ...]
    counts: dict[str, int]

    @property
    def count(self) -> int:
        return len(self.instances)

    @property
    def worst(self) -> str | None:
        return worst_state(self.counts)


def mapped_summaries(run: Run, dag: DAG | None) -> dict[str, MappedSummary]:
    """Every mapped task of the run (by the DAG, or by its stored instances when the DAG is gone),
    with its instances and their state counts; a mapped task not yet expanded has none."""
    by_task = instances_by_task(run.tasks)
    mapped = {t for t, n in dag.tasks.items() if n.mapped} if dag is not None else set()
    out: dict[str, MappedSummary] = {}
    for tid in sorted(mapped | set(by_task)):
        ids = tuple(by_task.get(tid, ()))
        counts = state_counts(run.tasks[i].state.value for i in ids)
        out[tid] = MappedSummary(tid, ids, counts)
    return out


# -- groups -------------------------------------------------------------------------------------------


def group_chain(group: str | None) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]`` (the group and every group it is nested in)."""
    if not group:
        return []
    parts = group.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def groups_of(dag: DAG) -> dict[str, list[str]]:
    """Every group (nested ones too) with all its tasks, in DAG order."""
    out: dict[str, list[str]] = {}
    for tid, node in dag.tasks.items():
        for gid in group_chain(node.group):
            out.setdefault(gid, []).append(tid)
    return out


def default_collapsed(dag: DAG) -> frozenset[str]:
    """Top-level groups start collapsed in a DAG of more than ``AUTO_COLLAPSE_OVER`` tasks."""
    if len(dag.tasks) <= AUTO_COLLAPSE_OVER:
        return frozenset()
    return frozenset(g for g in groups_of(dag) if "." not in g)


def parse_collapsed(raw: str | None, dag: DAG) -> frozenset[str]:
    """The ``?collapsed=a,b`` of a graph request (unknown names dropped); absent: the default."""
    if raw is None:
        return default_collapsed(dag)
    known = groups_of(dag)
    return frozenset(g for g in raw.split(",") if g in known)


def group_node_id(group: str) -> str:
    """The id of a collapsed group's node in a laid-out graph (never a task id: see ``view_of``)."""
    return f"{group}.*"


@dataclass(frozen=True, slots=True)
class GraphView:
    """The graph to lay out with some groups collapsed: ``upstream`` over visible nodes (tasks
    and collapsed groups), which node stands for each task, and the expanded groups' members."""

    upstream: dict[str, list[str]]
    node_of: dict[str, str]
    collapsed: dict[str, str]  # node id -> group id, for the collapsed groups' nodes
    expanded: dict[str, list[str]]  # group id -> its visible nodes (tasks and collapsed subgroups)
    group_of: dict[str, str | None]  # visible node -> the innermost expanded group holding it


def view_of(
    tasks: Mapping[str, Sequence[str]],
    groups: Mapping[str, str | None],
    collapsed: Iterable[str] = (),
) -> GraphView:
    """``tasks`` (``{task_id: upstream}``) with each collapsed group drawn as one node.

    A task inside several collapsed groups is drawn by the outermost one. Edges between two
    tasks of the same collapsed group disappear; edges into and out of it join on its node
    (once each)."""
    shut = set(collapsed)
    node_of: dict[str, str] = {}
    collapsed_nodes: dict[str, str] = {}
    owner: dict[str, str | None] = {}
    for tid in tasks:
        chain = group_chain(groups.get(tid))
        outer = next((g for g in chain if g in shut), None)
        if outer is not None and group_node_id(outer) not in tasks:
            node = group_node_id(outer)
            collapsed_nodes[node] = outer
            open_chain = chain[: chain.index(outer)]
        else:
            node, open_chain = tid, [g for g in chain if g not in shut] if outer is None else chain
        node_of[tid] = node
        owner.setdefault(node, open_chain[-1] if open_chain else None)
    upstream: dict[str, list[str]] = {}
    for tid, ups in tasks.items():
        node = node_of[tid]
        joined = upstream.setdefault(node, [])
        for up in ups:
            source = node_of.get(up, up)
            if source != node and source not in joined:
                joined.append(source)
    expanded: dict[str, list[str]] = {}
    for node, gid in owner.items():
        for g in group_chain(gid):
            expanded.setdefault(g, []).append(node)
    return GraphView(upstream, node_of, collapsed_nodes, expanded, owner)


__all__ = [
    "AUTO_COLLAPSE_OVER",
    "SEVERITY",
    "SYMBOLS",
    "TIMES",
    "GraphView",
    "MappedSummary",
    "default_collapsed",
    "group_chain",
    "group_node_id",
    "groups_of",
    "instances_by_task",
    "is_instance",
    "mapped_summaries",
    "mix_text",
    "mix_words",
    "parse_collapsed",
    "state_counts",
    "view_of",
    "worst_state",
]
