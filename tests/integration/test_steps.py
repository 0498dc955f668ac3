"""The built-in steps for real: subprocesses for ``shell``, a loopback aiohttp server for ``http``."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from engine import StepError
from engine.steps import http, shell

PY = sys.executable


async def test_shell_logs_both_streams_and_returns_stdout_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = "import os, sys; print('out', os.environ['GREETING']); print('err', file=sys.stderr); print(os.getcwd())"
    with caplog.at_level(logging.INFO, logger="podium.task.step"):
        result = await shell([PY, "-c", script], env={"GREETING": "hi"}, cwd=str(tmp_path))
    assert result == {"returncode": 0, "stdout": f"out hi\n{tmp_path}"}
    messages = [r.getMessage() for r in caplog.records if r.name == "podium.task.step"]
    assert "out hi" in messages
    assert "[stderr] err" in messages
    assert messages[0].startswith(f"$ {PY} -c")


async def test_shell_nonzero_exit_fails_with_the_last_lines() -> None:
    script = "import sys\nfor i in range(30): print('line', i)\nprint('boom', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(StepError) as caught:
        await shell([PY, "-c", script], tail=5)
    message = str(caught.value)
    assert message.startswith(f"shell: {PY!r} exited with code 3; last lines:\n")
    assert "line 29" in message and "[stderr] boom" in message
    assert "line 25" not in message  # only the last 5 lines


async def test_shell_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; echo started; wait"
    with pytest.raises(StepError) as caught:
        await shell(["sh", "-c", script], timeout=1)
    assert str(caught.value) == "shell: 'sh' timed out after 1s; last lines:\nstarted"
    child = int(pid_file.read_text())
    with anyio.fail_after(5):  # SIGKILL went to the whole group before shell() raised
        while _alive(child):
            await anyio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


async def test_shell_command_not_found() -> None:
    with pytest.raises(
        StepError, match=r"shell: cannot start 'no-such-command-xyz': FileNotFoundError"
    ):
        await shell(["no-such-command-xyz"])


class Server:
    def __init__(self) -> None:
        self.port = 0
        self.seen: list[dict[str, Any]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def items(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.seen.append(
            {"method": request.method, "auth": request.headers.get("Authorization"), "body": body}
        )
        return web.json_response(
            {"ok": True, "got": body}, status=201 if request.method == "POST" else 200
        )

    async def text(self, request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")


@asynccontextmanager
async def server() -> AsyncIterator[Server]:
    s = Server()
    app = web.Application()
    app.router.add_route("*", "/items", s.items)
    app.router.add_get("/text", s.text)
    app.router.add_get("/broken", s.broken)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    s.port = runner.addresses[0][1]
    try:
        yield s
    finally:
        await runner.cleanup()


async def test_http_post_json_with_headers_returns_the_json() -> None:
    async with server() as s:
        result = await http(
            s.url("/items"),
            method="post",
            headers={"Authorization": "Bearer t"},
            json={"day": "2026-11-25"},
            expect_status=[201],
        )
    assert result == {"ok": True, "got": {"day": "2026-11-25"}}
    assert s.seen == [{"method": "POST", "auth": "Bearer t", "body": {"day": "2026-11-25"}}]


async def test_http_text_response_is_returned_as_text() -> None:
    async with server() as s:
        assert await http(s.url("/text")) == "plain words"


async def test_http_unexpected_status_fails_with_status_and_body() -> None:
    async with server() as s:
        with pytest.raises(StepError) as caught:
            await http(s.url("/broken"))
        assert str(caught.value) == (
            f"http: GET {s.url('/broken')} answered 503 (expected 2xx): down for maintenance"
        )
        with pytest.raises(StepError, match=r"answered 201 \(expected 200\)"):
            await http(s.url("/items"), method="POST", json={}, expect_status=[200])


async def test_http_connection_refused() -> None:
    async with server() as s:
        url = s.url("/items")
    with pytest.raises(StepError, match=rf"http: GET {url} failed: ClientConnectorError"):
        await http(url)
