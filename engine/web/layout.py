"""A DAG drawn as layers: pure layout (positions in, nothing else) and its SVG.

Layered (Sugiyama-style) layout, small enough to read:

1. **Layers** by longest path from the roots (a task sits one column right of its deepest upstream).
2. **Dummy points** on edges that span several layers, one per skipped layer, so a long edge gets its
   own slot in each column it crosses and never runs through a node.
3. **Order** within each layer by the barycenter heuristic (a few down and up sweeps, stable sorts,
   the DAG's own order as the starting point), which removes most edge crossings.
4. **Coordinates**: columns left to right, each column's slots stacked and centred vertically.

Task groups (``groups=``, each node's innermost group) change two steps: within a column a group's
nodes stay together (nested groups inside theirs), and the gaps between groups leave room for each
group's box (``GraphLayout.clusters``, its title on top). A collapsed group is just a node here; the
caller (``engine.web.graph``) builds that graph.

No I/O and no clock: ``layout_graph`` takes the graph as ``{task_id: upstream ids}`` and returns a
``GraphLayout``; ``graph_svg`` turns that and the tasks' states into SVG (template ``graph.svg``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from .render import render

NODE_HEIGHT = 38.0
DUMMY_HEIGHT = 6.0
ROW_GAP = 16.0
LAYER_GAP = 64.0
MARGIN = 12.0
CHAR_WIDTH = 7.4
STATE_LINE_WIDTH = 168.0
MAX_LABEL = 28
CLUSTER_PAD = 10.0  # a group's box around its nodes, on each side
CLUSTER_TITLE = 18.0  # and above them, for its title
_SWEEPS = 4

Slot = str | tuple[str, str, int]  # a task, or a dummy point (source, target, layer) of a long edge


@dataclass(frozen=True, slots=True)
class NodeBox:
    """A task's box: top-left corner, size, column (``layer``) and row within the column."""

    task_id: str
    layer: int
    row: int
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True, slots=True)
class EdgePath:
    """An edge as a polyline: the source's right side, then two points per layer it crosses
    (entering and leaving that column at its dummy slot), then the target's left side."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Cluster:
    """An expanded group's box around its nodes (and its nested groups' boxes)."""

    group: str
    depth: int  # 0 for a top-level group
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class GraphLayout:
    nodes: dict[str, NodeBox]
    edges: tuple[EdgePath, ...]
    layers: tuple[tuple[str, ...], ...]
    width: float
    height: float
    clusters: tuple[Cluster, ...] = ()


def layers_of(upstream: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tasks grouped by depth (longest path from a root), each layer in the mapping's order.

    Raises ``ValueError`` for an upstream id that is not a task, or a cycle."""
    for tid, ups in upstream.items():
        for up in ups:
            if up not in upstream:
                raise ValueError(f"task {tid!r} names unknown upstream {up!r}")
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(tid: str) -> int:
        if tid in depth:
            return depth[tid]
        if tid in visiting:
            raise ValueError(f"cycle through {tid!r}")
        visiting.add(tid)
        d = 1 + max((visit(up) for up in upstream[tid]), default=-1)
        visiting.discard(tid)
        depth[tid] = d
        return d

    for tid in upstream:
        visit(tid)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for tid in upstream:
        layers[depth[tid]].append(tid)
    return layers


