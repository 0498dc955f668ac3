"""Alerts: a task failed, is being retried, got slow, missed its SLA, or a DAG recovered; an asset
missed its freshness or its schema changed.

``Alerting`` is an engine ``Observer``: on each recorded change it decides, synchronously and
cheaply, whether an alert is due and queues it. ``await alerting.run()`` (in the engine's task group)
does the rest in the background:

- one delivery worker per notifier, each with its own bounded queue (a full queue drops its oldest
  alert, with a warning, instead of holding up the engine or the other notifiers), retrying a failed
  delivery with exponential backoff, each try under the notifier's timeout; a notifier that fails
  for good is logged and changes nothing else;
- a watch that, every ``check_interval`` seconds of the engine's clock, compares running tries with
  their baselines (``engine.slowness``) and raises one ``slowdown`` alert per slow try *while it
  runs*, and checks SLA deadlines, and follows the committed asset events
  (``engine.asset_alerts``): one ``freshness_miss`` per asset not written within its
  ``fresh_within``, one ``schema_change`` per event whose schema differs from the previous one.

Baselines start from the state file (recent successful tries of each DAG's tasks) and then follow
the successes this engine observes.

Notifiers: ``SlackWebhook`` (incoming webhook), ``JSONWebhook`` (the alert as JSON), and
``CallbackNotifier`` (a Python callable, sync or async). Anything with ``name``, ``timeout``,
``retries``, ``backoff`` and ``async send(alert)`` is a ``Notifier``.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import anyio
import anyio.abc

from .asset_alerts import AssetWatch, FreshnessMissed, SchemaChanged
from .assets import describe_schema_changes
from .backoff import Backoff
from .durations import format_duration
from .errors import PodiumError, describe_exception
from .slowness import (
    SLA,
    Baselines,
    RunningTry,
    Slowdown,
    SlownessPolicy,
    TaskKey,
    as_sla,
    find_slow,
    policy_lookup,
    sla_deadline,
    sla_missed,
)
from .states import RunState, TaskState

if TYPE_CHECKING:
    from .dag import DAG
    from .observe import EngineView
    from .run_state import ActiveRun, TaskRecord

log = logging.getLogger("podium.alerts")

AlertKind = Literal[
    "failure", "retry", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change"
]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "failure", "retry", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change",
)  # fmt: skip
DEFAULT_ON: tuple[AlertKind, ...] = (
    "failure", "slowdown", "sla_miss", "recovery", "freshness_miss", "schema_change",
)  # fmt: skip

DEFAULT_SLOWNESS = SlownessPolicy()

SLASpec = SLA | float
SLAResolver = Callable[["DAG", str | None], SLASpec | None]
"""``(dag, task_id or None for the DAG itself) -> SLA``, seconds, or None."""


class DeliveryError(PodiumError):
    """A notifier could not deliver an alert (HTTP error status, connection refused, ...)."""


class PermanentDeliveryError(DeliveryError):
    """A delivery that retrying cannot fix (HTTP 4xx other than 408 and 429: a revoked webhook)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """Something an operator should hear about. ``task_id`` / ``try_number`` are None for alerts
    about a whole run (a run failed before any task did, a DAG SLA, a recovery). Asset alerts name
    the ``asset`` (its URI); their run and DAG are those of the asset's last event ("" if none)."""

    kind: AlertKind
    dag_id: str
    run_id: str
    message: str
    task_id: str | None = None
    try_number: int | None = None
    error_last_line: str | None = None
    url: str | None = None
    at: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    asset: str | None = None

    @property
    def title(self) -> str:
        return _TITLES[self.kind]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["title"] = self.title
        data["at_iso"] = datetime.fromtimestamp(self.at, UTC).isoformat()
        return data


_TITLES: dict[AlertKind, str] = {
    "failure": "Task failed",
    "retry": "Task failed, retrying",
    "slowdown": "Task running slow",
    "sla_miss": "SLA missed",
    "recovery": "DAG recovered",
    "freshness_miss": "Asset not fresh",
    "schema_change": "Asset schema changed",
}
_EMOJI: dict[AlertKind, str] = {
    "failure": ":red_circle:",
    "retry": ":large_orange_circle:",
    "slowdown": ":hourglass_flowing_sand:",
    "sla_miss": ":alarm_clock:",
    "recovery": ":large_green_circle:",
    "freshness_miss": ":snail:",
    "schema_change": ":triangular_ruler:",
}


