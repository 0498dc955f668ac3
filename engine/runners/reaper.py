"""No zombies: the worker processes an engine starts are recorded in its state file (PID and the
process's start time), and the next start after a kill -9 kills those still alive.

A PID is only killed if the process holding it now started at the recorded time, so a PID reused by
an unrelated process since is never touched. Start times come from ``/proc/<pid>/stat`` (Linux);
where there is no ``/proc``, leftovers are reported in the log and left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..store import queries as q

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("podium.runners")


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it does not exist or has
    exited (a zombie no one has waited for yet: an orphan's new parent may be slow to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):  # field 3, state: zombie or dead
        return None
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


class ProcessLedger:
    """The state file's ``runner_processes`` table, as a runner's ``WorkerLedger``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def started(self, pid: int) -> None:
        writer = self._store.writer
        writer.execute(q.INSERT_RUNNER_PROCESS, (pid, start_time(pid), os.getpid(), time.time()))
        await writer.flush()

    def exited(self, pid: int) -> None:
        self._store.writer.execute(q.DELETE_RUNNER_PROCESS, (pid,))


async def reap_leftovers(store: Store) -> list[int]:
    """Kill the recorded workers of an engine that died without stopping them (their whole process
    groups), if each PID still belongs to the process that was recorded; then clear the table.
    Returns the PIDs killed."""
    killed: list[int] = []
    rows = await store.runner_processes()
    if not rows:
        return killed
    for row in rows:
        if row.start_time is None:
            log.warning(
                "worker process %d of a previous engine: start time unknown, left alone", row.pid
            )
            continue
        if start_time(row.pid) != row.start_time:
            continue  # gone, or the PID now belongs to another process
        try:
            os.killpg(row.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        except PermissionError:
            log.warning("cannot kill leftover worker process %d: permission denied", row.pid)
            continue
        killed.append(row.pid)
    if killed:
        log.warning(
            "killed %d worker process(es) left by an engine that stopped without closing them: %s",
            len(killed),
            ", ".join(map(str, killed)),
        )
    store.writer.execute(q.CLEAR_RUNNER_PROCESSES)
    await store.writer.flush()
    return killed
