"""Shared pytest fixtures. Real servers only: see tests/servers.py.

Event loops: async tests run on asyncio's default loop, and the modules marked ``each_loop`` (the
engine's own integration tests) run a second time on uvloop, so ``make test`` proves both without
running the whole suite twice. ``--loop asyncio`` or ``--loop uvloop`` (default: ``$PODIUM_LOOP``)
runs every async test on that one loop instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # make `tests.servers` importable however pytest is started
    sys.path.insert(0, _ROOT)

from tests.servers import KAFKA_ENV_VAR, KafkaBroker, MotoServer  # noqa: E402

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
LOOP_ENV_VAR = "PODIUM_LOOP"
_ONLY_LOOP = pytest.StashKey[str | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop",
        choices=sorted(LOOPS),
        default=None,
        help=f"run every async test on this event loop only (default: ${LOOP_ENV_VAR}, else "
        "asyncio's, plus uvloop for modules marked each_loop)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "each_loop: run the async tests on asyncio's default loop and on uvloop"
    )
    only = config.getoption("--loop") or os.environ.get(LOOP_ENV_VAR) or None
    if only is not None and only not in LOOPS:
        raise pytest.UsageError(f"${LOOP_ENV_VAR}={only!r}: choose one of {', '.join(LOOPS)}")
    config.stash[_ONLY_LOOP] = only


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loops an async test runs on (pytest-asyncio parametrizes it over them)."""
    only = config.stash[_ONLY_LOOP]
    if only is not None:
        return {only: LOOPS[only]}
    if item.get_closest_marker("each_loop") is not None:
        return LOOPS
    return {"asyncio": LOOPS["asyncio"]}


@pytest.fixture
def loop_name(request: pytest.FixtureRequest) -> str:
    """The name (a key of ``LOOPS``) of the event loop this async test runs on."""
    loops = pytest_asyncio_loop_factories(request.config, request.node)
    if len(loops) == 1:
        return next(iter(loops))
    ids = request.node.callspec.id.split("-")  # e.g. "uvloop" or "uvloop-2"
    return next(name for name in loops if name in ids)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One tansu broker for the session, started on first use (or PODIUM_TEST_KAFKA's broker).

    Shared: use unique topic names, and don't stop it; tests that stop/restart a broker take
    ``kafka_broker_private``.
    """
    broker = KafkaBroker.from_env().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka_broker_private() -> Iterator[KafkaBroker]:
    """A tansu broker of this test's own, free to stop and restart (memory-only: data is lost)."""
    if os.environ.get(KAFKA_ENV_VAR):
        pytest.skip(f"{KAFKA_ENV_VAR} is set: tests that stop the broker need a local tansu")
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3/SQS server for the session; fake AWS credentials are in os.environ meanwhile.

    Shared: use unique bucket/queue names (or call ``moto_server.reset()``).
    """
    server = MotoServer().start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                mp.delenv(name, raising=False)
            for name, value in server.aws_env().items():
                if name != "AWS_ENDPOINT_URL":  # clients must name the endpoint themselves
                    mp.setenv(name, value)
            yield server
    finally:
        server.close()
