"""A run's timeline as an SVG Gantt chart: per task, time queued (waiting for a slot), each try's
running time coloured by its outcome, and the wait between a failed try and the next.

Pure: task instances and ``now`` in, bars and SVG text (template ``gantt.svg``) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup

from ..durations import format_duration
from ..models import TaskInstance
from ..states import TaskState
from .fanout import TIMES, mix_text, mix_words, state_counts, worst_state
from .format import utc_text
from .layout import label_of
from .render import render

BarKind = Literal["queued", "running", "retry_wait", "mapped"]

ROW_HEIGHT = 22.0
LABEL_WIDTH = 190.0
AXIS_HEIGHT = 22.0
_STEPS = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GanttBar:
    task_id: str
    kind: BarKind
    state: str
    start: float
    end: float
    try_number: int | None = None
    ongoing: bool = False


def _try_spans(ti: TaskInstance, now: float) -> list[tuple[int, str, float, float, bool]]:
    """``(try, state, start, end, ongoing)`` per try that started; the running try (not yet in
    ``tries``, which holds finished tries) ends at ``now``."""
    spans = [
        (t.try_number, t.state.value, t.started_at, t.finished_at or t.started_at, False)
        for t in sorted(ti.tries, key=lambda t: t.try_number)
        if t.started_at is not None
    ]
    running = ti.state is TaskState.RUNNING and ti.started_at is not None
    if running and ti.started_at is not None and all(s[0] != ti.try_number for s in spans):
        spans.append((ti.try_number, "running", ti.started_at, max(now, ti.started_at), True))
    return spans


def gantt_bars(tasks: Mapping[str, TaskInstance], now: float) -> list[GanttBar]:
    """Every bar of every task: queued, running (one per try) and retry waits, by start time.

    Only the latest queueing is stored (``queued_at``), so earlier tries show no queued bar: the
    gap before them is drawn as a retry wait."""
    bars: list[GanttBar] = []
    for tid, ti in tasks.items():
        queued = ti.queued_at
        prev_end: float | None = None
        for number, state, start, end, ongoing in _try_spans(ti, now):
            if prev_end is not None:
                wait_end = queued if queued is not None and prev_end <= queued <= start else start
                if wait_end > prev_end:
                    bars.append(
                        GanttBar(tid, "retry_wait", "up_for_retry", prev_end, wait_end, number)
                    )
            bars.append(GanttBar(tid, "running", state, start, end, number, ongoing))
            prev_end = end
        if ti.state is TaskState.UP_FOR_RETRY and prev_end is not None:
            until = max(ti.next_try_at if ti.next_try_at is not None else now, prev_end)
            bars.append(
                GanttBar(
                    tid, "retry_wait", "up_for_retry", prev_end, until, ti.try_number + 1, True
                )
            )
        if queued is not None and ti.state is TaskState.QUEUED:
            bars.append(
                GanttBar(tid, "queued", "queued", queued, max(now, queued), ti.try_number + 1, True)
            )
        elif queued is not None and ti.started_at is not None and ti.started_at >= queued:
            bars.append(GanttBar(tid, "queued", "queued", queued, ti.started_at, ti.try_number))
    bars.sort(key=lambda b: (b.start, b.kind != "queued"))
    return bars


def mapped_bar(task_id: str, instances: Sequence[TaskInstance], now: float) -> GanttBar | None:
    """A mapped task's lane: one bar from its instances' first start (or queueing) to the last
    end (``now`` while one still runs or waits), in the worst state among them."""
    starts = [t for ti in instances for t in (ti.queued_at, ti.started_at) if t is not None]
    if not starts:
        return None
    ongoing = any(not ti.state.finished for ti in instances)
    ends = [ti.finished_at or ti.started_at or ti.queued_at or now for ti in instances]
    end = now if ongoing else max(e for e in ends if e is not None)
    worst = worst_state(state_counts(ti.state.value for ti in instances)) or "none"
    return GanttBar(task_id, "mapped", worst, min(starts), max(end, min(starts)), None, ongoing)


def nice_step(span: float, ticks: int = 6) -> float:
    """A round tick interval giving about ``ticks`` ticks over ``span`` seconds."""
    for step in _STEPS:
        if span / step <= ticks:
            return step
    return float(_STEPS[-1] * max(1, round(span / ticks / _STEPS[-1])))


def _tick_label(offset: float) -> str:
    if offset == 0:
        return "0"
    if offset < 1:
        return f"+{offset * 1000:.0f}ms"
    if offset < 60:
        return f"+{offset:g}s"
    if offset < 3600:
        return f"+{offset / 60:g}m"
    return f"+{offset / 3600:g}h"


@dataclass(frozen=True, slots=True)
class Lane:
    """One row of the chart: a task, a mapped task's summary, or one instance under it."""

    task_id: str
    label: str
    kind: Literal["task", "mapped", "instance", "more"] = "task"
    expanded: bool = False


