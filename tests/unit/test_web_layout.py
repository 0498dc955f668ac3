"""The web UI's pure parts: graph layout, its SVG, the Gantt bars, cron in words, wait reasons."""

from __future__ import annotations

import itertools
import re
from xml.etree import ElementTree

import pytest

import engine.web
from engine.models import Run, TaskInstance, TaskTry
from engine.states import RunState, TaskState
from engine.web.fanout import instances_by_task, mix_text, state_counts, view_of, worst_state
from engine.web.gantt import gantt_bars, gantt_svg, lanes_of, mapped_bar, nice_step
from engine.web.layout import Cluster, crossings, graph_svg, layers_of, layout_graph
from engine.web.status import Limits, waiting_reason
from engine.web.triggers import cron_in_words, source_prefix

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
# a wide, uneven graph: a long edge (a -> z) spans three layers
WIDE = {
    "a": [],
    "b": ["a"],
    "c": ["a"],
    "d": ["b"],
    "e": ["b", "c"],
    "f": ["d", "e"],
    "z": ["a", "f"],
    "solo": [],
}


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def test_layers_are_longest_path_depths() -> None:
    assert layers_of(DIAMOND) == [["a"], ["b", "c"], ["d"]]
    layers = layers_of(WIDE)
    depth = {t: i for i, layer in enumerate(layers) for t in layer}
    assert depth == {"a": 0, "solo": 0, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3, "z": 4}
    for tid, ups in WIDE.items():
        assert all(depth[u] < depth[tid] for u in ups)


def test_cycles_and_unknown_upstreams_are_rejected() -> None:
    with pytest.raises(ValueError, match="cycle"):
        layers_of({"a": ["b"], "b": ["a"]})
    with pytest.raises(ValueError, match="unknown upstream"):
        layers_of({"a": ["ghost"]})


@pytest.mark.parametrize("graph", [DIAMOND, WIDE, {"only": []}, {f"t{i}": [] for i in range(12)}])
def test_nodes_never_overlap_and_fit_the_canvas(graph: dict[str, list[str]]) -> None:
    layout = layout_graph(graph)
    assert set(layout.nodes) == set(graph)
    boxes = [(n.x, n.y, n.width, n.height) for n in layout.nodes.values()]
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)
    for x, y, w, h in boxes:
        assert 0 <= x and x + w <= layout.width and 0 <= y and y + h <= layout.height
    # columns go left to right by layer
    for n in layout.nodes.values():
        assert all(layout.nodes[u].right < n.x for u in graph[n.task_id])


def test_edges_run_from_source_right_side_to_target_left_side_around_nodes() -> None:
    layout = layout_graph(WIDE)
    pairs = {(e.source, e.target) for e in layout.edges}
    assert pairs == {(u, t) for t, ups in WIDE.items() for u in ups}
    for edge in layout.edges:
        src, dst = layout.nodes[edge.source], layout.nodes[edge.target]
        assert edge.points[0] == (src.right, src.cy)
        assert edge.points[-1] == (dst.x, dst.cy)
        xs = [p[0] for p in edge.points]
        assert xs == sorted(xs)  # always moving right
        # the points in between (dummy slots of a long edge) are never inside a task's box
        for px, py in edge.points[1:-1]:
            for node in layout.nodes.values():
                assert not (node.x < px < node.right and node.y <= py <= node.bottom)
    long_edge = next(e for e in layout.edges if (e.source, e.target) == ("a", "z"))
    assert len(long_edge.points) == 2 + 2 * 3  # through layers 1, 2 and 3


def test_barycenter_ordering_removes_avoidable_crossings() -> None:
    # in input order, a -> d and b -> c cross; reordering the second layer untangles them
    graph = {"a": [], "b": [], "c": ["b"], "d": ["a"]}
    layout = layout_graph(graph)
    assert crossings(layout) == 0
    assert layout.nodes["d"].y < layout.nodes["c"].y
    assert crossings(layout_graph(DIAMOND)) == 0


def test_graph_svg_has_one_node_per_task_with_its_state_and_escapes_ids() -> None:
    graph = {"extract": [], "<evil> & co": ["extract"]}
    svg = graph_svg(
        layout_graph(graph),
        {"extract": "success", "<evil> & co": "failed"},
        notes={"extract": "ok"},
    )
    root = ElementTree.fromstring(svg)  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = root.findall(".//s:g", ns)
    assert {n.get("data-task"): n.get("class") for n in nodes} == {
        "extract": "node st-success",
        "<evil> & co": "node st-failed",
    }
    assert len(root.findall(".//s:path[@class='edge']", ns)) == 1
    assert "<evil>" not in svg and "&lt;evil&gt; &amp; co" in svg


def _ti(task_id: str, state: TaskState, **kw: object) -> TaskInstance:
    return TaskInstance(task_id=task_id, state=state, try_number=kw.pop("try_number", 1), **kw)  # type: ignore[arg-type]


