"""Where alerts go: notifiers, their payloads, and the queue that delivers to each.

Notifiers: ``SlackWebhook`` (incoming webhook), ``JSONWebhook`` (the alert as JSON), and
``CallbackNotifier`` (a Python callable, sync or async). Anything with ``name``, ``timeout``,
``retries``, ``backoff`` and ``async send(alert)`` is a ``Notifier``.

``Outbox`` is one notifier's delivery: a bounded queue (a full queue drops its oldest alert, with a
warning, instead of holding up the engine or the other notifiers) and a worker that retries a
failed delivery with exponential backoff, each try under the notifier's timeout; a notifier that
fails for good is logged and changes nothing else. ``engine.alerting`` owns one per notifier.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import urlsplit

import anyio

from .backoff import Backoff
from .errors import PodiumError, describe_exception

if TYPE_CHECKING:
    from .alerts import Alert, AlertKind

# the alerting logger: delivery is part of alerting for whoever reads or filters the logs
log = logging.getLogger("podium.alerts")


class DeliveryError(PodiumError):
    """A notifier could not deliver an alert (HTTP error status, connection refused, ...)."""


class PermanentDeliveryError(DeliveryError):
    """A delivery that retrying cannot fix (HTTP 4xx other than 408 and 429: a revoked webhook)."""


class Notifier(Protocol):
    """Delivers alerts somewhere. ``send`` makes one attempt and raises if it failed; its ``Outbox``
    applies ``timeout`` (seconds per attempt) and ``retries`` (with ``backoff`` doubling)."""

    name: str
    timeout: float
    retries: int
    backoff: float

    async def send(self, alert: Alert) -> None: ...


# -- payloads and notifiers -------------------------------------------------------------------------

_EMOJI: dict[AlertKind, str] = {
    "failure": ":red_circle:",
    "retry": ":large_orange_circle:",
    "slowdown": ":hourglass_flowing_sand:",
    "sla_miss": ":alarm_clock:",
    "recovery": ":large_green_circle:",
    "freshness_miss": ":snail:",
    "schema_change": ":triangular_ruler:",
}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` (also the notification) plus the same as blocks."""
    e = _slack_escape
    head = f"{_EMOJI[alert.kind]} *{alert.title}*"
    facts = [f"*Asset* `{e(alert.asset)}`"] if alert.asset is not None else []
    if alert.dag_id:
        facts.append(f"*DAG* `{e(alert.dag_id)}`")
    if alert.run_id:
        facts.append(f"*Run* `{e(alert.run_id)}`")
    if alert.task_id is not None:
        facts.append(f"*Task* `{e(alert.task_id)}`")
    if alert.try_number is not None:
        facts.append(f"*Try* {alert.try_number}")
    lines = [head, " · ".join(facts), e(alert.message)]
    if alert.error_last_line:
        lines.append(f"```{e(alert.error_last_line)}```")
    if alert.url and alert.asset is not None:
        lines.append(f"<{alert.url}|Open asset {e(alert.asset)}>")
    elif alert.url:
        lines.append(f"<{alert.url}|Open run {e(alert.run_id)}>")
    text = "\n".join(lines)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


class _Webhook:
    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 1.0,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PodiumError(f"{self.kind} URL must be http(s)://..., got {url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise PodiumError("timeout must be > 0, retries and backoff >= 0")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        # the host only: a webhook URL's path is often its secret, and names end up in logs
        self.name = name or f"{self.kind}:{parts.netloc}"

    def payload(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, alert: Alert) -> None:
        import aiohttp  # loaded on first delivery: an engine without webhooks starts faster

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=self.payload(alert), headers=self.headers) as resp,
            ):
                if resp.status >= 300:
                    body = (await resp.text(errors="replace"))[:200]
                    message = f"{self.name} answered HTTP {resp.status}: {body}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        raise PermanentDeliveryError(message)
                    raise DeliveryError(message)
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{self.name}: {describe_exception(exc)}") from exc


class SlackWebhook(_Webhook):
    """A Slack incoming webhook: the message names the DAG, run, task, try, the error's last line,
    and links to the run page."""

    kind = "slack"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return slack_payload(alert)


class JSONWebhook(_Webhook):
    """POSTs ``alert.to_json()``."""

    kind = "webhook"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return alert.to_json()


