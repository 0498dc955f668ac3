"""The results of a compare run as Markdown: the summary table (one row per tool) and the details."""

from __future__ import annotations

from typing import Any

from .specs import DASK_WORKLOAD, FULL_SIZE

COLUMNS = (
    ("W1", "W1 fan-out, per task"),
    ("W2", "W2 chain, per task"),
    ("W3-seq", "W3 200 runs in a row, per task"),
    ("W3-conc", "W3 200 runs at once, per task"),
    ("W4", "W4 1000 x sleep(0.1), limit 100: wall"),
    ("events", "events->runs, per event"),
)


def fmt_seconds_per(value_s: float) -> str:
    us = value_s * 1e6
    if us < 1000:
        return f"{us:.0f} µs" if us >= 100 else f"{us:.1f} µs"
    ms = us / 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def per_task(cell: dict[str, Any]) -> str:
    return fmt_seconds_per(cell["median_s"] / cell["tasks"])


def cell_text(cell: dict[str, Any] | None, notes: dict[str, str]) -> str:
    if cell is None:
        return ""
    if "skipped" in cell:
        ref = notes.setdefault(cell["skipped"], f"n{len(notes) + 1}")
        return f"n/a [{ref}]"
    if "median_s" not in cell:
        return f"**error**: {cell.get('error', '?')[:80]}"
    if cell["workload"] == "W4":
        text = f"{cell['median_s']:.2f} s"
        if cell.get("peak_live") is not None:
            text += f" (peak {cell['peak_live']} live)"
    else:
        text = per_task(cell)
    if cell["n"] != FULL_SIZE[cell["workload"]]:
        text += f" (n={cell['n']})"
    if cell.get("invalid"):
        text += " **INVALID**"
    if cell.get("error"):
        text += " (some processes failed)"
    return text


def markdown(payload: dict[str, Any]) -> str:
    tools: dict[str, Any] = payload["tools"]
    by: dict[tuple[str, str], dict[str, Any]] = {
        (c["row"], c["workload"]): c for c in payload["results"]
    }
    notes: dict[str, str] = {}
    head = ["tool", "version", "persists (durability)", "concurrency model"] + [
        t for _, t in COLUMNS
    ]
    table = ["| " + " | ".join(head) + " |", "|---|---|---|---|" + "--:|" * len(COLUMNS)]
    lines: list[str] = []
    main_workloads = {w for w, _ in COLUMNS}
    for key, tool in tools.items():
        if not any(c["workload"] in main_workloads for c in payload["results"] if c["row"] == key):
            continue  # a row of the dask workload only: its own table below
        version = tool["version"] or "not installed"
        if tool.get("install_error"):
            version += f" ({tool['install_error'][:80]})"
        cells = [cell_text(by.get((key, w)), notes) for w, _ in COLUMNS]
        lines.append(
            "| "
            + " | ".join([tool["label"], version, tool["persists"], tool["concurrency"], *cells])
            + " |"
        )
    if lines:  # not when only the dask workload was measured
        lines = table + lines
    settings = payload.get("settings", {})
    machine = payload.get("machine", {})
    lines.append("")
    lines.append(
        f"Median of {settings.get('reps', '?')} processes (one measurement each, after an "
        f"in-process warm-up); {machine.get('cpu_count', '?')} CPUs ({machine.get('cpu_model', '?')}), "
        f"Python {machine.get('python', '?')}, {machine.get('date', '?')}. Per task = median wall "
        "/ tasks in the measurement (W3: 5 tasks per run). (n=...) marks a reduced size."
    )
    for reason, ref in notes.items():
        lines.append(f"- [{ref}] {reason}")
    dask = dask_table(payload)
    if dask:
        lines += ["", dask]
    lines.append("")
    lines.append(details(payload))
    return "\n".join(lines)


def dask_table(payload: dict[str, Any]) -> str:
    """The dask workload: each row's per-task figure and its overhead over Dask's own."""
    cells = [c for c in payload["results"] if c["workload"] == DASK_WORKLOAD]
    if not cells:
        return ""
    tools = payload["tools"]
    lines = [
        "| on one LocalCluster (2 workers x 1 thread) | version | n | median wall (min-max) "
        "| per task | over client.submit, per task | x client.submit |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for c in cells:
        tool = tools.get(c["row"], {})
        label, version = tool.get("label", c["row"]), tool.get("version") or "?"
        if "median_s" not in c:
            lines.append(
                f"| {label} | {version} | {c.get('n', '')} | **error**: "
                f"{c.get('error', '?')[:120]} | | | |"
            )
            continue
        over = c.get("over_floor_us_per_task")
        ratio = c.get("x_floor")
        lines.append(
            f"| {label} | {version} | {c['n']} | {c['median_s']:.3f} s ({c['min_s']:.3f}-"
            f"{c['max_s']:.3f}) | {per_task(c)} | "
            f"{'' if over is None else fmt_seconds_per(over / 1e6)} | "
            f"{'' if ratio is None else f'{ratio:.1f}x'} |"
        )
    info = payload.get("dask") or {}
    rounds = info.get("rounds") or []
    if rounds:
        v = rounds[0].get("versions", {})
        lines.append("")
        lines.append(
            f"{len(rounds)} rounds, each on a fresh cluster shared by every row (order rotated); "
            f"distributed {v.get('distributed')}, prefect {v.get('prefect')}, prefect-dask "
            f"{v.get('prefect-dask')} on the workers. Per task = median wall / n; over "
            "client.submit = that minus the raw Dask row's, both medians of the same rounds."
        )
    return "\n".join(lines)


def details(payload: dict[str, Any]) -> str:
    tools = payload["tools"]
    lines = [
        "| tool | workload | n | tasks | median wall (min-max) | per task | runs/s | peak RSS MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for c in payload["results"]:
        if "median_s" not in c:
            continue
        spread = f" ({c['min_s']:.3f}-{c['max_s']:.3f})" if len(c["walls_s"]) > 1 else ""
        runs = f"{c['runs_per_s']:,.1f}" if c["runs"] > 1 else ""
        flag = " INVALID" if c.get("invalid") else ""
        lines.append(
            f"| {tools[c['row']]['label']} | {c['workload']}{flag} | {c['n']} | {c['tasks']} | "
            f"{c['median_s']:.3f} s{spread} | {per_task(c)} | {runs} | {c['rss_peak_mb']:.0f} |"
        )
    return "\n".join(lines)
