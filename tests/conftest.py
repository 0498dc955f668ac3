"""Shared pytest fixtures. Real servers only: see tests/servers.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # make `tests.servers` importable however pytest is started
    sys.path.insert(0, _ROOT)

from tests.servers import KAFKA_ENV_VAR, KafkaBroker, MotoServer  # noqa: E402


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