def test_gantt_shows_queue_wait_tries_and_retry_waits() -> None:
    now = 1000.0
    tasks = {
        "a": _ti(
            "a",
            TaskState.SUCCESS,
            try_number=2,
            queued_at=110.0,
            started_at=112.0,
            finished_at=120.0,
            tries=(
                TaskTry(1, TaskState.FAILED, 100.0, 101.0, "boom", None),
                TaskTry(2, TaskState.SUCCESS, 112.0, 120.0, None, None),
            ),
        ),
        "b": _ti("b", TaskState.RUNNING, queued_at=120.0, started_at=125.0),
        "c": _ti("c", TaskState.QUEUED, try_number=0, queued_at=121.0),
        "d": _ti("d", TaskState.PENDING, try_number=0),
    }
    bars = gantt_bars(tasks, now)
    by_task = {
        t: [(b.kind, b.state, b.start, b.end) for b in bars if b.task_id == t] for t in tasks
    }
    assert by_task["a"] == [
        ("running", "failed", 100.0, 101.0),
        ("retry_wait", "up_for_retry", 101.0, 110.0),
        ("queued", "queued", 110.0, 112.0),
        ("running", "success", 112.0, 120.0),
    ]
    assert by_task["b"] == [("queued", "queued", 120.0, 125.0), ("running", "running", 125.0, now)]
    assert by_task["c"] == [("queued", "queued", 121.0, now)]
    assert by_task["d"] == []
    svg = gantt_svg(list(tasks), tasks, now=now, origin=100.0)
    ElementTree.fromstring(svg)
    assert len(re.findall(r'class="bar running', svg)) == 3
    assert nice_step(10) == 2 and nice_step(3600) == 600 and nice_step(0.3) == 0.1


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("*/15 * * * *", "every 15 minutes"),
        ("30 4 * * 1-5", "at 04:30 on Monday to Friday"),
        ("0 * * * *", "every hour, on the hour"),
        ("0 3,15 * * *", "every day at 03:00, 15:00"),
        ("0 0 1 * *", "at 00:00 on day 1 of the month"),
        ("@daily", "every day at 00:00"),
        ("0 6 * 1 *", "every day in January at 06:00"),
        ("1-5/2 * * * *", None),
    ],
)
def test_cron_in_words(expr: str, words: str | None) -> None:
    assert cron_in_words(expr) == words


def test_source_prefix_groups_runs_of_one_source() -> None:
    assert source_prefix("kafka:orders:3:1042") == "kafka:orders:"
    assert source_prefix("s3:bucket/in/a.csv@etag1") == "s3:bucket/in/a.csv@"
    assert source_prefix("timer:etl:2026-11-25T04:00:00+00:00") == "timer:etl:"
    assert source_prefix("manual:20261125-abc") is None


def test_waiting_reasons_name_upstream_queue_and_retry() -> None:
    from engine import dag, task

    @task(pool="db")
    def first() -> int:
        return 1

    @task
    def second(x: int) -> int:
        return x

    @dag(max_active_runs=1)
    def pipeline() -> None:
        second(first())

    now = 200.0
    tasks = {
        "first": _ti("first", TaskState.QUEUED, try_number=0, queued_at=170.0),
        "second": _ti("second", TaskState.PENDING, try_number=0),
    }
    run = Run("r1", "pipeline", "k", RunState.RUNNING, {}, None, "api", None, 100.0, 101.0,
              None, None, 1, tasks)  # fmt: skip
    limits = Limits(max_tasks=4, pools={"db": 2})
    reason = waiting_reason(run, "first", pipeline, limits, now)
    assert reason is not None and "pool 'db' (2 slots)" in reason and "30.0 s" in reason
    assert waiting_reason(run, "second", pipeline, limits, now) == "waiting on upstream: first"
    queued = Run("r2", "pipeline", "k2", RunState.QUEUED, {}, None, "api", None, 100.0, None,
                 None, None, 2, tasks)  # fmt: skip
    assert "allows 1 active run" in (waiting_reason(queued, "first", pipeline, limits, now) or "")
    retry = {"first": _ti("first", TaskState.UP_FOR_RETRY, error="IOError: x", next_try_at=230.0)}
    run3 = Run("r3", "pipeline", "k3", RunState.RUNNING, {}, None, "api", None, 100.0, 101.0,
               None, None, 3, retry)  # fmt: skip
    text = waiting_reason(run3, "first", pipeline, limits, now) or ""
    assert "try 1 failed: IOError: x; retry 2" in text and "in 30.0 s" in text
    paused = Limits(max_tasks=4, pools={"db": 2}, paused=frozenset({"pipeline"}))
    assert waiting_reason(run, "first", pipeline, paused, now) == "DAG pipeline is paused"


def test_public_surface() -> None:
    assert sorted(engine.web.__all__) == [
        "is_loopback",
        "load_or_create_token",
        "make_app",
        "reads_are_private",
        "serve",
        "token_file",
    ]
    for name in engine.web.__all__:
        assert getattr(engine.web, name) is not None