def last_line(text: str | None, limit: int = 500) -> str | None:
    """The last non-blank line of an error message or traceback (what an operator reads first)."""
    if not text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- notifiers --------------------------------------------------------------------------------------


class Notifier(Protocol):
    """Delivers alerts somewhere. ``send`` makes one attempt and raises if it failed; ``Alerting``
    applies ``timeout`` (seconds per attempt) and ``retries`` (with ``backoff`` doubling)."""

    name: str
    timeout: float
    retries: int
    backoff: float

    async def send(self, alert: Alert) -> None: ...


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


# -- Alerting ---------------------------------------------------------------------------------------


class _Outbox:
    """A notifier's queue of alerts and its worker's state."""

    def __init__(self, notifier: Notifier, size: int) -> None:
        self.notifier = notifier
        self.queue: deque[Alert] = deque()
        self.size = size
        self.busy = False
        self.wakeup: anyio.Event | None = None
        self.drained: anyio.Event | None = None

    @property
    def idle(self) -> bool:
        return not self.queue and not self.busy


def sla_from_options(dag: DAG, task_id: str | None) -> SLASpec | None:
    """The ``sla=`` a DAG (``task_id`` None) or one of its tasks declares, if the option exists."""
    if task_id is None:
        value = getattr(dag, "sla", None)
    else:
        node = dag.tasks.get(task_id.partition("[")[0] if task_id.endswith("]") else task_id)
        value = getattr(node.options, "sla", None) if node is not None else None
    return value if isinstance(value, (SLA, int, float)) else None


def sla_table(table: Mapping[str | TaskKey, SLASpec]) -> SLAResolver:
    """An ``SLAResolver`` from ``{"dag_id": 3600, ("dag_id", "task_id"): SLA(600, "start")}``."""
    entries = dict(table)

    def resolve(dag: DAG, task_id: str | None) -> SLASpec | None:
        key: str | TaskKey = dag.dag_id if task_id is None else (dag.dag_id, task_id)
        return entries.get(key)

    return resolve


