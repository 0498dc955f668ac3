"""Adopting runs from the state file: after a restart (a try that was running when the engine
died counts, and is retried if it has tries left), and runs or operations that other processes
(``podium trigger``, ``podium rerun`` ...) queued in the file.

``RunAdoption`` is a mixin of ``Engine``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from . import serialization
from .errors import ParamError, PodiumError
from .models import Run
from .recovery import BackfillResult
from .run_state import ActiveRun, TaskRecord, graph_spec_of
from .scheduler import RunProgress
from .states import RunState, TaskState
from .store import queries as q
from .store import run_from_row

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("podium.engine")

ENGINE_STOPPED = "engine stopped while running"

REQUEST_OPERATIONS = {
    "pause": "pause_dag",
    "unpause": "unpause_dag",
    "rerun": "rerun",
    "resume": "resume",
    "cancel": "cancel",
    "cancel_task": "cancel_task",
    "backfill": "backfill",
}


class RunAdoption:
    """Taking runs and operation requests over from the state file (mixed into ``Engine``)."""

    async def _adopt(self, row: Any, *, recovering: bool) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        snapshot = run_from_row(row, {}, None)
        if snapshot.run_id in eng._active or (snapshot.dag_id, snapshot.key) in eng._by_key:
            return  # already served (or created here and about to be activated)
        dag = eng._dags.get(snapshot.dag_id)
        if dag is None:
            log.warning(
                "run %s belongs to DAG %r, which this engine does not serve; left %s",
                snapshot.run_id,
                snapshot.dag_id,
                snapshot.state,
            )
            return
        now = eng.clock.now()
        run = ActiveRun(
            dag=dag,
            run_id=snapshot.run_id,
            key=snapshot.key,
            params=snapshot.params,
            logical_date=row[6],
            trigger=snapshot.trigger,
            event=snapshot.event,
            created_at=snapshot.created_at,
            started_at=snapshot.started_at,
            state=snapshot.state,
        )
        eng._by_key[(dag.dag_id, run.key)] = run
        eng._active[run.run_id] = run
        try:
            run.params = dag.validate_params(run.params, strict=run.trigger in ("api", "cli"))
        except ParamError as exc:
            run.tasks = {tid: TaskRecord(node) for tid, node in dag.tasks.items()}
            run.progress = RunProgress(graph_spec_of(dag))
            eng._store.writer.ensure_tasks(run.run_id, dag.order)
            eng._fail_run_now(run, f"invalid params: {exc}")
            return
        eng._store.writer.ensure_tasks(run.run_id, dag.order)
        stored = {r[1]: r for r in await eng._store.task_rows(run.run_id)}
        states: dict[str, TaskState] = {}
        run.tasks = {}
        for tid, node in dag.tasks.items():
            rec = TaskRecord(node)
            r = stored.get(tid)
            if r is not None:
                rec.load(r)
            if rec.state is TaskState.RUNNING:
                eng._recover_crashed_try(run, rec, now)
            elif rec.state is TaskState.QUEUED:
                rec.state = TaskState.PENDING
            if rec.state is TaskState.SUCCESS:
                run.results[tid] = rec.result  # downstream tasks read it, the task never re-runs
            run.tasks[tid] = rec
            states[tid] = rec.state
            if rec.state is TaskState.PAUSED:
                states[tid] = TaskState.PENDING  # waits behind the failure that paused the run
            elif rec.state is TaskState.FAILED and run.state is RunState.PAUSED:
                states[tid] = TaskState.PAUSED  # the failure that paused the run: not final yet
        run.progress = RunProgress(graph_spec_of(dag), states)
        for rec in run.tasks.values():
            if rec.state is TaskState.UP_FOR_RETRY:
                eng._schedule_retry(run, rec, rec.next_try_at or now)
        if run.state in (RunState.RUNNING, RunState.PAUSED):
            eng._running_runs[dag.dag_id] = eng._running_runs.get(dag.dag_id, 0) + 1
            run.admitted = True
            eng._start_run(run)
        elif run.state is RunState.QUEUED:
            eng._admit(run)
        if recovering and snapshot.state is RunState.RUNNING:
            log.info("resuming run %s of %s", run.run_id, dag.dag_id)

    def _recover_crashed_try(self, run: ActiveRun, rec: TaskRecord, now: float) -> None:
        """A try was running when the engine died: it counts; retry if tries are left."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        eng._store.writer.record_try(
            run.run_id, rec.task_id, rec.try_number, TaskState.FAILED.value,
            rec.started_at, now, ENGINE_STOPPED, None,
        )  # fmt: skip
        if rec.node.options.retry.should_retry(rec.try_number - rec.try_offset, None):
            rec.state = TaskState.UP_FOR_RETRY
            rec.next_try_at = now
            rec.error = ENGINE_STOPPED
            eng._write_task(run, rec)
        else:
            rec.state = TaskState.FAILED
            rec.finished_at = now
            rec.error = ENGINE_STOPPED
            eng._write_task(run, rec)

    async def _poll_loop(self) -> None:
        """Adopt runs that other processes (``podium trigger``) queued in the state file."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        while True:
            await anyio.sleep(eng.poll_interval)
            if eng._stopping:
                return
            rows = await eng._store.queued_run_rows_after(eng._last_seq)
            for row in rows:
                eng._last_seq = max(eng._last_seq, row[0])
                if row[1] not in eng._active:
                    await eng._adopt(row, recovering=False)
            for request in await eng._store.pending_requests():
                await eng._start_request(*request)

    async def _start_request(
        self, request_id: int, actor: str, operation: str, args: bytes
    ) -> None:
        """Run an operation another process (the CLI) asked for; its outcome goes back in the row."""
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        assert eng._tg is not None
        writer = eng._store.writer
        writer.execute(q.FINISH_REQUEST, ("running", None, None, request_id))
        await writer.flush()  # marked before it runs: a crash never executes it twice
        eng._tg.start_soon(eng._execute_request, request_id, actor, operation, args)

    async def _execute_request(
        self, request_id: int, actor: str, operation: str, args: bytes
    ) -> None:
        eng: Engine = self  # type: ignore[assignment]  # a mixin of Engine
        writer = eng._store.writer
        outcome: tuple[str, bytes | None, str | None]
        try:
            method = getattr(eng, REQUEST_OPERATIONS[operation])
            result = await method(**serialization.loads(args), actor=actor)
            outcome = ("done", serialization.dumps_for_display(describe_result(result)), None)
        except (PodiumError, KeyError, TypeError) as exc:
            outcome = ("failed", None, f"{type(exc).__name__}: {exc}")
        writer.execute(q.FINISH_REQUEST, (*outcome, request_id))
        await writer.flush()


def describe_result(result: Any) -> Any:
    """An operation's result as JSON-ready data (stored for the CLI that asked for it)."""
    if isinstance(result, Run):
        return {"run_id": result.run_id, "state": result.state.value}
    if isinstance(result, BackfillResult):
        return {
            "dag_id": result.dag_id,
            "slots": len(result.slots),
            "created": len(result.created),
            "rerun": len(result.rerun),
            "skipped": len(result.skipped),
            "failed": result.failed,
        }
    if hasattr(result, "__dataclass_fields__"):
        return {k: getattr(result, k) for k in result.__dataclass_fields__}
    return result
