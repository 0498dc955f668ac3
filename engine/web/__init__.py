"""Podium's HTTP API and web UI (aiohttp), served by the engine's process.

``make_app(engine, token=...)`` builds the aiohttp application; ``serve(engine, host, port)`` runs it
inside the caller's task group (``port = await tg.start(serve, engine, "127.0.0.1", 0)``).
The JSON API lives under ``/api``; the pages are ``/``, ``/dags/{dag_id}``, ``/runs`` and
``/runs/{run_id}``; ``/metrics`` serves Prometheus text when the engine exports it.
"""

from .app import make_app
from .server import load_or_create_token, serve, token_file

__all__ = ["load_or_create_token", "make_app", "serve", "token_file"]
