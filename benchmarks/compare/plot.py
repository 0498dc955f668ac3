"""Draw overhead.png from a compare results.json (run by the driver with the ``plot`` venv's Python,
which has matplotlib; the project venv does not).

Left: per-task overhead (median wall / tasks) for W1, W2, W3-seq and W3-conc, one bar per tool,
log scale. Right: W4's wall (1000 x sleep(0.1) under a limit of 100; ideal 1.0 s), log scale.
Bars at a reduced size are hatched; a workload a tool cannot express has no bar.
Usage: python plot.py RESULTS_JSON OUT_PNG
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

FULL = {"W1": 1000, "W2": 200, "W3-seq": 200, "W3-conc": 200, "W4": 1000}
PER_TASK = ("W1", "W2", "W3-seq", "W3-conc")
COLORS = (
    "#1b9e77",
    "#66a61e",
    "#a6d854",
    "#7570b3",
    "#e7298a",
    "#d95f02",
    "#e6ab02",
    "#a6761d",
    "#666666",
    "#1f78b4",
)


def main(src: str, dst: str) -> None:
    payload = json.loads(Path(src).read_text())
    tools = payload["tools"]
    cells = {(c["row"], c["workload"]): c for c in payload["results"] if "median_s" in c}
    # the Dask rows have a table of their own (report.py), not a bar here
    rows = [r for r in tools if any((r, w) in cells for w in (*PER_TASK, "W4"))]
    color = {row: COLORS[i % len(COLORS)] for i, row in enumerate(rows)}
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 7), gridspec_kw={"width_ratios": [3.2, 1.3]}
    )
    # Left: per-task overhead; only rows with at least one such figure get a slot.
    left_rows = [r for r in rows if any((r, w) in cells for w in PER_TASK)]
    width = 0.8 / max(1, len(left_rows))
    for i, row in enumerate(left_rows):
        for j, w in enumerate(PER_TASK):
            c = cells.get((row, w))
            if c is None:
                continue
            x = j - 0.4 + width * (i + 0.5)
            (bar,) = left.bar([x], [c["median_s"] / c["tasks"] * 1e6], width, color=color[row])
            if c["n"] != FULL[w]:
                bar.set_hatch("//")
    left.set_yscale("log")
    left.set_xticks(range(len(PER_TASK)))
    left.set_xticklabels(
        ["W1 fan-out 1000", "W2 chain 200", "W3 200 runs\nin a row", "W3 200 runs\nat once"]
    )
    left.set_ylabel("per-task overhead, µs (log scale)")
    left.set_title("Per task: median wall / tasks (lower is better)")
    left.grid(axis="y", which="both", alpha=0.3)
    for ref, text in ((1e3, "1 ms"), (1e4, "10 ms"), (1e5, "100 ms")):
        left.axhline(ref, color="grey", lw=0.6, ls=":")
        left.text(len(PER_TASK) - 0.45, ref * 1.08, text, color="grey", fontsize=8, ha="right")
    # Right: W4's wall, rows that ran it.
    w4_rows = [r for r in rows if (r, "W4") in cells]
    for i, row in enumerate(w4_rows):
        c4 = cells[(row, "W4")]
        (bar,) = right.bar([i], [c4["median_s"]], 0.7, color=color[row])
        if c4["n"] != FULL["W4"]:
            bar.set_hatch("//")
        v = c4["median_s"]
        label = f"{v:.0f} s" if v >= 10 else f"{v:.2f} s"
        right.text(i, v * 1.1, label, ha="center", fontsize=7)
    right.set_yscale("log")
    right.axhline(1.0, color="black", lw=0.8, ls="--")
    right.set_ylim(bottom=0.5)
    right.text(len(w4_rows) - 0.5, 0.95, "ideal 1.0 s", fontsize=8, ha="right", va="top")
    right.set_xticks(range(len(w4_rows)))
    right.set_xticklabels(
        [textwrap.fill(tools[r]["label"], 18) for r in w4_rows], rotation=60, ha="right", fontsize=7
    )
    right.set_ylabel("wall, s (log scale)")
    right.set_title("W4: 1000 x sleep(0.1), limit 100")
    right.grid(axis="y", which="both", alpha=0.3)
    handles = [Patch(color=color[r], label=tools[r]["label"]) for r in rows]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="reduced size"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    m = payload.get("machine", {})
    fig.suptitle(
        f"Podium vs other orchestrators ({m.get('cpu_count', '?')} CPUs, Python "
        f"{m.get('python', '?')}, median of {payload.get('settings', {}).get('reps', '?')} "
        "processes; no bar = not expressible with that runner)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
