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
from .format import utc_text
from .layout import label_of
from .render import render

BarKind = Literal["queued", "running", "retry_wait"]

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


def gantt_svg(
    order: Sequence[str],
    tasks: Mapping[str, TaskInstance],
    *,
    now: float,
    origin: float | None = None,
    width: float = 1300.0,
) -> Markup:
    """The chart for the tasks in ``order`` (one row each), time 0 at ``origin`` (the run's
    creation), up to the last bar's end (``now`` for what still runs or waits)."""
    bars = gantt_bars({t: tasks[t] for t in order if t in tasks}, now)
    starts = [b.start for b in bars]
    t0 = origin if origin is not None else min(starts, default=now)
    t0 = min([t0, *starts])
    t1 = max([t0 + 1.0, *(b.end for b in bars)])
    span = t1 - t0
    plot = width - LABEL_WIDTH - 12
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(order), 1) + 6

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
    rows = {tid: i for i, tid in enumerate(order)}
    drawn = []
    for bar in bars:
        bx = x(bar.start)
        inset = {"running": 4.0, "queued": 8.0, "retry_wait": 9.0}[bar.kind]
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
        rows=[
            {"tid": tid, "label": label_of(tid), "y": AXIS_HEIGHT + i * ROW_HEIGHT}
            for tid, i in rows.items()
        ],
        bars=drawn,
    )


__all__ = ["GanttBar", "gantt_bars", "gantt_svg", "nice_step"]
