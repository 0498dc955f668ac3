"""The benchmark workloads, described once and run by every implementation.

A workload is a graph of ``Node``s (a task id, an async function, and arguments that may hold ``Ref``s
to other nodes' results), how many runs of it one measurement makes and how (one run, runs one after
another, or runs all at once), the live-task limit, and a correctness check.
``benchmarks.podium_runner`` turns the graph into a ``@dag``; ``benchmarks.floor`` runs it on bare
asyncio tasks. Both call the very same task functions.

- W1 fan-out: ``root`` -> ``leaf_0..leaf_999`` (each takes root's result) -> ``join`` (takes all 1000).
- W2 chain: ``step_0 -> step_1 -> ... -> step_199``, each taking the previous result.
- W3 small ETL, 200 runs: ``extract_crm`` and ``extract_db`` -> ``clean`` -> ``enrich`` -> ``load``;
  ``W3-seq`` triggers each run after the previous one finished, ``W3-conc`` triggers all 200 at once.
- W4 1000 independent tasks each ``await anyio.sleep(0.1)``, at most 100 live at once (ideal: 1.0 s).
- W5 dynamic fan-out: ``numbers`` returns a list of 10 000 ints -> ``work.map(numbers)`` (one instance
  per element, created at run time, trivial body) -> ``join`` (takes the list of 10 000 results).
  Per task it is W1 with the fan-out decided at run time, ten times wider.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

# Podium's ``Engine(max_tasks=...)`` default. W1-W3 run under it (Podium and floor alike); W4 sets 100.
DEFAULT_LIMIT = 64

RunMode = Literal["single", "sequential", "concurrent"]


class WorkloadError(AssertionError):
    """A measurement produced a wrong result: its timing must not be reported."""


@dataclass(frozen=True, slots=True)
class Ref:
    """Stands for the result of node ``task_id`` in a node's arguments."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Node:
    task_id: str
    fn: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()  # constants, Refs, or lists of Refs
    # one instance of ``fn`` per element of ``args[0]`` (a Ref to a list), created at run time;
    # downstream Refs to this node get the list of the instances' results
    mapped: bool = False


