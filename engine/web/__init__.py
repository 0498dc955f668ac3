"""Podium's HTTP API and web UI (aiohttp), served by the engine's process.

``make_app(engine, token=...)`` builds the aiohttp application; ``serve(engine, host, port)`` runs it
inside the caller's task group (``port = await tg.start(serve, engine, "127.0.0.1", 0)``).
The JSON API lives under ``/api``; the pages are ``/``, ``/dags/{dag_id}``, ``/runs`` and
``/runs/{run_id}``; ``/metrics`` serves Prometheus text when the engine exports it.
Mutations need the API token; off loopback, reads do too (``reads_are_private``, ``/login``).
"""

from .app import make_app
from .auth import is_loopback, reads_are_private
from .server import load_or_create_token, serve, token_file

__all__ = [
    "is_loopback",
    "load_or_create_token",
    "make_app",
    "reads_are_private",
    "serve",
    "token_file",
]
