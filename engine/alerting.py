"""Alerting: the engine observer that decides when an alert is due, and the watch behind it.

``Alerting`` is an engine ``Observer``: on each recorded change it decides, synchronously and
cheaply, whether an alert is due (once per failed try, per run failed before any task did, per
recovery) and queues it. ``await alerting.run()`` (in the engine's task group) does the rest in the
background:

- one delivery worker per notifier (``engine.notifiers.Outbox``: a bounded queue, retries with
  backoff, each try under the notifier's timeout);
- a watch that, every ``check_interval`` seconds of the engine's clock, compares running tries with
  their baselines (``engine.slowness``) and raises one ``slowdown`` alert per slow try *while it
  runs*, and checks SLA deadlines, and follows the committed asset events
  (``engine.asset_alerts``): one ``freshness_miss`` per asset not written within its
  ``fresh_within``, one ``schema_change`` per event whose schema differs from the previous one.

What each alert says is in ``engine.alerts``. Baselines start from the state file (recent
successful tries of each DAG's tasks) and then follow the successes this engine observes.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, NoReturn
from urllib.parse import quote

import anyio
import anyio.abc

from .alerts import (
    ALERT_KINDS,
    DEFAULT_ON,
    Alert,
    AlertKind,
    freshness_alert,
    recovery_alert,
    run_failure_alert,
    schema_change_alert,
    sla_miss_alert,
    slowdown_alert,
    task_failure_alert,
)
from .asset_alerts import AssetWatch, SchemaChanged
from .errors import PodiumError
from .notifiers import Notifier, Outbox
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
    sla_missed,
)
from .states import RunState, TaskState

if TYPE_CHECKING:
    from .dag import DAG
    from .observe import EngineView
    from .run_state import ActiveRun, TaskRecord

log = logging.getLogger("podium.alerts")

DEFAULT_SLOWNESS = SlownessPolicy()

SLASpec = SLA | float
SLAResolver = Callable[["DAG", str | None], SLASpec | None]
"""``(dag, task_id or None for the DAG itself) -> SLA``, seconds, or None."""


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
        self.stats: Counter[tuple[str, str]] = Counter()
        """(notifier name, "delivered" | "failed" | "dropped") -> alerts."""
        self._outboxes = [Outbox(n, queue_size, self.stats) for n in self.notifiers]
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
            kind: Literal["failure", "retry"] = "failure" if state is TaskState.FAILED else "retry"
            if (rec.task_id, rec.try_number) not in failed:
                failed.add((rec.task_id, rec.try_number))
                if kind in self.on:
                    now = self._engine.clock.now()
                    self.emit(task_failure_alert(kind, run, rec, now, self.run_url(run.run_id)))
        if (
            state in (TaskState.SUCCESS, TaskState.SKIPPED)
            and self._sla_tasks(run.dag) is not None
            and self._sla_of(run.dag, rec.task_id)
        ):
            self._check_sla(run, rec.task_id, rec.finished_at, self._engine.clock.now())

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
            self.emit(run_failure_alert(run, now, self.run_url(run.run_id)))
        if run.state in (RunState.SUCCESS, RunState.FAILED):
            previous = self._last_outcome.get(dag_id)
            self._last_outcome[dag_id] = run.state
            if (
                run.state is RunState.SUCCESS
                and previous is RunState.FAILED
                and "recovery" in self.on
            ):
                self.emit(recovery_alert(run, now, self.run_url(run.run_id)))

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the web UI (None without ``base_url``)."""
        return f"{self.base_url}/runs/{quote(run_id, safe='')}" if self.base_url else None

    # -- queueing -----------------------------------------------------------------------------------

    def emit(self, alert: Alert) -> None:
        """Queue ``alert`` for every notifier; never blocks (a full queue drops its oldest)."""
        self.sent.append(alert)
        log.info("alert %s: %s", alert.kind, alert.message)
        for box in self._outboxes:
            box.put(alert)

    @property
    def pending(self) -> int:
        """Alerts queued or being delivered, over all notifiers."""
        return sum(box.pending for box in self._outboxes)

    async def flush(self) -> None:
        """Return once every alert queued so far was delivered or given up on (needs ``run``)."""
        for box in self._outboxes:
            await box.wait_drained()

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
                tg.start_soon(box.run)
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
                alert = schema_change_alert(finding, now, self.asset_url(finding.event.uri))
                self._found(alert, "schema change: %s", alert.message)
            else:
                alert = freshness_alert(finding, now, self.asset_url(finding.uri))
                self._found(alert, "freshness missed: %s", alert.message)
        self.assets_checked_at = now

    def asset_url(self, uri: str) -> str | None:
        """The asset's page in the web UI (None without ``base_url``)."""
        return f"{self.base_url}/assets/{quote(uri, safe='')}" if self.base_url else None

    def _found(self, alert: Alert, note: str, *args: object, send: bool = True) -> None:
        """Log what the watch found (whether or not its kind is on), then queue its alert if the
        kind is on and ``send``."""
        log.warning(note, *args)
        if send and alert.kind in self.on:
            self.emit(alert)

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
        alert = slowdown_alert(slow, factor, now, self.run_url(slow.run_id))
        note = "slow task: %s (run %s, try %d)"
        active = slow.run_id in self._runs
        self._found(alert, note, alert.message, slow.run_id, slow.try_number, send=active)

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
            alert = sla_miss_alert(run, task_id, sla, finished_at, now, self.run_url(run.run_id))
            self._found(alert, "SLA missed: %s (run %s)", alert.message, run.run_id)


__all__ = [
    "DEFAULT_SLOWNESS",
    "Alerting",
    "SLAResolver",
    "SLASpec",
    "sla_from_options",
    "sla_table",
]