def lanes_of(
    order: Sequence[str],
    mapped: Mapping[str, Sequence[str]],
    tasks: Mapping[str, TaskInstance],
    *,
    expand: Mapping[str, int] | None = None,
    page: int = 50,
) -> list[Lane]:
    """The rows: each task once; a mapped task as one summary row, followed, when ``expand``
    names it (with an offset), by a page of its instances."""
    expand = expand or {}
    lanes: list[Lane] = []
    for tid in order:
        if tid not in mapped:
            lanes.append(Lane(tid, label_of(tid)))
            continue
        ids = mapped[tid]
        counts = state_counts(tasks[i].state.value for i in ids if i in tasks)
        label = f"{tid} {TIMES}{len(ids)} {mix_text(counts)}".strip()
        lanes.append(
            Lane(tid, label_of(label) if len(label) > 30 else label, "mapped", tid in expand)
        )
        if tid in expand:
            start = max(expand[tid], 0)
            for iid in ids[start : start + page]:
                lanes.append(Lane(iid, "  " + label_of(iid), "instance"))
            rest = len(ids) - start - page
            if rest > 0:
                lanes.append(Lane(tid, f"  … {rest} more (task panel)", "more"))
    return lanes


def gantt_svg(
    order: Sequence[str],
    tasks: Mapping[str, TaskInstance],
    *,
    now: float,
    origin: float | None = None,
    width: float = 1300.0,
    mapped: Mapping[str, Sequence[str]] | None = None,
    expand: Mapping[str, int] | None = None,
) -> Markup:
    """The chart for the tasks in ``order`` (one row each), time 0 at ``origin`` (the run's
    creation), up to the last bar's end (``now`` for what still runs or waits).

    A task in ``mapped`` (task -> its instance ids) is one row summarising its instances;
    ``expand`` (task -> offset) lists a page of them under it."""
    mapped = mapped or {}
    lanes = lanes_of(order, mapped, tasks, expand=expand)
    plain = {ln.task_id: tasks[ln.task_id] for ln in lanes if ln.kind in ("task", "instance")}
    bars = gantt_bars({t: ti for t, ti in plain.items() if ti is not None}, now)
    for ln in lanes:
        if ln.kind == "mapped":
            bar = mapped_bar(ln.task_id, [tasks[i] for i in mapped[ln.task_id] if i in tasks], now)
            if bar is not None:
                bars.append(bar)
    starts = [b.start for b in bars]
    t0 = origin if origin is not None else min(starts, default=now)
    t0 = min([t0, *starts])
    t1 = max([t0 + 1.0, *(b.end for b in bars)])
    span = t1 - t0
    plot = width - LABEL_WIDTH - 12
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(lanes), 1) + 6

    def x(t: float) -> float:
        return LABEL_WIDTH + (t - t0) / span * plot

    ticks = []
    step = nice_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        tx = x(t0 + tick)
        # no label cut off at the right edge
        ticks.append({"x": tx, "label": _tick_label(tick) if tx + 44 <= width else None})
        tick += step
    rows = {ln.task_id: i for i, ln in enumerate(lanes) if ln.kind != "more"}
    drawn = []
    for bar in bars:
        bx = x(bar.start)
        inset = {"running": 4.0, "queued": 8.0, "retry_wait": 9.0, "mapped": 3.0}[bar.kind]
        if bar.kind == "mapped":
            ids = mapped[bar.task_id]
            counts = state_counts(tasks[i].state.value for i in ids if i in tasks)
            what = f"{len(ids)} instances: {mix_words(counts)}"
        else:
            what = {
                "queued": "queued, waiting for a slot",
                "running": f"try {bar.try_number}: {bar.state}",
                "retry_wait": f"waiting to retry (try {bar.try_number})",
            }[bar.kind]
        until = "now" if bar.ongoing else utc_text(bar.end)
        drawn.append(
            {
                "tid": bar.task_id,
                "kind": bar.kind,
                "state": bar.state,
                "ongoing": bar.ongoing,
                "x": bx,
                "y": AXIS_HEIGHT + rows[bar.task_id] * ROW_HEIGHT + inset,
                "width": max(x(bar.end) - bx, 2.0),
                "height": ROW_HEIGHT - 2 * inset,
                "title": f"{bar.task_id} — {what}, {format_duration(bar.end - bar.start)} "
                f"({utc_text(bar.start)} → {until})",
            }
        )
    return render(
        "gantt.svg",
        width=width,
        height=height,
        axis_y=AXIS_HEIGHT - 4,
        label_y=AXIS_HEIGHT - 8,
        row_height=ROW_HEIGHT,
        ticks=ticks,
        rows=[{"lane": ln, "y": AXIS_HEIGHT + i * ROW_HEIGHT} for i, ln in enumerate(lanes)],
        bars=drawn,
    )


__all__ = ["GanttBar", "Lane", "gantt_bars", "gantt_svg", "lanes_of", "mapped_bar", "nice_step"]