class LiveProbe:
    """Counts, from inside the tasks, how many are live at once and how many finished."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.finished = 0

    def reset(self) -> None:
        self.live = self.peak = self.finished = 0

    def enter(self) -> None:
        self.live += 1
        if self.live > self.peak:
            self.peak = self.live

    def exit(self) -> None:
        self.live -= 1
        self.finished += 1


@dataclass
class Outcome:
    """What one measurement produced: its wall time and, per run, the state and the sink's result."""

    wall: float
    run_states: list[str]
    sink_results: list[Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    key: str
    dag_id: str
    title: str
    nodes: tuple[Node, ...]
    limit: int
    runs: int = 1
    mode: RunMode = "single"
    sink: str | None = None  # the task whose result each run is checked by
    expected: Any = None  # the sink's expected result (JSON-shaped: lists, not tuples)
    probe: LiveProbe | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # runners keep built DAGs here
    # tasks a run executes when that is not one per node (a mapped node runs one per element and
    # is not a task of its own)
    tasks_per_run: int | None = None

    @property
    def tasks_per_measurement(self) -> int:
        return (self.tasks_per_run or len(self.nodes)) * self.runs

    def check(self, outcome: Outcome) -> None:
        """Raise ``WorkloadError`` unless every run succeeded with the expected result."""
        states = outcome.run_states
        if len(states) != self.runs or any(s != "success" for s in states):
            bad = sorted({s for s in states if s != "success"})
            raise WorkloadError(
                f"{self.key}: expected {self.runs} successful run(s), got {len(states)} "
                f"({states.count('success')} succeeded; other states: {bad})"
            )
        if self.sink is not None:
            wrong = [r for r in outcome.sink_results if r != self.expected]
            if len(outcome.sink_results) != self.runs or wrong:
                raise WorkloadError(
                    f"{self.key}: {self.sink} should return {self.expected!r} in every run; "
                    f"got {wrong[:3]!r} ({len(wrong)} wrong of {len(outcome.sink_results)})"
                )
        if self.probe is not None:
            want = self.tasks_per_measurement
            if self.probe.finished != want:
                raise WorkloadError(f"{self.key}: {self.probe.finished} of {want} tasks finished")
            if self.probe.peak > self.limit:
                raise WorkloadError(
                    f"{self.key}: {self.probe.peak} tasks were live at once, over the limit "
                    f"of {self.limit}"
                )


# -- task functions (shared by Podium and the floor) -------------------------------------------------


async def root() -> int:
    return 1


async def leaf(x: int) -> int:
    return x + 1


async def join(xs: list[int]) -> list[int]:
    return [len(xs), sum(xs)]


async def first() -> int:
    return 1


async def step(x: int) -> int:
    return x + 1


async def extract_crm() -> list[dict[str, Any]]:
    return [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]


async def extract_db() -> list[dict[str, Any]]:
    return [{"id": 2, "spend": 10.0}, {"id": 3, "spend": 4.5}]


async def clean(crm: list[dict[str, Any]], db: list[dict[str, Any]]) -> list[int]:
    return sorted({row["id"] for row in crm} | {row["id"] for row in db})


async def enrich(ids: list[int]) -> list[dict[str, Any]]:
    return [{"id": i, "tier": "gold" if i % 2 else "silver"} for i in ids]


async def load(rows: list[dict[str, Any]]) -> int:
    return len(rows)


async def numbers(n: int) -> list[int]:
    return list(range(n))


def make_sleeper(probe: LiveProbe, seconds: float) -> Callable[[], Awaitable[None]]:
    async def sleeper() -> None:
        probe.enter()
        try:
            await anyio.sleep(seconds)
        finally:
            probe.exit()

    return sleeper


# -- the workloads ------------------------------------------------------------------------------------


def w1(n: int = 1000, limit: int = DEFAULT_LIMIT) -> Workload:
    leaves = tuple(Node(f"leaf_{i}", leaf, (Ref("root"),)) for i in range(n))
    nodes = (
        Node("root", root),
        *leaves,
        Node("join", join, ([Ref(node.task_id) for node in leaves],)),
    )
    return Workload(
        key="W1",
        dag_id="bench_w1",
        title=f"fan-out: root -> {n} tasks -> join",
        nodes=nodes,
        limit=limit,
        sink="join",
        expected=[n, 2 * n],
    )


def w2(n: int = 200, limit: int = DEFAULT_LIMIT) -> Workload:
    nodes = [Node("step_0", first)]
    nodes += [Node(f"step_{i}", step, (Ref(f"step_{i - 1}"),)) for i in range(1, n)]
    return Workload(
        key="W2",
        dag_id="bench_w2",
        title=f"chain of {n} tasks",
        nodes=tuple(nodes),
        limit=limit,
        sink=f"step_{n - 1}",
        expected=n,
    )


def w3(runs: int = 200, mode: RunMode = "concurrent", limit: int = DEFAULT_LIMIT) -> Workload:
    nodes = (
        Node("extract_crm", extract_crm),
        Node("extract_db", extract_db),
        Node("clean", clean, (Ref("extract_crm"), Ref("extract_db"))),
        Node("enrich", enrich, (Ref("clean"),)),
        Node("load", load, (Ref("enrich"),)),
    )
    how = "one after another" if mode == "sequential" else "all at once"
    return Workload(
        key="W3-seq" if mode == "sequential" else "W3-conc",
        dag_id="bench_w3",
        title=f"{runs} runs of a 5-task ETL, {how}",
        nodes=nodes,
        limit=limit,
        runs=runs,
        mode=mode,
        sink="load",
        expected=3,
    )


def w4(n: int = 1000, seconds: float = 0.1, limit: int = 100) -> Workload:
    probe = LiveProbe()
    sleeper = make_sleeper(probe, seconds)
    return Workload(
        key="W4",
        dag_id="bench_w4",
        title=f"{n} x sleep({seconds:g}) under a limit of {limit}",
        nodes=tuple(Node(f"sleep_{i}", sleeper) for i in range(n)),
        limit=limit,
        probe=probe,
    )


def w5(n: int = 10_000, limit: int = DEFAULT_LIMIT) -> Workload:
    return Workload(
        key="W5",
        dag_id="bench_w5",
        title=f"mapped: numbers -> work.map over {n:,} elements -> join",
        nodes=(
            Node("numbers", numbers, (n,)),
            Node("work", leaf, (Ref("numbers"),), mapped=True),
            Node("join", join, (Ref("work"),)),
        ),
        limit=limit,
        sink="join",
        expected=[n, n * (n + 1) // 2],  # each element x gives x + 1
        tasks_per_run=n + 2,
    )


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "W1": w1,
    "W2": w2,
    "W3-seq": lambda: w3(mode="sequential"),
    "W3-conc": lambda: w3(mode="concurrent"),
    "W4": w4,
    "W5": w5,
}
