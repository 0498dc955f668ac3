"""The task bodies of the runners benchmark (``benchmarks/runners.py``).

Standard library only, so every place a task runs imports this module by reference: a ``Process``
worker, a Dask worker, a ``Virtualenv`` (which has no engine), and the bare thread and process
pools the floors use.
"""

from __future__ import annotations

import os
import time

TARGET_SECONDS = 0.020  # one CPU-bound task's work, calibrated on the machine


def burn(iterations: int) -> int:
    """Pure-Python CPU work that holds the GIL for all of it (``burn(0)`` is the no-op task)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(target: float = TARGET_SECONDS) -> int:
    """How many ``burn`` iterations take about ``target`` seconds here (one core, right now)."""
    iterations = 10_000
    while True:
        started = time.perf_counter()
        burn(iterations)
        spent = time.perf_counter() - started
        if spent > 0.005:
            return max(1, int(iterations * target / spent))
        iterations *= 4


def step(x: int) -> int:
    """The trivial task of bench-compare's dask workload."""
    return x + 1


def hold(seconds: float) -> int:
    """Keep a worker busy for ``seconds``; its PID (priming a pool checks every worker is up)."""
    time.sleep(seconds)
    return os.getpid()
