"""Serving the app on a TCP port for as long as the caller's task group lives."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio
import anyio.abc
from aiohttp import web

from ..errors import PodiumError
from .app import make_app
from .auth import reads_are_private
from .common import STATE

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("podium.web")

CLEANUP_TIMEOUT = 5.0


def token_file(db: str | os.PathLike[str]) -> Path:
    """Where the generated API token of the engine on state file ``db`` is kept."""
    return Path(f"{os.fspath(db)}.token")


def load_or_create_token(db: str | os.PathLike[str]) -> tuple[str, bool]:
    """The token kept beside the state file, created (mode 0600) on first use: ``(token, created)``.

    When the file cannot be written, a token for this process only is returned (created=True)."""
    path = token_file(db)
    try:
        existing = path.read_text().strip()
        if existing:
            return existing, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot read API token file %s: %s", path, exc)
    token = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as exc:
        log.warning(
            "cannot save API token to %s (%s); it is valid for this process only", path, exc
        )
    return token, True


async def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    *,
    base_path: str = "",
    public_read: bool = False,
    private_probes: bool = False,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the API and UI of ``engine`` on ``host:port`` until cancelled.

    Start it with ``port = await tg.start(serve, engine, ...)``: readiness reports the bound port
    (useful with ``port=0``). Without ``token``, one is generated on first start, kept beside the
    state file (``<db>.token``) and printed once; mutations require ``Authorization: Bearer``.
    Bound to anything but loopback, reads need the token too (a browser signs in once at
    ``/login``) unless ``public_read``; ``/metrics`` and ``/api/health`` stay open unless
    ``private_probes``.
    """
    if token is None:
        token, created = load_or_create_token(engine.db)
        if created:
            print(
                f"podium: API token (mutations require Authorization: Bearer <token>): {token}\n"
                f"podium: saved to {token_file(engine.db)}",
                file=sys.stderr,
                flush=True,
            )
        else:
            log.info("API token read from %s", token_file(engine.db))
    private = reads_are_private(host, public_read=public_read)
    app = make_app(
        engine,
        token=token,
        base_path=base_path,
        private_reads=private,
        private_probes=private_probes,
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLEANUP_TIMEOUT)
    await runner.setup()
    try:
        async with anyio.create_task_group() as jobs:
            app[STATE].jobs = jobs
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise PodiumError(
                    f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}"
                ) from None
            bound = _bound_port(runner, port)
            base = app[STATE].base
            log.info(
                "serving the API and UI on http://%s:%d%s/ (reads %s)",
                host,
                bound,
                base,
                "need the token" if private else "open",
            )
            task_status.started(bound)
            await anyio.sleep_forever()
    finally:
        app[STATE].jobs = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT + 1):
            await runner.cleanup()
    raise AssertionError("unreachable")  # pragma: no cover


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


__all__ = ["load_or_create_token", "serve", "token_file"]
