"""Signing a browser in when reads are private: ``GET /login`` shows the form, ``POST /login`` with
the API token starts a session (an HttpOnly, SameSite=Strict cookie holding a random id), ``POST
/logout`` ends it. See ``auth`` for who may read what."""

from __future__ import annotations

from aiohttp import web

from .auth import SESSION_COOKIE, safe_next, token_matches
from .common import state_of
from .render import page_response


async def login_form(request: web.Request) -> web.Response:
    st = state_of(request)
    return page_response(
        request,
        "login.html",
        title="Sign in",
        next=safe_next(request.query.get("next"), st.base),
        refused=False,
        private=st.access.private_reads,
    )


async def login(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    form = await request.post()
    given, target = form.get("token"), form.get("next")
    next_path = safe_next(target if isinstance(target, str) else None, st.base)
    if not isinstance(given, str) or not token_matches(given, st.token):
        return page_response(
            request,
            "login.html",
            title="Sign in",
            status=401,
            next=next_path,
            refused=True,
            private=st.access.private_reads,
        )
    response = web.Response(status=303, headers={"Location": next_path})
    response.set_cookie(
        SESSION_COOKIE,
        st.sessions.create(st.engine.clock.now()),
        path=st.base or "/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=int(st.sessions.ttl),
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    st.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = web.Response(status=303, headers={"Location": f"{st.base}/login"})
    response.del_cookie(SESSION_COOKIE, path=st.base or "/")
    return response


def add_routes(app: web.Application, base: str) -> None:
    app.router.add_get(f"{base}/login", login_form)
    app.router.add_post(f"{base}/login", login)
    app.router.add_post(f"{base}/logout", logout)


__all__ = ["add_routes"]
