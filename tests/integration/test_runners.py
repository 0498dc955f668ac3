"""The Process runner (engine/runners) on a real engine, real worker processes and a real SQLite
state file. Nothing here waits on time: tasks meet at file rendezvous, and the tests wait for runs
to finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Local, Process, RunState, dag, task
from engine.runners.reaper import start_time
from engine.store import Store
from engine.store import queries as q

sys.path.insert(0, str(Path(__file__).parent))
import runner_tasks as rt

pytestmark = pytest.mark.each_loop

TWO = Process(workers=2)
ONE = Process(workers=1, grace=0.5)


def gone(pid: int, started: int | None) -> bool:
    """The process is gone (or its PID now belongs to another process)."""
    return start_time(pid) is None or start_time(pid) != started


async def run_dag(engine: Engine, dag_id: str, timeout: float = 60) -> Any:
    run = await engine.trigger(dag_id)
    return await run.wait(timeout=timeout)


async def test_cpu_bound_tasks_run_in_two_processes_at_once(tmp_path: Path) -> None:
    meet = tmp_path / "meet"
    meet.mkdir()
    spin = task(runner=TWO)(rt.rendezvous)

    @dag
    def parallel() -> None:
        spin.override(task_id="a")(str(meet), "a")
        spin.override(task_id="b")(str(meet), "b")

    async with Engine(tmp_path / "p.db", dags=[parallel]) as engine:
        run = await run_dag(engine, "parallel")
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items()}
    a, b = run.tasks["a"].result, run.tasks["b"].result
    # both were inside the rendezvous at once, each in its own process, neither the engine's
    assert a["pid"] != b["pid"] and os.getpid() not in (a["pid"], b["pid"])
    assert a["start"] < b["end"] and b["start"] < a["end"]


async def test_runner_is_set_per_task_per_dag_and_per_engine(tmp_path: Path) -> None:
    where = task(rt.pid_of)

    @dag(runner=TWO)
    def per_dag() -> None:
        where.override(task_id="in_worker")()
        where.override(task_id="here", runner=Local())()

    @dag
    def plain() -> None:
        where()

    async with Engine(tmp_path / "r.db", dags=[per_dag, plain]) as engine:
        run = await run_dag(engine, "per_dag")
        default = await run_dag(engine, "plain")
    assert run.tasks["here"].result == os.getpid()
    assert run.tasks["in_worker"].result != os.getpid()
    assert default.tasks["pid_of"].result == os.getpid()
    async with Engine(tmp_path / "e.db", dags=[plain], runner=ONE) as engine:
        on_engine = await run_dag(engine, "plain")
    assert on_engine.tasks["pid_of"].result not in (None, os.getpid())


async def test_arguments_and_functions_travel_by_cloudpickle_or_fail_clearly(
    tmp_path: Path,
) -> None:
    factor = 3

    def scale(x: int) -> int:  # a closure: sent by value
        return x * factor

    @dag(runner=ONE)
    def shipping() -> None:
        task(task_id="scaled")(scale)(14)
        task(task_id="by_lambda")(rt.sort_by)([3, 1, 2], lambda v: -v)
        task(task_id="lambda_task")(lambda: "from a lambda")()
        task(task_id="locked")(rt.locked)(threading.Lock())

    async with Engine(tmp_path / "c.db", dags=[shipping]) as engine:
        run = await run_dag(engine, "shipping")
    tasks = run.tasks
    assert tasks["scaled"].result == 42
    assert tasks["by_lambda"].result == [3, 2, 1]
    assert tasks["lambda_task"].result == "from a lambda"
    assert tasks["locked"].state == "failed"
    assert tasks["locked"].error.startswith(
        "RunnerError: task 'locked': argument 'lock' of type _thread.lock cannot be sent to a "
        "worker process: TypeError: cannot pickle '_thread.lock' object"
    )


async def test_crashed_workers_fail_only_their_try_and_are_replaced(tmp_path: Path) -> None:
    crash = {
        "segfault": task(rt.segfault),
        "exit_3": task(task_id="exit_3")(rt.exit_hard),
        "oom_kill": task(rt.killed_like_oom),
        "memory_limit": task(rt.over_memory_limit),
    }

    @dag(runner=ONE)
    def crashes() -> None:
        prev = None
        for name, t in crash.items():
            ref = t.override(task_id=name, trigger_rule="all_done")(
                *([3] if name == "exit_3" else [])
            )
            if prev is not None:
                prev >> ref
            prev = ref
        after = task(rt.pid_of).override(task_id="after", trigger_rule="all_done")()
        prev >> after

    async with Engine(tmp_path / "x.db", dags=[crashes]) as engine:
        run = await run_dag(engine, "crashes")
        again = await run_dag(engine, "crashes")
    tasks = run.tasks
    assert tasks["segfault"].error == "WorkerDiedError: worker process died: SIGSEGV"
    assert tasks["exit_3"].error == "WorkerDiedError: worker process died: exit code 3"
    assert tasks["oom_kill"].error == "WorkerDiedError: worker process died: SIGKILL"
    assert tasks["memory_limit"].error.startswith("MemoryError")
    assert tasks["after"].state == "success" and tasks["after"].result != os.getpid()
    assert again.tasks["after"].state == "success"  # the engine keeps serving


async def test_ten_megabytes_of_stdout_are_truncated_in_the_try_log(tmp_path: Path) -> None:
    @dag(runner=ONE)
    def chatty() -> None:
        task(rt.print_lots)(10)

    async with Engine(tmp_path / "l.db", dags=[chatty], max_log_bytes=100_000) as engine:
        run = await run_dag(engine, "chatty")
        logs = await engine.task_logs(run.run_id, "print_lots")
    assert run.state is RunState.SUCCESS
    assert logs[0]["message"] == "x" * 99
    assert sum(len(line["message"]) for line in logs) < 110_000
    assert logs[-1]["message"].startswith("[log truncated")


async def test_logs_checkpoints_and_exceptions_cross_the_pipe(tmp_path: Path) -> None:
    @dag(runner=ONE)
    def talk() -> None:
        task(retries=1)(rt.checkpointing)()
        task(rt.async_checkpointing)(7)
        task(rt.raises)()

    async with Engine(tmp_path / "t.db", dags=[talk]) as engine:
        run = await run_dag(engine, "talk")
        logs = await engine.task_logs(run.run_id, "async_checkpointing")
    tasks = run.tasks
    assert tasks["checkpointing"].result == {"page": 3}
    assert tasks["checkpointing"].try_number == 2
    assert (
        tasks["checkpointing"].tries[0].error == "ValueError: first try fails after its checkpoint"
    )
    assert tasks["async_checkpointing"].result["x"] == 7
    assert tasks["async_checkpointing"].checkpoint == {"x": 7}
    assert [(line["level"], line["message"]) for line in logs] == [
        ("INFO", "checkpointed {'x': 7}"),
        ("WARNING", "a warning"),
        ("INFO", "printed"),
    ]
    assert tasks["raises"].error == "ValueError: bad input 42"
    assert "in raises" in tasks["raises"].traceback  # the worker's own traceback


async def test_timeout_and_cancel_kill_the_worker_and_the_pool_recovers(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    spin = task(rt.spin_forever)

    @dag(runner=ONE)
    def slow() -> None:
        # the bound is the point here; generous, so a busy machine still starts the body in time
        spin.override(task_id="timed", timeout=5)(str(pid_file) + ".timed", True)

    @dag(runner=ONE)
    def cancelled() -> None:
        spin.override(task_id="spin")(str(pid_file))

    @dag(runner=ONE)
    def then() -> None:
        task(rt.pid_of)()

    async with Engine(tmp_path / "k.db", dags=[slow, cancelled, then]) as engine:
        run = await run_dag(engine, "slow")
        timed_pid = int(Path(str(pid_file) + ".timed").read_text())
        assert run.tasks["timed"].error.startswith("TaskTimeoutError")
        assert start_time(timed_pid) is None  # SIGTERM ignored: killed after the grace

        started = await engine.trigger("cancelled")
        with anyio.fail_after(30):  # the task writes its pid once it runs
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.01)
        pid = int(pid_file.read_text())
        began = start_time(pid)
        await engine.cancel(started.run_id)
        run = await engine.wait_run(started.run_id, timeout=30)
        assert run.state is RunState.CANCELLED
        assert gone(pid, began)
        after = await run_dag(engine, "then")
    assert after.state is RunState.SUCCESS and after.tasks["pid_of"].result not in (pid, timed_pid)


async def test_retries_run_again_on_a_fresh_worker(tmp_path: Path) -> None:
    @dag(runner=ONE)
    def retried() -> None:
        task(retries=1)(rt.flaky)()

    async with Engine(tmp_path / "f.db", dags=[retried]) as engine:
        run = await run_dag(engine, "retried")
    flaky = run.tasks["flaky"]
    assert flaky.state == "success" and flaky.result == 2
    assert flaky.tries[0].error == "WorkerDiedError: worker process died: exit code 1"


async def test_workers_are_recorded_while_they_live_and_forgotten_at_stop(tmp_path: Path) -> None:
    db = tmp_path / "w.db"

    @dag(runner=TWO)
    def one() -> None:
        task(rt.pid_of)()

    async with Engine(db, dags=[one]) as engine:
        run = await run_dag(engine, "one")
        rows = await engine.store.runner_processes()
        assert run.tasks["pid_of"].result in {r.pid for r in rows}
        assert len(rows) == 2 and all(r.start_time == start_time(r.pid) for r in rows)
    assert all(start_time(r.pid) is None for r in rows)
    async with Store(db) as store:
        assert await store.runner_processes() == []


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two processes in their own sessions, as a killed engine's workers would be."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    procs = [subprocess.Popen(sleeper, start_new_session=True) for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_a_restart_reaps_leftover_workers_but_never_a_reused_pid(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    db = tmp_path / "z.db"
    orphan, stranger = sleepers
    orphan_start, stranger_start = start_time(orphan.pid), start_time(stranger.pid)
    assert orphan_start is not None and stranger_start is not None
    async with Store(db) as store:
        store.writer.execute(q.INSERT_RUNNER_PROCESS, (orphan.pid, orphan_start, 1, 0.0))
        # the stranger holds a PID recorded for a process that started at another time
        store.writer.execute(q.INSERT_RUNNER_PROCESS, (stranger.pid, stranger_start - 1, 1, 0.0))
        await store.writer.flush()
    async with Engine(db) as engine:
        assert await engine.store.runner_processes() == []
    with anyio.fail_after(10):
        while orphan.poll() is None:
            await anyio.sleep(0.01)
    assert orphan.returncode == -signal.SIGKILL
    assert stranger.poll() is None
