"""Reads are private off loopback: a real server bound to this machine's non-loopback address.

The address comes from ``ip -4 addr``; on a machine with none the tests skip, saying so (the
loopback decision itself is unit-tested in tests/unit/test_web_auth.py).
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from engine import Context, Engine, dag, task
from engine.web import serve

TOKEN = "private-token-5678"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None."""
    try:
        out = subprocess.run(
            ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = fields[fields.index("inet") + 1].split("/")[0]
            if not ipaddress.ip_address(address).is_loopback:
                return address
    return None


HOST = non_loopback_ipv4()
pytestmark = pytest.mark.skipif(
    HOST is None, reason="this machine has no non-loopback IPv4 address to bind to (ip -4 addr)"
)


@task
async def secret(ctx: Context, customer: str = "") -> str:
    ctx.log.info("looked up %s", customer)
    return f"balance of {customer}"


@dag
def accounts(customer: str = "") -> None:
    secret(customer)


@asynccontextmanager
async def served(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[Engine, str]]:
    assert HOST is not None
    async with Engine(tmp_path / "p.db", dags=[accounts], sensors=False, shutdown_grace=1) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, eng, HOST, 0, TOKEN, **options))
            yield eng, f"http://{HOST}:{port}"
            tg.cancel_scope.cancel()


async def status_of(http: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    async with http.get(url, allow_redirects=False, **kw) as resp:
        await resp.read()
        return resp.status


async def test_off_loopback_every_read_needs_the_token_or_a_session(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url), aiohttp.ClientSession() as http:
        run = await (await engine.trigger("accounts", {"customer": "ACME"})).wait(10)
        reads = [
            "/api",
            "/api/dags",
            "/api/dags/accounts",
            "/api/runs",
            f"/api/runs/{run.run_id}",
            f"/api/runs/{run.run_id}/tasks/secret/logs",
            "/api/events",
            "/api/operations",
        ]
        for path in reads:
            async with http.get(url + path) as resp:
                assert resp.status == 401, path
                assert "Bearer" in (await resp.json())["error"]
                assert resp.headers["WWW-Authenticate"] == 'Bearer realm="podium"'
                assert "ACME" not in await resp.text()
            async with http.get(url + path, headers=AUTH) as resp:
                assert resp.status == 200, path
        async with http.get(f"{url}/api/runs/{run.run_id}", headers=AUTH) as resp:
            assert (await resp.json())["params"] == {"customer": "ACME"}
        # pages send a browser to the sign-in form, and back where it was going afterwards
        for path in ["/", "/runs", f"/runs/{run.run_id}", f"/runs/{run.run_id}/gantt", "/events"]:
            async with http.get(url + path, allow_redirects=False) as resp:
                assert resp.status == 303, path
                assert resp.headers["Location"].startswith("/login?next=")
                assert "ACME" not in await resp.text()
        # the probes, the sign-in form and the static files stay open
        for path in ["/api/health", "/metrics", "/login", "/static/podium.js"]:
            assert await status_of(http, url + path) in (200, 501), path
        # a wrong token is refused, a right one starts a session in an HttpOnly SameSite cookie
        form = {"token": "wrong", "next": f"/runs/{run.run_id}"}
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 401 and "The token was refused." in await resp.text()
            assert "Set-Cookie" not in resp.headers
        form["token"] = TOKEN
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == f"/runs/{run.run_id}"
            cookie = resp.headers["Set-Cookie"]
            sid = resp.cookies["podium_session"].value
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie and len(sid) >= 40
        session = {"Cookie": f"podium_session={sid}"}
        async with http.get(f"{url}/runs/{run.run_id}", headers=session) as resp:
            assert resp.status == 200 and "ACME" in await resp.text()
        for path in reads:
            assert await status_of(http, url + path, headers=session) == 200, path
        # the session reads; it does not write (mutations keep needing the bearer token)
        async with http.post(f"{url}/api/dags/accounts/trigger", json={}, headers=session) as resp:
            assert resp.status == 401
        async with http.post(f"{url}/api/dags/accounts/trigger", json={}, headers=AUTH) as resp:
            assert resp.status == 201
        # a guessed session is nobody; signing out ends the real one
        assert (
            await status_of(http, f"{url}/api/runs", headers={"Cookie": "podium_session=x"}) == 401
        )
        async with http.post(f"{url}/logout", headers=session, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
        assert await status_of(http, f"{url}/api/runs", headers=session) == 401


async def test_public_read_opens_reads_and_private_probes_closes_the_probes(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, public_read=True) as (_, url), aiohttp.ClientSession() as http:
        assert await status_of(http, f"{url}/api/runs") == 200
        assert await status_of(http, f"{url}/") == 200
        async with http.post(f"{url}/api/dags/accounts/trigger", json={}) as resp:
            assert resp.status == 401  # writes still need the token
    async with served(tmp_path, private_probes=True) as (_, url), aiohttp.ClientSession() as http:
        for path in ["/api/health", "/metrics"]:
            assert await status_of(http, url + path) == 401, path
            assert await status_of(http, url + path, headers=AUTH) in (200, 501), path


async def test_the_engine_option_reaches_the_server(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for public, expected in ((False, 401), (True, 200)):
            async with Engine(
                tmp_path / "e.db",
                dags=[accounts],
                sensors=False,
                http=f"{HOST}:0",
                http_token=TOKEN,
                http_public_read=public,
            ) as engine:
                url = f"http://{HOST}:{engine.http_port}"
                assert await status_of(http, f"{url}/api/runs") == expected
                assert await status_of(http, f"{url}/api/health") == 200