class CallbackNotifier:
    """Calls ``fn(alert)``: an async function is awaited; a sync one runs in a worker thread (on a
    timeout the thread is abandoned, not stopped)."""

    def __init__(
        self,
        fn: Callable[[Alert], Any],
        *,
        timeout: float = 5.0,
        retries: int = 0,
        backoff: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.fn = fn
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.name = name or f"callback:{getattr(fn, '__qualname__', repr(fn))}"

    async def send(self, alert: Alert) -> None:
        if inspect.iscoroutinefunction(self.fn):
            await self.fn(alert)
        else:
            await anyio.to_thread.run_sync(self.fn, alert, abandon_on_cancel=True)


# -- delivery ---------------------------------------------------------------------------------------


class Outbox:
    """One notifier's bounded queue of alerts and the worker that delivers them, one at a time.

    ``put`` never blocks; ``run`` (a background task) delivers. Outcomes are counted in ``stats``
    under ``(notifier name, "delivered" | "failed" | "dropped")``; ``stats`` may be shared by the
    outboxes of several notifiers.
    """

    def __init__(self, notifier: Notifier, size: int, stats: Counter[tuple[str, str]]) -> None:
        self.notifier = notifier
        self.size = size
        self.stats = stats
        self._queue: deque[Alert] = deque()
        self._busy = False
        self._wakeup: anyio.Event | None = None
        self._drained: anyio.Event | None = None

    @property
    def pending(self) -> int:
        """Alerts queued or being delivered."""
        return len(self._queue) + self._busy

    def put(self, alert: Alert) -> None:
        """Queue ``alert``; a full queue drops its oldest alert, with a warning."""
        if len(self._queue) >= self.size:
            oldest = self._queue.popleft()
            self.stats[(self.notifier.name, "dropped")] += 1
            log.warning(
                "alert queue of %s is full (%d waiting): dropped the oldest alert (%s %s/%s)",
                self.notifier.name,
                self.size,
                oldest.kind,
                oldest.dag_id,
                oldest.run_id,
            )
        self._queue.append(alert)
        if self._wakeup is not None:
            self._wakeup.set()

    async def wait_drained(self) -> None:
        """Return once every alert queued so far was delivered or given up on (needs ``run``)."""
        while self.pending:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    async def run(self) -> NoReturn:
        """Deliver the queued alerts, oldest first, until cancelled."""
        while True:
            while not self._queue:
                if self._drained is not None:
                    self._drained.set()
                    self._drained = None
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            alert = self._queue.popleft()
            self._busy = True
            try:
                await self.deliver(alert)
            finally:
                self._busy = False

    async def deliver(self, alert: Alert) -> None:
        """Send ``alert``: ``retries`` more tries after a failure (not after a permanent one),
        each under ``timeout``; a delivery that fails for good is logged and counted."""
        notifier = self.notifier
        attempts = notifier.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                with anyio.fail_after(notifier.timeout):
                    await notifier.send(alert)
            except Exception as exc:  # cancellation is not an Exception: it propagates
                reason = (
                    f"no answer within {notifier.timeout:g}s"
                    if isinstance(exc, TimeoutError)
                    else str(exc) or type(exc).__name__
                )
                if attempt < attempts and not isinstance(exc, PermanentDeliveryError):
                    delay = Backoff(max(notifier.backoff, 0.0)).delay(attempt)
                    log.warning(
                        "alert %s of %s/%s to %s failed (try %d of %d): %s; retrying in %.2fs",
                        alert.kind, alert.dag_id, alert.run_id, notifier.name, attempt,
                        attempts, reason, delay,
                    )  # fmt: skip
                    await anyio.sleep(delay)
                    continue
                self.stats[(notifier.name, "failed")] += 1
                log.error(
                    "alert %s of %s/%s not delivered to %s after %d tries: %s",
                    alert.kind, alert.dag_id, alert.run_id, notifier.name, attempt, reason,
                )  # fmt: skip
                return
            self.stats[(notifier.name, "delivered")] += 1
            return


__all__ = [
    "CallbackNotifier",
    "DeliveryError",
    "JSONWebhook",
    "Notifier",
    "Outbox",
    "PermanentDeliveryError",
    "SlackWebhook",
    "slack_payload",
]
