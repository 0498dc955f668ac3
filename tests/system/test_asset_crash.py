"""Kill -9 a real `podium run` process between a producer's committed success (its asset event)
and the consumer run it triggers, and at random moments: every condition met gives exactly one
consumer run, and no asset event is lost or consumed twice."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.test_crash_recovery import Harness

DAG_FILE = Path(__file__).with_name("asset_dags.py")


class AssetHarness(Harness):
    def start(self, kill_after: str | None = None) -> None:  # type: ignore[override]
        self.starts += 1
        env = {**self.env, "PODIUM_TEST_DB": str(self.db)}
        if kill_after is not None:
            env["PODIUM_TEST_KILL_AFTER"] = kill_after
        with self.logs.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", str(DAG_FILE), "--db", str(self.db)],
                env=env,
                stdout=log,
                stderr=log,
            )
        self.wait_until(
            lambda: self.logs.read_text().count("podium serving") >= self.starts, "engine to serve"
        )

    def died(self) -> None:
        """Wait for the engine to kill itself (``PODIUM_TEST_KILL_AFTER``)."""
        assert self.proc is not None
        assert self.proc.wait(timeout=30) == -signal.SIGKILL
        self.proc = None

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as conn:
            return conn.execute(sql, args).fetchall()

    def asset_events(self) -> dict[str, str]:
        """event_id -> uri of every recorded asset event."""
        return {str(e): str(u) for e, u in self.query("SELECT event_id, uri FROM asset_events")}

    def outcomes(self, dag_id: str) -> dict[str, tuple[str, str | None]]:
        rows = self.query(
            "SELECT event_id, outcome, run_id FROM events WHERE dag_id = ? AND source = 'asset'",
            dag_id,
        )
        return {str(e): (str(o), None if r is None else str(r)) for e, o, r in rows}

    def runs(self, dag_id: str) -> list[tuple[str, str]]:
        rows = self.query("SELECT run_id, state FROM runs WHERE dag_id = ? ORDER BY seq", dag_id)
        return [(str(r), str(s)) for r, s in rows]

    def consumed(self, dag_id: str) -> dict[str, list[str]]:
        """run_id -> the asset events its task listed (from the ledger; last try wins)."""
        found: dict[str, list[str]] = {}
        for line in self.lines():
            dag, run_id, ids = line.split(" ")
            if dag == dag_id:
                found[run_id] = ids.split(",")
        return found

    def settled(self) -> bool:
        """No consumer run unfinished, and no event waiting for consumer_or (``a | b``)."""
        unfinished = self.query(
            "SELECT COUNT(*) FROM runs WHERE state IN ('queued', 'running', 'paused')"
        )[0][0]
        waiting = [o for o, _ in self.outcomes("consumer_or").values() if o == "waiting"]
        return unfinished == 0 and not waiting


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[AssetHarness]:
    h = AssetHarness(tmp_path)
    yield h
    if h.proc is not None:
        h.proc.kill()
        h.proc.wait()


def check_exactly_once(h: AssetHarness) -> None:
    """Every asset event is consumed by exactly one run of each consumer whose condition it can
    serve, each run's listed events are exactly those marked with its run id, and every
    consumer_and run had both assets."""
    events = h.asset_events()
    for dag_id in ("consumer_or", "consumer_and"):
        outcomes = h.outcomes(dag_id)
        assert set(outcomes) == set(events), (dag_id, "an event was not queued")
        runs = dict(h.runs(dag_id))
        assert set(runs.values()) <= {"success"}, runs
        by_run: dict[str, set[str]] = {}
        for event_id, (outcome, run_id) in outcomes.items():
            if outcome == "ran":
                assert run_id in runs, (dag_id, event_id, run_id)
                by_run.setdefault(run_id, set()).add(event_id)
            else:
                assert outcome == "waiting", (dag_id, event_id, outcome)
        ledger = h.consumed(dag_id)
        assert set(ledger) == set(runs), (dag_id, "a run is missing from the ledger or extra")
        for run_id, listed in ledger.items():
            assert len(listed) == len(set(listed))
            assert set(listed) == by_run.get(run_id, set()), (dag_id, run_id)
        all_listed = [e for listed in ledger.values() for e in listed]
        assert len(all_listed) == len(set(all_listed)), (dag_id, "an event was used twice")
        if dag_id == "consumer_and":
            for listed in ledger.values():
                assert {events[e] for e in listed} == {"s3://lake/a/", "s3://lake/b/"}
            waiting = {events[e] for e, (o, _) in outcomes.items() if o == "waiting"}
            assert len(waiting) <= 1, "a & b was met but no run consumed it"
        else:
            assert all(o == "ran" for o, _ in outcomes.values()), "an a | b event was lost"


def test_kill_between_the_producers_commit_and_the_consumer_run(harness: AssetHarness) -> None:
    """Kill right after each producer's success commits; after the restart, each satisfaction of
    a & b gives exactly one consumer run, and a | b consumes every event once."""
    rounds = 3
    before_consumer = 0
    for i in range(1, rounds + 1):
        for producer, task_id in (("producer_a", "produce_a"), ("producer_b", "produce_b")):
            harness.start(kill_after=task_id)
            out = harness.podium("trigger", producer, "--key", f"{producer}-{i}")
            assert out.returncode == 0, out.stderr
            harness.died()  # killed with the success committed, the consumers maybe not yet run
            done = harness.query(
                "SELECT COUNT(*) FROM task_instances t JOIN runs r ON r.run_id = t.run_id "
                "WHERE r.run_key = ? AND t.state = 'success'",
                f"{producer}-{i}",
            )
            assert done[0][0] == 1
            waiting = [o for o, _ in harness.outcomes("consumer_or").values() if o == "waiting"]
            before_consumer += bool(waiting)  # the kill landed before the consumer run
        harness.start()
        harness.wait_until(
            lambda want=i: harness.settled() and len(harness.runs("consumer_and")) >= want,
            f"round {i} to be consumed",
        )
        harness.stop()
        assert len(harness.runs("consumer_and")) == i  # one run per a & b satisfaction
    check_exactly_once(harness)
    assert len(harness.asset_events()) == 2 * rounds
    print(f"{before_consumer} of {2 * rounds} kills landed before the consumer run")


def test_kill_at_random_moments_loses_and_doubles_nothing(harness: AssetHarness) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    harness.start()
    for kill in range(4):
        for j in range(3):
            producer = rng.choice(["producer_a", "producer_b"])
            out = harness.podium("trigger", producer, "--key", f"{producer}-{kill}-{j}")
            assert out.returncode == 0, out.stderr
        time.sleep(rng.uniform(0.0, 0.3))  # a random kill point, not a synchronisation
        harness.kill9()
        harness.start()
    harness.wait_until(harness.settled, "every event to be consumed", timeout=60)
    harness.stop()
    check_exactly_once(harness)
    producers = harness.runs("producer_a") + harness.runs("producer_b")
    assert len(producers) == 12 and {s for _, s in producers} == {"success"}, (seed, producers)
    produced = Counter(uri for uri in harness.asset_events().values())
    assert sum(produced.values()) == 12, (seed, produced)  # one event per producer success
