"""The HTML report: headline figures, and bar charts drawn as inline SVG by hand (no plotting library).

``render(figures)`` takes what ``warehouse.read_figures`` returns and gives one self-contained page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

# Lifetime-value bands in euros: (label, upper bound exclusive); customers without orders come first.
LTV_BANDS: tuple[tuple[str, float], ...] = (
    ("< €50", 50),
    ("€50-100", 100),
    ("€100-250", 250),
    ("€250-500", 500),
    ("€500-1k", 1_000),
    ("€1k-2.5k", 2_500),
    ("≥ €2.5k", float("inf")),
)
_BAR = "#3b6ea8"
_ACCENT = "#d9822b"


def euros(cents: int | float) -> str:
    return f"€{cents / 100:,.0f}"


def ltv_distribution(ltvs_cents: Sequence[int]) -> list[tuple[str, int]]:
    """Customers per lifetime-value band, ``no orders`` first."""
    counts = {"no orders": 0} | {label: 0 for label, _ in LTV_BANDS}
    for cents in ltvs_cents:
        if cents == 0:
            counts["no orders"] += 1
            continue
        value = cents / 100
        label = next(label for label, upper in LTV_BANDS if value < upper)
        counts[label] += 1
    return list(counts.items())


def bar_chart(
    bars: Sequence[tuple[str, float, str]], *, width: int = 720, highlight: int = 0
) -> str:
    """A horizontal bar chart: one ``(label, value, value text)`` per bar; the first
    ``highlight`` bars get the accent colour."""
    row_h, pad, char_w = 26, 6, 7.5  # char_w: a generous average glyph width at 13px
    label_w = 12 + char_w * max((len(label) for label, _, _ in bars), default=0)
    text_w = 12 + char_w * max((len(text) for _, _, text in bars), default=0)
    plot_w = max(width - label_w - text_w, 100)
    top = max((v for _, v, _ in bars), default=0) or 1
    height = row_h * len(bars) + 2 * pad
    width = round(label_w + plot_w + text_w)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="system-ui, sans-serif" '
        'font-size="13">'
    ]
    for i, (label, value, text) in enumerate(bars):
        y = pad + i * row_h
        w = max(plot_w * value / top, 1 if value else 0)
        colour = _ACCENT if i < highlight else _BAR
        parts.append(
            f'<text x="{label_w - 8:.1f}" y="{y + 17}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}">'
            f"<title>{escape(label)}: {escape(text)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" fill="#333">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(
    columns: Sequence[tuple[str, float]], *, width: int = 720, height: int = 260
) -> str:
    """A vertical column chart (a histogram when the labels are bands)."""
    pad_top, pad_bottom, gap = 22, 40, 10
    plot_h = height - pad_top - pad_bottom
    col_w = (width - gap * (len(columns) + 1)) / max(len(columns), 1)
    top = max((v for _, v in columns), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="system-ui, sans-serif" '
        'font-size="12">',
        f'<line x1="0" y1="{pad_top + plot_h}" x2="{width}" y2="{pad_top + plot_h}" stroke="#999"/>',
    ]
    for i, (label, value) in enumerate(columns):
        x = gap + i * (col_w + gap)
        h = plot_h * value / top
        y = pad_top + plot_h - h
        mid = x + col_w / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{col_w:.1f}" height="{h:.1f}" fill="{_BAR}">'
            f"<title>{escape(label)}: {value:,.0f}</title></rect>"
            f'<text x="{mid:.1f}" y="{y - 5:.1f}" text-anchor="middle">{value:,.0f}</text>'
            f'<text x="{mid:.1f}" y="{height - pad_bottom + 18}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render(figures: Mapping[str, Any]) -> str:
    """The whole report page."""
    regions = figures["regions"]
    customers, buyers = figures["customers"], figures["buyers"]
    revenue = figures["revenue_cents"]
    top_region = regions[0]["region"] if regions else "n/a"
    cards = [
        ("Customers", f"{customers:,}"),
        ("Buyers", f"{buyers:,}"),
        ("Orders", f"{figures['orders']:,}"),
        ("Revenue", euros(revenue)),
        ("Avg LTV (buyers)", euros(revenue / buyers) if buyers else "n/a"),
        ("Top region", top_region),
    ]
    region_bars = [
        (r["region"], r["revenue_cents"], f"{euros(r['revenue_cents'])} · {r['customers']:,} cust.")
        for r in regions
    ]
    top_bars = [
        (f"{c['name']} ({c['city'] or '?'})", c["lifetime_value_cents"],
         f"{euros(c['lifetime_value_cents'])} · {c['order_count']} orders")
        for c in figures["top_customers"]
    ]  # fmt: skip
    rows = "".join(
        f"<tr><td>{i}</td><td>{c['customer_id']}</td><td>{escape(c['name'])}</td>"
        f"<td>{escape(c['city'] or '—')}</td><td>{escape(c['region'])}</td>"
        f"<td class=num>{c['order_count']}</td><td class=num>{euros(c['lifetime_value_cents'])}</td>"
        f"<td>{c['first_order']}</td><td>{c['last_order']}</td></tr>"
        for i, c in enumerate(figures["top_customers"], start=1)
    )
    card_html = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>'
        for k, v in cards
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Customer analytics — {escape(figures["day"])}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 820px; color: #222; }}
  h1 {{ margin-bottom: 0; }} .sub {{ color: #666; margin-top: .3rem; }}
  .cards {{ display: flex; flex-wrap: wrap; gap: .8rem; margin: 1.5rem 0; }}
  .card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 110px; }}
  .k {{ color: #666; font-size: .8rem; }} .v {{ font-size: 1.3rem; font-weight: 600; }}
  table {{ border-collapse: collapse; font-size: .85rem; width: 100%; }}
  td, th {{ border-bottom: 1px solid #eee; padding: .3rem .4rem; text-align: left; }}
  .num {{ text-align: right; }}
</style>
</head>
<body>
<h1>Customer analytics</h1>
<p class="sub">Orders up to {escape(figures["day"])} · run {escape(figures["run_id"])} ·
loaded {escape(figures["loaded_at"])}</p>
<div class="cards">{card_html}</div>
<h2>Revenue by region</h2>
<p>Top region: <strong>{escape(top_region)}</strong>.</p>
{bar_chart(region_bars, highlight=1)}
<h2>Lifetime value distribution</h2>
<p>Customers per lifetime-value band (completed orders only).</p>
{column_chart(ltv_distribution(figures["ltvs_cents"]))}
<h2>Top customers</h2>
{bar_chart(top_bars)}
<table>
<tr><th>#</th><th>ID</th><th>Name</th><th>City</th><th>Region</th><th class=num>Orders</th>
<th class=num>LTV</th><th>First order</th><th>Last order</th></tr>
{rows}
</table>
</body>
</html>
"""
