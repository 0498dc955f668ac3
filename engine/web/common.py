"""What the API and the pages share: the app's state, the error type, and reads over the engine."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import anyio.abc
from aiohttp import web

from ..dag import DAG
from ..errors import DAGNotFoundError
from ..models import Run
from ..states import RunState
from .auth import SESSION_COOKIE, Access, Sessions
from .format import iso
from .status import Limits, dag_url, run_summary, run_url
from .triggers import dag_zone, describe_trigger

if TYPE_CHECKING:
    from ..engine import Engine

SCAN_PAGE = 500
SCAN_LIMIT = 20_000  # runs read at most to answer one filtered query the store cannot filter


class ApiError(Exception):
    """An HTTP error with a message for the caller; becomes ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class WebState:
    """Everything a handler needs, stored on the app under ``STATE``."""

    engine: Engine
    token: str | None
    base: str
    jobs: anyio.abc.TaskGroup | None = None  # set by ``serve``: background operations (backfill)
    static: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    access: Access = field(default_factory=Access)
    sessions: Sessions = field(default_factory=Sessions)


STATE = web.AppKey("podium_web_state", WebState)


def state_of(request: web.Request) -> WebState:
    return request.app[STATE]


def signed_in(request: web.Request) -> bool:
    """Whether the request carries a live browser session (from ``/login``)."""
    st = state_of(request)
    return st.sessions.valid(request.cookies.get(SESSION_COOKIE), st.engine.clock.now())


async def paused_dags(engine: Engine) -> frozenset[str]:
    """DAGs paused by an operator (empty when the engine has no pause support)."""
    read = getattr(engine.store, "paused_dags", None)
    if read is None:
        return frozenset()
    try:
        return frozenset(await read())
    except Exception:  # an older state file without the column: nothing is paused
        return frozenset()


async def limits_of(engine: Engine) -> Limits:
    return Limits(
        max_tasks=engine.max_tasks, pools=dict(engine.pools), paused=await paused_dags(engine)
    )


def parse_instant(value: str, what: str) -> float:
    """An ISO-8601 date or time (naive = UTC) or epoch seconds, as epoch seconds."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{what}: not a date, an ISO time or epoch seconds: {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list: by DAG and state (done by the store), and by creation time, trigger
    and run-key prefix (done here unless the engine can)."""

    dag_id: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None
    trigger: str | None = None
    key_prefix: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RunFilter:
        state = query.get("state") or None
        if state is not None and state not in {s.value for s in RunState}:
            known = ", ".join(s.value for s in RunState)
            raise ApiError(400, f"unknown state {state!r} (one of: {known})")
        since = query.get("since") or None
        until = query.get("until") or None
        return cls(
            dag_id=query.get("dag") or None,
            state=state,
            since=parse_instant(since, "since") if since else None,
            until=parse_instant(until, "until") if until else None,
            trigger=query.get("trigger") or None,
            key_prefix=query.get("key_prefix") or None,
        )

    @property
    def needs_scan(self) -> bool:
        return any(v is not None for v in (self.since, self.until, self.trigger, self.key_prefix))

    def matches(self, run: Run) -> bool:
        if self.since is not None and run.created_at < self.since:
            return False
        if self.until is not None and run.created_at > self.until:
            return False
        if self.trigger is not None and run.trigger != self.trigger:
            return False
        return self.key_prefix is None or run.key.startswith(self.key_prefix)

    def query(self) -> dict[str, str]:
        """The filter as query parameters (for pagination links)."""
        out: dict[str, str] = {}
        for name, value in (
            ("dag", self.dag_id),
            ("state", self.state),
            ("trigger", self.trigger),
            ("key_prefix", self.key_prefix),
        ):
            if value is not None:
                out[name] = value
        for name, instant in (("since", self.since), ("until", self.until)):
            if instant is not None:
                out[name] = datetime.fromtimestamp(instant, UTC).isoformat()
        return out


def _engine_filters(engine: Engine) -> set[str]:
    try:
        return set(inspect.signature(engine.runs).parameters)
    except (TypeError, ValueError):
        return set()