# -- groups and mapped tasks --------------------------------------------------------------------------

GROUPED = {"a": [], "x.p": ["a"], "x.q": ["a"], "x.y.r": ["x.p"], "z": ["x.q", "x.y.r"]}
GROUP_OF = {"a": None, "x.p": "x", "x.q": "x", "x.y.r": "x.y", "z": None}


def test_without_groups_the_layout_is_unchanged() -> None:
    for graph in (DIAMOND, WIDE):
        assert layout_graph(graph) == layout_graph(graph, groups={t: None for t in graph})


def test_a_groups_box_holds_its_nodes_and_nested_boxes_and_no_other_node() -> None:
    layout = layout_graph(GROUPED, groups=GROUP_OF)
    boxes = {c.group: c for c in layout.clusters}
    assert set(boxes) == {"x", "x.y"} and boxes["x.y"].depth == 1

    def inside(inner: tuple[float, float, float, float], outer: Cluster) -> bool:
        x, y, w, h = inner
        return (
            outer.x < x and x + w < outer.x + outer.width
            and outer.y < y and y + h < outer.y + outer.height
        )  # fmt: skip

    def rect(tid: str) -> tuple[float, float, float, float]:
        n = layout.nodes[tid]
        return (n.x, n.y, n.width, n.height)

    for tid, group in GROUP_OF.items():
        for name, box in boxes.items():
            member = group is not None and (group == name or group.startswith(name + "."))
            assert inside(rect(tid), box) is member, (tid, name)
    y = boxes["x.y"]
    assert inside((y.x, y.y, y.width, y.height), boxes["x"])
    nodes = [rect(t) for t in GROUPED]
    for a, b in itertools.combinations(nodes, 2):
        assert not _overlap(a, b)


def test_a_collapsed_group_is_one_node_and_its_edges_join() -> None:
    view = view_of(GROUPED, GROUP_OF, ["x"])
    assert view.upstream == {"a": [], "x.*": ["a"], "z": ["x.*"]}
    assert view.collapsed == {"x.*": "x"} and view.node_of["x.y.r"] == "x.*"
    inner = view_of(GROUPED, GROUP_OF, ["x.y"])
    assert inner.upstream["x.y.*"] == ["x.p"] and inner.upstream["z"] == ["x.q", "x.y.*"]
    assert inner.group_of["x.y.*"] == "x"  # drawn inside its parent's box
    layout = layout_graph(inner.upstream, groups=inner.group_of)
    assert [c.group for c in layout.clusters] == ["x"]


def test_state_mixes_count_and_order_worst_last_in_text() -> None:
    counts = state_counts(["success"] * 180 + ["running"] * 15 + ["failed"] * 5)
    assert list(counts) == ["failed", "running", "success"]
    assert worst_state(counts) == "failed"
    assert mix_text(counts) == "180 ✓ 15 ⟳ 5 ✗"
    assert instances_by_task(["load[10]", "load[2]", "load", "x"]) == {
        "load": ["load[2]", "load[10]"]
    }


def test_a_mapped_task_is_one_node_with_count_mix_and_bar() -> None:
    svg = graph_svg(
        layout_graph({"load": []}),
        {"load": "failed"},
        notes={"load": "3 ✓ 1 ✗"},
        labels={"load": "load \u00d74"},
        mixes={"load": {"failed": 1, "success": 3}},
    )
    root = ElementTree.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    node = root.find(".//s:g[@data-task='load']", ns)
    assert node is not None and node.get("class") == "node mapped st-failed"
    bar = {
        r.get("data-state"): float(r.get("width") or 0)
        for r in node.iter(f"{{{ns['s']}}}rect")
        if r.get("data-state")
    }
    assert bar["success"] == pytest.approx(3 * bar["failed"])


def test_the_timeline_shows_a_mapped_task_as_one_lane_and_pages_its_instances() -> None:
    tasks = {"load": _ti("load", TaskState.RUNNING, started_at=1.0)}
    ids = [f"load[{i}]" for i in range(120)]
    for i, iid in enumerate(ids):
        state = TaskState.FAILED if i == 7 else TaskState.SUCCESS
        tasks[iid] = _ti(iid, state, started_at=10.0 + i, finished_at=11.0 + i)
    lanes = lanes_of(["load"], {"load": ids}, tasks)
    assert [ln.kind for ln in lanes] == ["mapped"]
    assert lanes[0].label == "load \u00d7120 119 ✓ 1 ✗"
    bar = mapped_bar("load", [tasks[i] for i in ids], now=500.0)
    assert bar is not None and (bar.start, bar.end, bar.state) == (10.0, 130.0, "failed")
    opened = lanes_of(["load"], {"load": ids}, tasks, expand={"load": 100})
    assert [ln.task_id for ln in opened[1:]] == ids[100:]
    svg = gantt_svg(["load"], tasks, now=500.0, mapped={"load": ids})
    assert svg.count('data-kind="mapped"') == 1 and 'data-task="load[3]"' not in svg