def layout_graph(
    upstream: Mapping[str, Sequence[str]],
    *,
    node_height: float = NODE_HEIGHT,
    layer_gap: float = LAYER_GAP,
    row_gap: float = ROW_GAP,
    margin: float = MARGIN,
    groups: Mapping[str, str | None] | None = None,
) -> GraphLayout:
    """Place every task of the graph ``{task_id: upstream ids}``; see the module docstring.

    ``groups``: the innermost expanded group of each node (``a.b`` for a group nested in ``a``);
    nodes without one, or all of them when it is None, belong to no group."""
    chains = {n: _chain((groups or {}).get(n)) for n in upstream}
    depth_max = max((len(c) for c in chains.values()), default=0)
    margin += CLUSTER_PAD * depth_max
    layers = layers_of(upstream)
    depth = {tid: i for i, layer in enumerate(layers) for tid in layer}
    width = node_width(upstream)

    # Columns hold real tasks and dummy slots (one per long edge per crossed layer).
    columns: list[list[Slot]] = [list(layer) for layer in layers]
    links: dict[Slot, list[Slot]] = {}
    edge_chains: dict[tuple[str, str], list[Slot]] = {}

    def link(a: Slot, b: Slot) -> None:
        links.setdefault(a, []).append(b)
        links.setdefault(b, []).append(a)

    for tid, ups in upstream.items():
        for up in dict.fromkeys(ups):
            chain: list[Slot] = [up]
            for layer in range(depth[up] + 1, depth[tid]):
                dummy = (up, tid, layer)
                columns[layer].append(dummy)
                chain.append(dummy)
            chain.append(tid)
            for a, b in itertools.pairwise(chain):
                link(a, b)
            edge_chains[(up, tid)] = chain

    def chain_of(item: Slot) -> tuple[str, ...]:
        return chains[item] if isinstance(item, str) else ()

    _order_columns(columns, links, chain_of if depth_max else None)

    def slot_height(item: Slot) -> float:
        return node_height if isinstance(item, str) else DUMMY_HEIGHT

    def gaps(col: list[Slot]) -> list[float]:
        """The space above each slot: the row gap, plus room for the group boxes that end above
        it and start at it (a title for each one that starts)."""
        out = []
        prev: tuple[str, ...] = ()
        for i, item in enumerate(col):
            here = chain_of(item)
            common = _common(prev, here)
            closing, opening = len(prev) - common, len(here) - common
            out.append(
                (row_gap if i else 0.0)
                + closing * CLUSTER_PAD
                + opening * (CLUSTER_PAD + CLUSTER_TITLE)
            )
            prev = here
        return out

    column_gaps = [gaps(col) for col in columns]
    heights = [
        sum(slot_height(i) for i in col)
        + sum(column_gaps[li])
        + CLUSTER_PAD * len(chain_of(col[-1]) if col else ())
        for li, col in enumerate(columns)
    ]
    total_height = max(heights, default=0.0)
    boxes: dict[Slot, NodeBox] = {}
    for li, col in enumerate(columns):
        x = margin + li * (width + layer_gap)
        y = margin + (total_height - heights[li]) / 2
        for row, item in enumerate(col):
            y += column_gaps[li][row]
            h = slot_height(item)
            name = item if isinstance(item, str) else f"{item[0]}->{item[1]}@{item[2]}"
            boxes[item] = NodeBox(name, li, row, x, y, width, h)
            y += h

    edges: list[EdgePath] = []
    for (up, tid), chain in edge_chains.items():
        src, dst = boxes[up], boxes[tid]
        points: list[tuple[float, float]] = [(src.right, src.cy)]
        for hop in chain[1:-1]:
            box = boxes[hop]
            points += [(box.x, box.cy), (box.right, box.cy)]
        points.append((dst.x, dst.cy))
        edges.append(EdgePath(up, tid, tuple(points)))

    nodes = {item: box for item, box in boxes.items() if isinstance(item, str)}
    count = len(columns)
    return GraphLayout(
        nodes=nodes,
        edges=tuple(edges),
        layers=tuple(tuple(layer) for layer in layers),
        width=2 * margin + count * width + max(count - 1, 0) * layer_gap,
        height=2 * margin + total_height,
        clusters=_clusters(nodes, chains),
    )