class Alerting:
    """Decides which alerts are due and delivers them in the background; see the module doc.

    ``on``: the kinds to send (add ``"retry"`` to hear about each failed try that will be retried).
    ``base_url``: the web UI's address; alerts link to ``{base_url}/runs/{run_id}``.
    ``slowness``: the default ``SlownessPolicy`` (None: no slowdown alerts); ``slowness_overrides``
    per DAG id or (dag_id, task_id), a None value turning checks off there. ``sla``: a mapping
    (see ``sla_table``) or a resolver; default: the DAGs' and tasks' ``sla=`` options.
    ``check_interval``: seconds of the engine clock between slowness / SLA checks. ``queue_size``:
    alerts each notifier may have waiting. ``history_runs``: recent runs per DAG read at start to
    seed the baselines.
    """

    def __init__(
        self,
        engine: EngineView,
        notifiers: Sequence[Notifier] = (),
        *,
        on: Iterable[AlertKind] = DEFAULT_ON,
        base_url: str | None = None,
        slowness: SlownessPolicy | None = DEFAULT_SLOWNESS,
        slowness_overrides: Mapping[str | TaskKey, SlownessPolicy | None] | None = None,
        sla: Mapping[str | TaskKey, SLASpec] | SLAResolver | None = None,
        check_interval: float = 1.0,
        queue_size: int = 100,
        history_runs: int = 50,
    ) -> None:
        self.on = frozenset(on)
        unknown = self.on - set(ALERT_KINDS)
        if unknown:
            raise PodiumError(f"unknown alert kind(s) {sorted(unknown)}; known: {ALERT_KINDS}")
        if check_interval <= 0 or queue_size < 1 or history_runs < 0:
            raise PodiumError("check_interval must be > 0, queue_size >= 1, history_runs >= 0")
        self._engine = engine
        self.notifiers = list(notifiers)
        self.base_url = base_url.rstrip("/") if base_url else None
        self._policy_for = policy_lookup(slowness, slowness_overrides)
        windows = [p.window for p in [slowness, *(slowness_overrides or {}).values()] if p]
        self.baselines = Baselines(max(windows, default=20))
        if sla is None:
            self._sla_resolver: SLAResolver = sla_from_options
        elif callable(sla):
            self._sla_resolver = sla
        else:
            self._sla_resolver = sla_table(sla)
        self.check_interval = check_interval
        self.history_runs = history_runs
        self._outboxes = [_Outbox(n, queue_size) for n in self.notifiers]
        self.stats: Counter[tuple[str, str]] = Counter()
        """(notifier name, "delivered" | "failed" | "dropped") -> alerts."""
        self.sent: deque[Alert] = deque(maxlen=100)
        """The latest alerts raised (for the web UI / API)."""
        self.checked_at: float | None = None
        """Engine-clock time of the last slowness / SLA check."""
        self.assets_checked_at: float | None = None
        """Engine-clock time of the last freshness / schema check."""
        self._assets = AssetWatch(engine)
        self._runs: dict[str, ActiveRun] = {}  # unfinished runs seen
        self._running: dict[tuple[str, str], RunningTry] = {}
        self._slow: dict[tuple[str, str], Slowdown] = {}  # running tries flagged slow
        self._failed_tries: dict[str, set[tuple[str, int]]] = {}  # run_id -> (task, try)
        self._sla_missed: dict[str, set[str | None]] = {}  # run_id -> task ids (None: the run)
        self._last_outcome: dict[str, RunState] = {}
        self._slas: dict[tuple[int, str | None], SLA | None] = {}
        self._sla_task_cache: dict[int, tuple[str, ...] | None] = {}
        self._loading = False
        self._observed_while_loading: set[str] = set()

    # -- Observer -----------------------------------------------------------------------------------

    def task_changed(self, run: ActiveRun, task: TaskRecord) -> None:
        try:
            self._task_changed(run, task)
        except Exception:  # alerting must never break a run
            log.exception("alerting: could not handle a change of %s/%s", run.run_id, task.task_id)

    def run_changed(self, run: ActiveRun) -> None:
        try:
            self._run_changed(run)
        except Exception:
            log.exception("alerting: could not handle a change of run %s", run.run_id)

    def _task_changed(self, run: ActiveRun, rec: TaskRecord) -> None:
        key = (run.run_id, rec.task_id)
        if not run.state.finished:
            self._runs[run.run_id] = run
        state = rec.state
        if state is TaskState.RUNNING:
            if rec.started_at is not None:
                self._running[key] = RunningTry(
                    run.dag.dag_id, run.run_id, rec.task_id, rec.try_number, rec.started_at
                )
            return
        ran = self._running.pop(key, None)
        if self._slow:
            self._slow.pop(key, None)
        if state is TaskState.SUCCESS:
            if ran is not None and rec.started_at is not None and rec.finished_at is not None:
                self.baselines.add(run.dag.dag_id, rec.task_id, rec.finished_at - rec.started_at)
                if self._loading:
                    self._observed_while_loading.add(run.run_id)
        elif state in (TaskState.FAILED, TaskState.UP_FOR_RETRY):
            failed = self._failed_tries.setdefault(run.run_id, set())
            kind: AlertKind = "failure" if state is TaskState.FAILED else "retry"
            if (rec.task_id, rec.try_number) not in failed:
                failed.add((rec.task_id, rec.try_number))
                if kind in self.on:
                    self._task_alert(kind, run, rec, self._engine.clock.now())
        if (
            state in (TaskState.SUCCESS, TaskState.SKIPPED)
            and self._sla_tasks(run.dag) is not None
            and self._sla_of(run.dag, rec.task_id)
        ):
            self._check_sla(run, rec.task_id, rec.finished_at, self._engine.clock.now())

    def _task_alert(self, kind: AlertKind, run: ActiveRun, rec: TaskRecord, now: float) -> None:
        error = last_line(rec.error)
        where = f"{run.dag.dag_id}.{rec.task_id}"
        if kind == "failure":
            message = f"Task {where} failed on try {rec.try_number}: {error}"
        else:
            message = f"Task {where} failed on try {rec.try_number} and will be retried: {error}"
        self.emit(self._alert(kind, run, message, now, rec.task_id, rec.try_number, error))

    def _run_changed(self, run: ActiveRun) -> None:
        if not run.state.finished:
            self._runs[run.run_id] = run
            return
        now = self._engine.clock.now()
        self._check_sla(run, None, run.finished_at, now)
        self._runs.pop(run.run_id, None)
        dag_id = run.dag.dag_id
        task_failed = bool(self._failed_tries.pop(run.run_id, None))
        self._sla_missed.pop(run.run_id, None)
        if run.state is RunState.FAILED and not task_failed and "failure" in self.on:
            reason = run.note or "failed"
            message = f"Run {run.run_id} of DAG {dag_id} failed: {reason}"
            self.emit(self._alert("failure", run, message, now, error=last_line(run.note)))
        if run.state in (RunState.SUCCESS, RunState.FAILED):
            previous = self._last_outcome.get(dag_id)
            self._last_outcome[dag_id] = run.state
            if (
                run.state is RunState.SUCCESS
                and previous is RunState.FAILED
                and "recovery" in self.on
            ):
                message = f"DAG {dag_id} recovered: run {run.run_id} succeeded after a failed run"
                self.emit(self._alert("recovery", run, message, now))

    def _alert(
        self,
        kind: AlertKind,
        run: ActiveRun,
        message: str,
        now: float,
        task_id: str | None = None,
        try_number: int | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Alert:
        return Alert(
            kind=kind,
            dag_id=run.dag.dag_id,
            run_id=run.run_id,
            task_id=task_id,
            try_number=try_number,
            error_last_line=error,
            message=message,
            url=self.run_url(run.run_id),
            at=now,
            details=details or {},
        )

    def run_url(self, run_id: str) -> str | None:
        return f"{self.base_url}/runs/{quote(run_id, safe='')}" if self.base_url else None

    # -- queueing -----------------------------------------------------------------------------------

    def emit(self, alert: Alert) -> None:
        """Queue ``alert`` for every notifier; never blocks (a full queue drops its oldest)."""
        self.sent.append(alert)
        log.info("alert %s: %s", alert.kind, alert.message)
        for box in self._outboxes:
            if len(box.queue) >= box.size:
                oldest = box.queue.popleft()
                self.stats[(box.notifier.name, "dropped")] += 1
                log.warning(
                    "alert queue of %s is full (%d waiting): dropped the oldest alert (%s %s/%s)",
                    box.notifier.name,
                    box.size,
                    oldest.kind,
                    oldest.dag_id,
                    oldest.run_id,
                )
            box.queue.append(alert)
            if box.wakeup is not None:
                box.wakeup.set()

    @property
    def pending(self) -> int:
        """Alerts queued or being delivered, over all notifiers."""
        return sum(len(b.queue) + b.busy for b in self._outboxes)

    async def flush(self) -> None:
        """Return once every alert queued so far was delivered or given up on (needs ``run``)."""
        for box in self._outboxes:
            while not box.idle:
                if box.drained is None:
                    box.drained = anyio.Event()
                await box.drained.wait()

    def is_slow(self, run_id: str, task_id: str) -> bool:
        """Whether this task's running try has been flagged slow."""
        return (run_id, task_id) in self._slow

    # -- background ---------------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Seed the baselines from the state file, then deliver alerts and watch running tries
        until cancelled. ``started`` once the baselines are loaded."""
        try:
            await self.load_history()
        except PodiumError as exc:
            log.warning("alerting: could not read task durations from the state file: %s", exc)
        async with anyio.create_task_group() as tg:
            for box in self._outboxes:
                tg.start_soon(self._deliver_loop, box)
            tg.start_soon(self._watch)
            task_status.started()
            await anyio.sleep_forever()
        raise AssertionError("unreachable: the alerting loops never return")

    async def load_history(self) -> None:
        """Seed baselines (and each DAG's last outcome, for recovery alerts) from recent runs."""
        engine = self._engine
        self._loading = True
        try:
            for dag_id, dag in engine.dags.items():
                await self._load_dag_history(engine, dag_id, dag)
        finally:
            self._loading = False
            self._observed_while_loading.clear()

    async def _load_dag_history(self, engine: EngineView, dag_id: str, dag: DAG) -> None:
        want = {}
        for tid in dag.tasks:
            policy = self._policy_for(dag_id, tid)
            if policy is not None:
                want[tid] = policy.window
        found: dict[str, list[float]] = {tid: [] for tid in want}
        if not self.history_runs:
            return
        runs = await engine.store.list_runs(dag_id=dag_id, limit=self.history_runs)
        for run in runs:  # newest first
            if dag_id not in self._last_outcome and run.state in (
                RunState.SUCCESS,
                RunState.FAILED,
            ):
                self._last_outcome[dag_id] = run.state
            if all(len(found[t]) >= want[t] for t in want):
                if dag_id in self._last_outcome:
                    break
                continue
            if run.run_id in self._observed_while_loading:
                continue
            for tid, ti in (await engine.store.task_instances(run.run_id)).items():
                duration = ti.duration
                if ti.state is TaskState.SUCCESS and duration is not None and tid in found:
                    if len(found[tid]) < want[tid]:
                        found[tid].append(duration)
        for tid, durations in found.items():
            self.baselines.seed(dag_id, tid, reversed(durations))

    async def _deliver_loop(self, box: _Outbox) -> NoReturn:
        while True:
            while not box.queue:
                if box.drained is not None:
                    box.drained.set()
                    box.drained = None
                box.wakeup = anyio.Event()
                await box.wakeup.wait()
            alert = box.queue.popleft()
            box.busy = True
            try:
                await self._deliver(box.notifier, alert)
            finally:
                box.busy = False

    async def _deliver(self, notifier: Notifier, alert: Alert) -> None:
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

    async def _watch(self) -> NoReturn:
        clock = self._engine.clock
        while True:
            now = clock.now()
            try:
                self.check(now)
            except Exception:  # a bug here must not take the engine down
                log.exception("alerting: slowness / SLA check failed")
            try:
                await self.check_assets(now)
            except PodiumError as exc:  # the store is failing: the next round tries again
                log.warning("alerting: could not check assets: %s", exc)
            except Exception:
                log.exception("alerting: asset check failed")
            await clock.sleep_until(now + self.check_interval)

    async def check_assets(self, now: float) -> None:
        """Alert on asset freshness misses and schema changes as of ``now`` (each once)."""
        for finding in await self._assets.check(now):
            if isinstance(finding, SchemaChanged):
                self._schema_alert(finding, now)
            else:
                self._freshness_alert(finding, now)
        self.assets_checked_at = now

    def asset_url(self, uri: str) -> str | None:
        return f"{self.base_url}/assets/{quote(uri, safe='')}" if self.base_url else None

    def _schema_alert(self, found: SchemaChanged, now: float) -> None:
        ev = found.event
        what = describe_schema_changes(found.changes)
        message = (
            f"Asset {ev.uri} changed its schema in the event of {ev.dag_id}.{ev.task_id} "
            f"(run {ev.run_id}): {what}"
        )
        log.warning("schema change: %s", message)
        if "schema_change" not in self.on:
            return
        self.emit(
            Alert(
                kind="schema_change",
                dag_id=ev.dag_id or "",
                run_id=ev.run_id or "",
                task_id=ev.task_id,
                try_number=ev.try_number,
                message=message,
                url=self.asset_url(ev.uri),
                at=now,
                details={**found.changes, "seq": ev.seq},
                asset=ev.uri,
            )
        )

    def _freshness_alert(self, found: FreshnessMissed, now: float) -> None:
        last = found.last
        since = (
            f"its last event ({last.dag_id}.{last.task_id}, run {last.run_id})"
            if last is not None
            else "it was declared, with no event yet"
        )
        message = (
            f"Asset {found.uri} is not fresh: no new event within "
            f"{format_duration(found.fresh_within, compact=True)} of {since}; overdue "
            f"{format_duration(found.overdue, compact=True)}"
        )
        log.warning("freshness missed: %s", message)
        if "freshness_miss" not in self.on:
            return
        self.emit(
            Alert(
                kind="freshness_miss",
                dag_id=(last.dag_id or "") if last is not None else "",
                run_id=(last.run_id or "") if last is not None else "",
                message=message,
                url=self.asset_url(found.uri),
                at=now,
                details={
                    "fresh_within": found.fresh_within,
                    "deadline": found.deadline,
                    "overdue": found.overdue,
                    "last_event_seq": last.seq if last is not None else None,
                },
                asset=found.uri,
            )
        )

    # -- checks (synchronous; ``run`` calls them every ``check_interval``) -----------------------------

    def check(self, now: float) -> None:
        """Flag slow running tries (one alert per try) and missed SLAs, as of ``now``."""
        for slow in find_slow(self._running.values(), self.baselines, self._policy_for, now):
            key = (slow.run_id, slow.task_id)
            if key in self._slow:
                continue
            self._slow[key] = slow
            self._slowdown(slow, now)
        for run in list(self._runs.values()):
            with_sla = self._sla_tasks(run.dag)
            if with_sla is None:
                continue  # no SLA anywhere in this DAG: nothing to scan
            self._check_sla(run, None, None, now)
            for tid in with_sla:
                rec = run.tasks.get(tid)
                if rec is not None and not rec.state.finished:
                    self._check_sla(run, tid, None, now)
        self.checked_at = now

    def _sla_tasks(self, dag: DAG) -> tuple[str, ...] | None:
        """The DAG's tasks that have an SLA, or None when neither it nor any task has one."""
        key = id(dag)
        if key not in self._sla_task_cache:
            tasks = tuple(t for t in dag.tasks if self._sla_of(dag, t) is not None)
            has_any = bool(tasks) or self._sla_of(dag, None) is not None
            self._sla_task_cache[key] = tasks if has_any else None
        return self._sla_task_cache[key]

    def _slowdown(self, slow: Slowdown, now: float) -> None:
        policy = self._policy_for(slow.dag_id, slow.task_id)
        factor = policy.factor if policy is not None else 0.0
        elapsed = format_duration(slow.elapsed, compact=True)
        usual = format_duration(slow.baseline, compact=True)
        message = (
            f"Task {slow.dag_id}.{slow.task_id} has been running {elapsed}, "
            f"more than {factor:g}x its usual {usual} "
            f"(median of its last {slow.samples} successful tries)"
        )
        log.warning("slow task: %s (run %s, try %d)", message, slow.run_id, slow.try_number)
        run = self._runs.get(slow.run_id)
        if "slowdown" not in self.on or run is None:
            return
        details = {
            "elapsed": slow.elapsed,
            "baseline": slow.baseline,
            "threshold": slow.threshold,
            "samples": slow.samples,
        }
        self.emit(
            self._alert("slowdown", run, message, now, slow.task_id, slow.try_number, None, details)
        )

    def _sla_of(self, dag: DAG, task_id: str | None) -> SLA | None:
        key = (id(dag), task_id)
        if key not in self._slas:
            self._slas[key] = as_sla(self._sla_resolver(dag, task_id))
        return self._slas[key]

    def _check_sla(
        self, run: ActiveRun, task_id: str | None, finished_at: float | None, now: float
    ) -> None:
        """Alert once if the run's (``task_id`` None) or a task's SLA is missed as of ``now``."""
        sla = self._sla_of(run.dag, task_id)
        if sla is None:
            return
        missed = self._sla_missed.setdefault(run.run_id, set())
        if task_id in missed:
            return
        if sla_missed(
            sla,
            logical_date=run.logical_date,
            run_started_at=run.started_at,
            finished_at=finished_at,
            now=now,
        ):
            missed.add(task_id)
            self._sla_alert(run, task_id, sla, finished_at, now)

    def _sla_alert(
        self, run: ActiveRun, task_id: str | None, sla: SLA, finished_at: float | None, now: float
    ) -> None:
        deadline = sla_deadline(sla, logical_date=run.logical_date, run_started_at=run.started_at)
        assert deadline is not None
        anchor = "its logical date" if sla.relative_to == "logical_date" else "the run's start"
        what = f"Task {run.dag.dag_id}.{task_id}" if task_id else f"Run of DAG {run.dag.dag_id}"
        late = (
            f"finished {format_duration(finished_at - deadline, compact=True)} late"
            if finished_at is not None
            else "still not finished"
        )
        allowed = format_duration(sla.seconds, compact=True)
        message = (
            f"{what} missed its SLA of {allowed} after {anchor}: {late} "
            f"(deadline {datetime.fromtimestamp(deadline, UTC).isoformat()})"
        )
        log.warning("SLA missed: %s (run %s)", message, run.run_id)
        if "sla_miss" in self.on:
            details = {"deadline": deadline, "sla_seconds": sla.seconds}
            rec = run.tasks.get(task_id) if task_id else None
            try_number = rec.try_number if rec is not None and rec.try_number else None
            self.emit(
                self._alert("sla_miss", run, message, now, task_id, try_number, None, details)
            )


__all__ = [
    "ALERT_KINDS",
    "DEFAULT_ON",
    "DEFAULT_SLOWNESS",
    "Alert",
    "AlertKind",
    "Alerting",
    "CallbackNotifier",
    "DeliveryError",
    "JSONWebhook",
    "Notifier",
    "PermanentDeliveryError",
    "SlackWebhook",
    "last_line",
    "sla_from_options",
    "sla_table",
    "slack_payload",
]
