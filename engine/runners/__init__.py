"""Where a task's try runs (``@task(runner=...)``, ``@dag(runner=...)``, ``Engine(runner=...)``).

- ``Local()`` (the default): async functions on the engine's loop, sync functions in its threads;
- ``Process(workers=N)``: a warm pool of worker processes (``process.py``);
- ``Virtualenv(requirements=[...])``: a warm pool of processes of the task's own environment,
  built with uv (``venv.py``); the pool logic is ``Process``'s (``pool.py``).
- ``Dask(address=...)``: a running Dask cluster (``dask.py``; extra ``podium[dask]``).

``docs/runners.md`` says when to use which.
"""

from .base import Local, Runner, RunnerHost, RunnerSession, TryCall, WorkerLedger
from .dask import Dask, DaskSession
from .process import Process, ProcessPool
from .venv import Virtualenv, VirtualenvSession

__all__ = [
    "Dask",
    "DaskSession",
    "Local",
    "Process",
    "ProcessPool",
    "Runner",
    "RunnerHost",
    "RunnerSession",
    "TryCall",
    "Virtualenv",
    "VirtualenvSession",
    "WorkerLedger",
]
