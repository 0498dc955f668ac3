"""Who may read: the loopback decision, where a sign-in may send the browser, browser sessions."""

from __future__ import annotations

import pytest

from engine.web.auth import (
    Sessions,
    bearer_matches,
    is_loopback,
    reads_are_private,
    safe_next,
)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.2", "127.255.0.9", "::1", "[::1]", "localhost", "LOCALHOST",
     "api.localhost", "::ffff:127.0.0.1", " 127.0.0.1 "],
)  # fmt: skip
def test_loopback_hosts_keep_reads_open(host: str) -> None:
    assert is_loopback(host)
    assert not reads_are_private(host)


@pytest.mark.parametrize(
    "host",
    ["", "0.0.0.0", "::", "[::]", "192.0.2.2", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0",
     "2001:db8::1", "example.com", "localhost.example.com", "128.0.0.1"],
)  # fmt: skip
def test_any_other_host_makes_reads_private_unless_public_read(host: str) -> None:
    assert not is_loopback(host)
    assert reads_are_private(host)
    assert not reads_are_private(host, public_read=True)


@pytest.mark.parametrize(
    ("target", "base", "expected"),
    [
        ("/runs/r1?x=1#task-a", "", "/runs/r1?x=1#task-a"),
        ("/podium/dags/d", "/podium", "/podium/dags/d"),
        ("/dags/d", "/podium", "/podium/"),  # outside the app
        ("//evil.example/", "", "/"),
        ("https://evil.example/", "", "/"),
        ("/\\evil.example", "", "/"),
        ("", "", "/"),
        (None, "/podium", "/podium/"),
    ],
)
def test_after_sign_in_the_browser_stays_in_the_app(
    target: str | None, base: str, expected: str
) -> None:
    assert safe_next(target, base) == expected


def test_bearer_header_must_carry_the_token() -> None:
    assert bearer_matches("Bearer s3cret", "s3cret")
    assert bearer_matches("bearer  s3cret ", "s3cret")
    assert not bearer_matches("Bearer s3cre", "s3cret")
    assert not bearer_matches("Basic s3cret", "s3cret")
    assert not bearer_matches("", "s3cret")
    assert not bearer_matches("Bearer s3cret", None)


def test_sessions_expire_end_and_are_bounded() -> None:
    sessions = Sessions(ttl=100.0, limit=3)
    first = sessions.create(now=1000.0)
    assert len(first) >= 40 and sessions.valid(first, 1099.0)
    assert not sessions.valid(first, 1100.0)  # expired, and forgotten
    assert len(sessions) == 0
    a, b, c = (sessions.create(now=2000.0) for _ in range(3))
    d = sessions.create(now=2001.0)  # over the limit: the oldest goes
    assert [sessions.valid(s, 2002.0) for s in (a, b, c, d)] == [False, True, True, True]
    sessions.end(c)
    assert not sessions.valid(c, 2002.0)
    assert not sessions.valid(None, 2002.0) and not sessions.valid("guess", 2002.0)
