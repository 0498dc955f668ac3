"""Who may do what: the bearer token for every mutation and, when reads are private, for reads too.

Reads are private when the server listens on anything but loopback (``reads_are_private``), unless
the operator opens them (``--public-read``). A private read needs ``Authorization: Bearer <token>``
or a browser session: the token is POSTed once to ``/login``, which answers with a random session
id in an HttpOnly, SameSite=Strict cookie; the id maps to an expiry here, the token never leaves the
server. ``/metrics`` and ``/api/health`` stay open for probes unless ``private_probes``.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

SESSION_COOKIE = "podium_session"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1024


def is_loopback(host: str) -> bool:
    """True when ``host`` (as given to bind) reaches this machine only: ``localhost``, 127.0.0.0/8,
    ``::1`` (bracketed or not), an IPv4-mapped loopback. Wildcards (``""``, ``0.0.0.0``, ``::``),
    other addresses and other names are not loopback."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False  # a host name other than localhost may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def reads_are_private(host: str, *, public_read: bool = False) -> bool:
    """Whether reads need the token on a server bound to ``host``."""
    return not public_read and not is_loopback(host)


def bearer_matches(header: str, token: str | None) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (constant-time compare)."""
    if token is None:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(
        value.strip().encode(), token.encode()
    )


def token_matches(given: str, token: str | None) -> bool:
    return token is not None and secrets.compare_digest(given.strip().encode(), token.encode())


def safe_next(target: str | None, base: str) -> str:
    """Where to go after signing in: a path of this app (never another site), else its home."""
    home = f"{base}/"
    if not target or not target.startswith(home) or target.startswith("//") or "\\" in target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return home
    return target


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """What needs the token besides mutations: every read (``private_reads``), and then also the
    probes ``/metrics`` and ``/api/health`` (``private_probes``)."""

    private_reads: bool = False
    private_probes: bool = False


class Sessions:
    """Browser sessions: random ids mapped to when they expire, at most ``limit`` (the oldest go
    first). Time is passed in; nothing here reads a clock."""

    def __init__(self, *, ttl: float = SESSION_TTL, limit: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def create(self, now: float) -> str:
        """A new session id, valid until ``now + ttl``."""
        for sid, expires in list(self._expiry.items()):
            if expires <= now:
                del self._expiry[sid]
        while len(self._expiry) >= self.limit:
            self._expiry.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = now + self.ttl
        return sid

    def valid(self, sid: str | None, now: float) -> bool:
        if not sid:
            return False
        expires = self._expiry.get(sid)
        if expires is None:
            return False
        if expires <= now:
            del self._expiry[sid]
            return False
        return True

    def end(self, sid: str | None) -> None:
        if sid:
            self._expiry.pop(sid, None)


__all__ = [
    "SESSION_COOKIE",
    "Access",
    "Sessions",
    "bearer_matches",
    "is_loopback",
    "reads_are_private",
    "safe_next",
    "token_matches",
]
