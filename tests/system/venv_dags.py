"""A DAG on a ``Virtualenv`` pool of 3 workers for the crash test: two tasks warm two workers at
once, then one holds one of them until the gate file exists, so a kill -9 finds a busy and an idle
warm worker (the idle one exits when its pipe closes; the busy one waits for the reaper). The
environment (no requirements: only ``uv venv``) is built in ``$PODIUM_VENV_CACHE``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import venv_steps

from engine import Virtualenv, dag, task

POOL = Virtualenv(workers=3)


@dag
def venv_pool() -> None:
    warm = task(runner=POOL)(venv_steps.warm)
    held = task(runner=POOL, retries=1)(venv_steps.held)
    [warm.override(task_id="warm_0")(), warm.override(task_id="warm_1")()] >> held()
