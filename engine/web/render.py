"""HTML and SVG from Jinja2 templates (``engine/web/templates/``) with autoescaping on.

Every value a template prints is escaped unless it is ``Markup``, and the only ``Markup`` here is
the output of another of these templates (the graph and timeline SVGs). Handlers pass plain data;
the helpers below are the filters and globals the templates share. Nothing builds HTML by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from markupsafe import Markup

from ..durations import format_duration
from .common import signed_in, state_of
from .fanout import mix_text
from .format import last_line, preview, relative_text, to_json, utc_text, zone_text
from .status import asset_url, dag_url, run_url


def api_url(base: str, *parts: str) -> str:
    """``{base}/api/a/b`` with each part quoted as one path segment."""
    return base + "/api/" + "/".join(quote(p, safe="") for p in parts)


def href(path: str, query: Mapping[str, object] | None = None) -> str:
    """``path`` with the query's non-empty values (the template escapes the result)."""
    q = {k: str(v) for k, v in (query or {}).items() if v is not None and v != ""}
    return path + ("?" + urlencode(q) if q else "")


def moment(epoch: float, zone: ZoneInfo | None = None, now: float | None = None) -> dict[str, str]:
    """An instant for the ``when`` macro: UTC text, the DAG's zone (if not UTC), the hover text."""
    local = zone_text(epoch, zone)
    hover = [utc_text(epoch)]
    if local:
        hover.append(local)
    if now is not None:
        hover.append(relative_text(epoch, now))
    return {
        "datetime": f"{epoch:.3f}",
        "utc": utc_text(epoch),
        "local": local,
        "hover": " · ".join(hover),
    }


def _fixed(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


@functools.cache
def environment() -> jinja2.Environment:
    """The one template environment: package templates, autoescaping on, undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("engine.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(
        duration=format_duration,
        fixed=_fixed,
        json=to_json,
        last_line=last_line,
        mix=mix_text,
        preview=preview,
        relative=relative_text,
        utc=utc_text,
    )
    env.globals.update(
        api_url=api_url,
        asset_url=asset_url,
        dag_url=dag_url,
        href=href,
        moment=moment,
        run_url=run_url,
    )
    return env


def render(template: str, **context: Any) -> Markup:
    """``template`` rendered with ``context`` (escaped output, safe to embed in another page)."""
    return Markup(environment().get_template(template).render(**context))


def action_button(
    label: str,
    url: str,
    *,
    body: str = "{}",
    confirm: str | None = None,
    cls: str = "",
    prompt_params: str | None = None,
) -> dict[str, Any]:
    """A button (macro ``button``) that POSTs ``body`` to ``url`` with the bearer token;
    ``prompt_params``: ask for the run params first, this JSON pre-filled."""
    return {
        "label": label,
        "url": url,
        "body": body,
        "confirm": confirm,
        "cls": cls,
        "params": prompt_params,
    }


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def page_response(
    request: web.Request, template: str, *, title: str, status: int = 200, **context: Any
) -> web.Response:
    """A whole page (``template`` extends ``page.html``) as the response."""
    text = render(
        template,
        title=title,
        base=state_of(request).base,
        signed_in=state_of(request).access.private_reads and signed_in(request),
        **context,
    )
    return html_response(text, status)


__all__ = [
    "action_button",
    "api_url",
    "environment",
    "href",
    "html_response",
    "moment",
    "page_response",
    "render",
]