def _chain(group: str | None) -> tuple[str, ...]:
    """``a.b`` -> ``("a", "a.b")``: the group and those it is nested in, outermost first."""
    if not group:
        return ()
    parts = group.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _common(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _clusters(
    nodes: Mapping[str, NodeBox], chains: Mapping[str, tuple[str, ...]]
) -> tuple[Cluster, ...]:
    """Each group's box: its nodes' boxes, each grown by one padding per level of nesting between
    the node and the group (and a title's height on top per level)."""
    spans: dict[str, list[float]] = {}
    for tid, box in nodes.items():
        chain = chains.get(tid, ())
        for level, group in enumerate(chain):
            levels = len(chain) - level  # this group and the ones nested in it, around the node
            x0 = box.x - CLUSTER_PAD * levels
            y0 = box.y - (CLUSTER_PAD + CLUSTER_TITLE) * levels
            x1 = box.right + CLUSTER_PAD * levels
            y1 = box.bottom + CLUSTER_PAD * levels
            span = spans.setdefault(group, [x0, y0, x1, y1])
            span[:] = [min(span[0], x0), min(span[1], y0), max(span[2], x1), max(span[3], y1)]
    return tuple(
        Cluster(group, group.count("."), x0, y0, x1 - x0, y1 - y0)
        for group, (x0, y0, x1, y1) in sorted(spans.items(), key=lambda kv: kv[0].count("."))
    )


def node_width(upstream: Mapping[str, Sequence[str]]) -> float:
    """One width for every box: enough for the longest (truncated) label and for the state line
    (``upstream_failed · try 2``), within bounds."""
    longest = max((len(label_of(t)) for t in upstream), default=0)
    return max(STATE_LINE_WIDTH, min(240.0, longest * CHAR_WIDTH + 28))


def label_of(task_id: str) -> str:
    return task_id if len(task_id) <= MAX_LABEL else task_id[: MAX_LABEL - 1] + "…"


def _order_columns(
    columns: list[list[Slot]],
    links: Mapping[Slot, Sequence[Slot]],
    chain_of: Callable[[Slot], tuple[str, ...]] | None = None,
) -> None:
    """Reorder each column in place by the mean row of its neighbours in the adjacent column
    (then, with ``chain_of``, each group's slots together where its first one is)."""

    def sweep(indices: range, neighbour_offset: int) -> None:
        for li in indices:
            ref = columns[li + neighbour_offset]
            pos = {item: i for i, item in enumerate(ref)}
            current = {item: i for i, item in enumerate(columns[li])}

            keys = {item: _barycenter(item, pos, current, links) for item in columns[li]}
            columns[li].sort(key=keys.__getitem__)
            if chain_of is not None:
                _keep_groups_together(columns[li], chain_of)

    for _ in range(_SWEEPS):
        sweep(range(1, len(columns)), -1)
        sweep(range(len(columns) - 2, -1, -1), +1)
    sweep(range(1, len(columns)), -1)


def _keep_groups_together(column: list[Slot], chain_of: Callable[[Slot], tuple[str, ...]]) -> None:
    """Stable regrouping: a group's slots move up to where its first slot is, nested groups
    likewise inside theirs; slots outside groups keep their place."""
    first: dict[str, int] = {}
    for i, item in enumerate(column):
        for group in chain_of(item):
            first.setdefault(group, i)
    keys = {item: (*(first[g] for g in chain_of(item)), i) for i, item in enumerate(column)}
    column.sort(key=keys.__getitem__)


def _barycenter(
    item: Slot,
    pos: Mapping[Slot, int],
    current: Mapping[Slot, int],
    links: Mapping[Slot, Sequence[Slot]],
) -> float:
    near = [pos[n] for n in links.get(item, ()) if n in pos]
    return sum(near) / len(near) if near else float(current[item])


def crossings(layout: GraphLayout) -> int:
    """How many pairs of edge segments between the same two columns cross (for tests and tuning)."""
    segments: dict[float, list[tuple[float, float]]] = {}
    for edge in layout.edges:
        for (x1, y1), (x2, y2) in zip(edge.points, edge.points[1:], strict=False):
            if x2 > x1:
                segments.setdefault(round(x1, 3), []).append((y1, y2))
    count = 0
    for segs in segments.values():
        for i, (a1, a2) in enumerate(segs):
            for b1, b2 in segs[i + 1 :]:
                if (a1 - b1) * (a2 - b2) < 0:
                    count += 1
    return count


def edge_path_d(points: Sequence[tuple[float, float]]) -> str:
    """SVG path data: straight inside a column, an S-curve between columns."""
    (x0, y0), *rest = points
    parts = [f"M{x0:.1f},{y0:.1f}"]
    prev = (x0, y0)
    for x, y in rest:
        px, py = prev
        if py == y:
            parts.append(f"L{x:.1f},{y:.1f}")
        else:
            mid = (px + x) / 2
            parts.append(f"C{mid:.1f},{py:.1f} {mid:.1f},{y:.1f} {x:.1f},{y:.1f}")
        prev = (x, y)
    return " ".join(parts)


def graph_svg(
    layout: GraphLayout,
    states: Mapping[str, str] | None = None,
    *,
    notes: Mapping[str, str] | None = None,
    link_prefix: str | None = "#task-",
    labels: Mapping[str, str] | None = None,
    mixes: Mapping[str, Mapping[str, int]] | None = None,
    group_nodes: Mapping[str, str] | None = None,
    collapsed: Sequence[str] = (),
    graph_url: str | None = None,
) -> Markup:
    """The laid-out graph as an inline SVG element (template ``graph.svg``).

    Each task is a ``<g class="node st-STATE" data-task=ID>`` (the page's script changes the class
    as the run progresses); ``notes`` is a short second line per task (e.g. ``try 2``); with
    ``link_prefix`` a node links to ``link_prefix + task_id`` (the task's panel on the run page).

    ``labels`` replaces a node's first line (``load x200``); ``mixes`` draws a bar of state counts
    along a node's foot (a mapped task's instances, a collapsed group's tasks); ``group_nodes``
    marks the nodes that are collapsed groups (node id -> group id): they expand on a click, as
    the clusters' titles collapse theirs (``collapsed`` and ``graph_url`` tell the script what
    is collapsed and where to fetch the graph drawn otherwise)."""
    states = states or {}
    notes = notes or {}
    labels = labels or {}
    mixes = mixes or {}
    group_nodes = group_nodes or {}
    edges = [
        {"d": edge_path_d(e.points), "source": e.source, "target": e.target} for e in layout.edges
    ]
    nodes = [
        {
            "tid": tid,
            "box": box,
            "label": _clip(labels[tid]) if tid in labels else label_of(tid),
            "state": states.get(tid, "none"),
            "note": notes.get(tid, states.get(tid, "none")),
            "group": group_nodes.get(tid),
            "mapped": tid in mixes and tid not in group_nodes,
            "mix": mix_bar(mixes[tid], box) if tid in mixes else [],
            "link": None if link_prefix is None or tid in group_nodes else link_prefix + tid,
        }
        for tid, box in layout.nodes.items()
    ]
    clusters = [
        {"c": c, "title": f"▾ {c.group.rpartition('.')[2]}", "full": c.group}
        for c in layout.clusters
    ]
    return render(
        "graph.svg",
        width=layout.width,
        height=layout.height,
        edges=edges,
        nodes=nodes,
        clusters=clusters,
        collapsed=",".join(sorted(collapsed)),
        graph_url=graph_url,
    )


def mix_bar(counts: Mapping[str, int], box: NodeBox) -> list[dict[str, object]]:
    """A node's state bar: one segment per state, as wide as its share of the counts."""
    total = sum(counts.values())
    if not total:
        return []
    x, inner = box.x + 6, box.width - 12
    out: list[dict[str, object]] = []
    for state, n in counts.items():
        if n:
            out.append({"state": state, "n": n, "x": x, "width": inner * n / total})
            x += inner * n / total
    return out


def _clip(label: str) -> str:
    return label if len(label) <= MAX_LABEL + 8 else label[: MAX_LABEL + 7] + "…"


__all__ = [
    "Cluster",
    "EdgePath",
    "GraphLayout",
    "NodeBox",
    "crossings",
    "edge_path_d",
    "graph_svg",
    "label_of",
    "layers_of",
    "layout_graph",
    "mix_bar",
]
