"""Where a task's try runs (``@task(runner=...)``, ``@dag(runner=...)``, ``Engine(runner=...)``).

- ``Local()`` (the default): async functions on the engine's loop, sync functions in its threads;
- ``Process(workers=N)``: a warm pool of worker processes (``process.py``);
- ``Virtualenv(requirements=[...])``: a process of the task's own environment, built with uv
  (``venv.py``).

``docs/runners.md`` says when to use which.
"""

from .base import Local, Runner, RunnerHost, RunnerSession, TryCall, WorkerLedger
from .process import Process, ProcessPool
from .venv import Virtualenv, VirtualenvSession

__all__ = [
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
