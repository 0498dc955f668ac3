"""Real Dask clusters on loopback for the Dask runner's tests (``test_dask*.py``): a
``LocalCluster`` of worker processes, or a ``dask scheduler`` and a ``dask worker`` started as
commands, as a cluster is deployed; and the waits the tests share (conditions with a timeout)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from engine import Engine


def local_cluster(port: int = 0) -> Any:
    """A scheduler and two worker processes of one thread each."""
    import distributed

    return distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        scheduler_port=port,
        dashboard_address=None,
        # no dashboard; its bare HTTP server (health, metrics) on a free port, not on 8787
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


def worker_pids(cluster: Any) -> set[int]:
    return {w.process.pid for w in cluster.workers.values()}


def checkpoint_sent(cluster: Any, key: str) -> bool:
    """The worker running ``key`` sent a checkpoint (it is in the scheduler's event log)."""

    async def scan() -> bool:
        return any(
            isinstance(msg, dict) and msg.get("kind") == "checkpoint" and msg.get("key") == key
            for events in cluster.scheduler.get_events().values()
            for _, msg in events
        )

    sent: bool = cluster.sync(scan)  # on the scheduler's loop, where its event log changes
    return sent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def command_cluster(logs: Path, nthreads: int) -> AsyncIterator[str]:
    """``python -m distributed.cli.dask_scheduler`` and one ``dask_worker`` (a nanny and its
    worker process, ``nthreads`` threads) with this folder importable; yields the scheduler's
    address once it listens (the worker joins when it is up; tries queue until then)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    scheduler_argv = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
    scheduler_argv += ["--port", str(port), "--dashboard-address", "127.0.0.1:0"]
    worker_argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host"]
    worker_argv += ["127.0.0.1", "--nworkers", "1", "--nthreads", str(nthreads), "--no-dashboard"]
    scheduler = await anyio.to_thread.run_sync(_spawn, scheduler_argv, logs / "scheduler.log", env)
    try:
        await until(lambda: _accepts(port) or scheduler.poll() is not None)
        assert scheduler.poll() is None, (logs / "scheduler.log").read_text()
        worker = await anyio.to_thread.run_sync(_spawn, worker_argv, logs / "worker.log", env)
        try:
            yield address
        finally:
            await anyio.to_thread.run_sync(_stop, worker)
    finally:
        await anyio.to_thread.run_sync(_stop, scheduler)


async def until(predicate: Any, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


async def wait_task(engine: Engine, run_id: str, task_id: str, state: str) -> Any:
    """The task once it reached ``state`` (as committed)."""
    info: Any = None

    async def reached() -> bool:
        nonlocal info
        info = (await engine.get_run(run_id)).tasks[task_id]
        return bool(info.state == state)

    with anyio.fail_after(60):
        while not await reached():
            await anyio.sleep(0.02)
    return info


async def wait_tried(engine: Engine, run_id: str, task_id: str) -> Any:
    """The first try of the task, once it has ended (as committed)."""
    with anyio.fail_after(60):
        while True:
            tries = (await engine.get_run(run_id)).tasks[task_id].tries
            if tries and tries[0].finished_at is not None:
                return tries[0]
            await anyio.sleep(0.02)
