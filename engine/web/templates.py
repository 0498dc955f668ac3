"""HTML building blocks. Everything that comes from users or tasks passes through ``esc``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from .format import relative_text, utc_text, zone_text


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def api_url(base: str, *parts: str) -> str:
    """``{base}/api/a/b`` with each part quoted as one path segment."""
    return base + "/api/" + "/".join(quote(p, safe="") for p in parts)


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str, *, base: str, main_attrs: str = "") -> str:
    """A whole page: header with navigation, ``body`` inside ``<main>``, the script and the CSS."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)} · Podium</title>"
        f'<link rel="stylesheet" href="{esc(base)}/static/podium.css">'
        f'<script defer src="{esc(base)}/static/podium.js"></script>'
        f'</head><body data-base="{esc(base)}">'
        '<header class="top"><a class="brand" href="' + esc(base or "") + '/">Podium</a>'
        f'<nav><a href="{esc(base)}/">DAGs</a><a href="{esc(base)}/runs">Runs</a>'
        f'<a href="{esc(base)}/events">Events</a><a href="{esc(base)}/api">API</a></nav>'
        '<span class="clock">times in UTC</span></header>'
        f"<main {main_attrs}>{body}</main>"
        '<div id="toast" role="status" aria-live="polite"></div>'
        "</body></html>"
    )


def when(epoch: float | None, zone: ZoneInfo | None = None, now: float | None = None) -> str:
    """An instant as UTC text; the DAG's zone (and how long ago) on hover and, if not UTC, below."""
    if epoch is None:
        return '<span class="muted">—</span>'
    local = zone_text(epoch, zone)
    hover = [utc_text(epoch)]
    if local:
        hover.append(local)
    if now is not None:
        hover.append(relative_text(epoch, now))
    extra = f'<span class="local">{esc(local)}</span>' if local else ""
    return f'<time datetime="{epoch:.3f}" title="{esc(" · ".join(hover))}">{esc(utc_text(epoch))}</time>{extra}'


def badge(state: str, text: str | None = None, *, field: str | None = None) -> str:
    attr = f' data-field="{esc(field)}"' if field else ""
    return f'<span class="badge st-{esc(state)}"{attr}>{esc(text or state)}</span>'


def table(headers: Iterable[str], rows: Iterable[str], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def href(path: str, query: Mapping[str, object] | None = None) -> str:
    q = {k: str(v) for k, v in (query or {}).items() if v is not None and v != ""}
    return esc(path + ("?" + urlencode(q) if q else ""))


def action_button(
    label: str,
    url: str,
    *,
    body: str = "{}",
    confirm: str | None = None,
    cls: str = "",
    prompt_params: str | None = None,
) -> str:
    """A button that POSTs ``body`` to ``url`` with the bearer token (asked once per tab)."""
    attrs = f'data-post="{esc(url)}" data-body="{esc(body)}"'
    if confirm:
        attrs += f' data-confirm="{esc(confirm)}"'
    if prompt_params is not None:
        attrs += f' data-params="{esc(prompt_params)}"'
    return f'<button type="button" class="action {esc(cls)}" {attrs}>{esc(label)}</button>'


__all__ = [
    "action_button",
    "api_url",
    "badge",
    "esc",
    "href",
    "html_response",
    "page",
    "table",
    "when",
]
