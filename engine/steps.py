"""Built-in steps that YAML DAGs (and Python ones) use as task functions: ``shell`` and ``http``.

``shell`` runs an argv list (no shell unless you call one), streams each line of stdout and stderr
into the task's log through the ``logging`` module (the engine stores log records per try), and
fails with the last lines of output when the command exits non-zero or runs past its ``timeout``.
The command runs in its own process group, killed whole on timeout or cancellation.

``http`` makes one request with aiohttp and returns the response's JSON (or its text when the
response is not JSON); a status outside ``expect_status`` (default: any 2xx) fails with the status
and the start of the body.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

from .errors import StepError, describe_exception

log = logging.getLogger("podium.task.step")  # under podium.task: logged at INFO in every try

MAX_LINE_CHARS = 10_000
"""Longer lines are cut in the log (the rest is replaced by a marker)."""


async def shell(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    tail: int = 20,
) -> dict[str, Any]:
    """Run ``argv``; return ``{"returncode": 0, "stdout": <its last lines>}``.

    ``env`` is added to the engine's environment; ``cwd`` is the working directory; ``timeout``
    (seconds) kills the command; ``tail`` is how many lines of output a failure shows and the
    result keeps.
    """
    command = [str(part) for part in argv]
    if not command:
        raise StepError("shell: argv is empty")
    name = command[0]
    last: collections.deque[str] = collections.deque(maxlen=tail)  # stdout and stderr, as logged
    stdout_tail: collections.deque[str] = collections.deque(maxlen=tail)
    try:
        process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as exc:
        raise StepError(f"shell: cannot start {name!r}: {describe_exception(exc)}") from None
    log.info("$ %s", " ".join(command))
    try:
        with anyio.move_on_after(timeout) as deadline:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None and process.stderr is not None
                tg.start_soon(_pump, process.stdout, "", last, stdout_tail)
                tg.start_soon(_pump, process.stderr, "[stderr] ", last, None)
            code = await process.wait()
    finally:
        if process.returncode is None:
            with anyio.CancelScope(shield=True):
                await _kill(process)
    if deadline.cancelled_caught:
        raise StepError(f"shell: {name!r} timed out after {timeout:g}s{_last_lines(last)}")
    if code != 0:
        raise StepError(f"shell: {name!r} exited with code {code}{_last_lines(last)}")
    return {"returncode": code, "stdout": "\n".join(stdout_tail)}


async def _pump(
    stream: ByteReceiveStream,
    prefix: str,
    last: collections.deque[str],
    keep: collections.deque[str] | None,
) -> None:
    """Log each line of ``stream`` as it arrives."""
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            _emit(raw, prefix, last, keep)
    if pending:
        _emit(pending, prefix, last, keep)


def _emit(
    raw: bytes, prefix: str, last: collections.deque[str], keep: collections.deque[str] | None
) -> None:
    line = raw.decode("utf-8", "replace").rstrip("\r")
    if len(line) > MAX_LINE_CHARS:
        line = f"{line[:MAX_LINE_CHARS]}... [{len(line) - MAX_LINE_CHARS} characters cut]"
    log.info("%s%s", prefix, line)
    last.append(f"{prefix}{line}")
    if keep is not None:
        keep.append(line)


async def _kill(process: Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await process.wait()


def _last_lines(lines: collections.deque[str]) -> str:
    if not lines:
        return " (no output)"
    return "; last lines:\n" + "\n".join(lines)


async def http(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    expect_status: Sequence[int] | None = None,
    timeout: float = 30.0,
) -> Any:
    """One HTTP request; the response's JSON, or its text when it is not JSON.

    ``json`` is sent as the JSON body; ``expect_status`` lists the statuses that count as success
    (default: any 2xx); ``timeout`` bounds the whole exchange in seconds.
    """
    import aiohttp  # loaded on first use: an engine without HTTP steps starts faster

    method = method.upper()
    where = f"http: {method} {url}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(method, url, headers=dict(headers or {}), json=json) as response,
        ):
            body = await response.text()
            status = response.status
            is_json = response.content_type == "application/json" or response.content_type.endswith(
                "+json"
            )
    except TimeoutError:
        raise StepError(f"{where} timed out after {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise StepError(f"{where} failed: {describe_exception(exc)}") from None
    ok = status in expect_status if expect_status else 200 <= status < 300
    if not ok:
        expected = ", ".join(map(str, expect_status)) if expect_status else "2xx"
        raise StepError(f"{where} answered {status} (expected {expected}): {body[:500]}")
    log.info("%s answered %s (%d bytes)", where, status, len(body))
    if is_json and body:
        import orjson

        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise StepError(f"{where} answered {status} with invalid JSON: {body[:200]}") from None
    return body
