"""The floor: the workloads on plain asyncio + stdlib sqlite3, through ``benchmarks/floor.py``
(run with the project's own venv, from the repo root).

A lower bound, not a competitor: one asyncio task per node, a Future per node for its result, an
``asyncio.Semaphore`` for the limit (64 for W1-W3, 100 for W4), and per task three state rows
(queued, running, success with the JSON result) upserted into SQLite in WAL mode with
``synchronous=NORMAL``, on the event-loop thread. Variants (commit policies):
``batch100``: rows committed 100 at a time plus one commit per run end;
``pertask``: one commit per task (when it succeeds) plus one per run end.
The figure is from starting the first run to the last run's final commit.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR.parents[2]))  # the repo root

import _common as c  # noqa: E402
from podium_w import workload  # noqa: E402

from benchmarks import floor  # noqa: E402
from benchmarks.workloads import WorkloadError  # noqa: E402


def main(args: c.Args) -> int:
    async def run(key: str, n: int) -> c.Timed:
        wl = workload(key, n)
        with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
            outcome = await floor.measure(wl, Path(tmp) / "state.db", policy=args.variant)
        try:
            wl.check(outcome)
        except WorkloadError as exc:
            raise RuntimeError(str(exc)) from None
        if key == "W4":
            c.PROBE.finished, c.PROBE.peak = n, outcome.extra.get("peak_live", 0)
        result = outcome.sink_results if key.startswith("W3") else outcome.sink_results[0]
        return c.Timed(result, outcome.wall, outcome.extra)

    return asyncio.run(
        c.ameasure(
            "floor",
            "sqlite3",  # the floor is stdlib asyncio + sqlite3: the version shown is SQLite's
            args,
            run,
            notes={"durability": "WAL, synchronous=NORMAL", "policy": args.variant},
        )
    )


if __name__ == "__main__":
    sys.exit(main(c.parse_args(variants=("batch100", "pertask"))))