async def list_runs(
    engine: Engine, flt: RunFilter, *, limit: int, offset: int
) -> tuple[list[Run], bool, bool]:
    """One page of runs, newest first: ``(runs, has_more, scan_limited)``.

    DAG and state filters and the page itself go to the store. Time, trigger and key filters go
    to the engine when its ``runs()`` takes them; otherwise the newest runs are read page by page
    (at most ``SCAN_LIMIT``) and filtered here, and ``scan_limited`` says when that cap was hit."""
    if flt.dag_id is not None and flt.dag_id not in engine.dags:
        raise DAGNotFoundError(f"no DAG {flt.dag_id!r}")
    extra: dict[str, Any] = {}
    if flt.needs_scan:
        supported = _engine_filters(engine)
        wanted = {
            "since": flt.since,
            "until": flt.until,
            "trigger": flt.trigger,
            "key_prefix": flt.key_prefix,
        }
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if set(wanted) <= supported:
            extra = wanted
        else:
            return await _scan(engine, flt, limit=limit, offset=offset)
    runs = await engine.runs(
        dag_id=flt.dag_id, state=flt.state, limit=limit + 1, offset=offset, **extra
    )
    return runs[:limit], len(runs) > limit, False


async def _scan(
    engine: Engine, flt: RunFilter, *, limit: int, offset: int
) -> tuple[list[Run], bool, bool]:
    found: list[Run] = []
    skipped = 0
    read = 0
    while read < SCAN_LIMIT:
        page = await engine.runs(dag_id=flt.dag_id, state=flt.state, limit=SCAN_PAGE, offset=read)
        read += len(page)
        for run in page:
            if not flt.matches(run):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(run)
            if len(found) > limit:
                return found[:limit], True, False
        if len(page) < SCAN_PAGE:
            return found, False, False
    return found, False, True


async def dag_overview(
    engine: Engine, dag: DAG, *, now: float, base: str, paused: frozenset[str], recent: int = 20
) -> dict[str, Any]:
    """A DAG for the list: graph, triggers with their next time, its last runs, recent failures."""
    triggers = [describe_trigger(t, now) for t in dag.triggers]
    next_times = [t["next_at"] for t in triggers if t["next_at"] is not None]
    last = await engine.runs(dag_id=dag.dag_id, limit=recent)
    failed = await engine.runs(dag_id=dag.dag_id, state="failed", limit=100)
    day_ago = now - 86400
    failures = [r for r in failed if (r.finished_at or r.created_at) >= day_ago]
    zone = dag_zone(dag.triggers)
    return {
        "dag_id": dag.dag_id,
        "description": dag.description,
        "tags": list(dag.tags),
        "paused": dag.dag_id in paused,
        "timezone": zone.key if zone is not None else "UTC",
        "params": dag.describe()["params"],
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "tasks": [
            {
                "task_id": tid,
                "upstream": list(node.upstream),
                "pool": node.options.pool,
                "trigger_rule": node.options.trigger_rule.value,
                "retries": node.options.retry.retries,
                "timeout": node.options.timeout,
                "group": node.group,
                "mapped": bool(node.mapped),
            }
            for tid, node in dag.tasks.items()
        ],
        "triggers": triggers,
        "next_run_at": min(next_times, default=None),
        "next_run_at_iso": iso(min(next_times, default=None)),
        "last_runs": [
            {
                "run_id": r.run_id,
                "state": r.state.value,
                "created_at": r.created_at,
                "duration": r.duration,
                "url": run_url(base, r.run_id),
            }
            for r in last
        ],
        "failures_24h": len(failures),
        "failures_24h_capped": len(failed) == 100 and len(failures) == 100,
        "last_failure": run_summary(failures[0], base) if failures else None,
        "url": dag_url(base, dag.dag_id),
    }


__all__ = [
    "STATE",
    "ApiError",
    "RunFilter",
    "WebState",
    "dag_overview",
    "limits_of",
    "list_runs",
    "parse_instant",
    "parse_int",
    "paused_dags",
    "signed_in",
    "state_of",
]
