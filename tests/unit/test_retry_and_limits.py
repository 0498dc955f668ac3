"""Retry policy arithmetic and the ready queue's limits, without an event loop."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.limits import ReadyQueue
from engine.retry import RetryPolicy


def test_retry_counts_and_exception_filter() -> None:
    policy = RetryPolicy(retries=2, retry_on=(ConnectionError,))
    assert policy.should_retry(1, ConnectionError())
    assert policy.should_retry(2, ConnectionError())
    assert not policy.should_retry(3, ConnectionError())
    assert not policy.should_retry(1, ValueError())
    assert policy.should_retry(1, None)  # engine stopped during the try: always retryable


def test_exponential_backoff_capped_after_jitter() -> None:
    policy = RetryPolicy(retries=10, delay=2, backoff=2, max_delay=30, jitter=0.5)
    assert policy.delay_before(1, rand=lambda: 0.0) == 2
    assert policy.delay_before(3, rand=lambda: 0.0) == 8
    assert policy.delay_before(3, rand=lambda: 1.0) == 12
    assert policy.delay_before(5, rand=lambda: 1.0) == 30


@given(st.integers(1, 30), st.floats(0, 100), st.floats(1, 4), st.floats(0, 1), st.floats(0, 500))
def test_delay_never_exceeds_max_delay(
    try_number: int, delay: float, backoff: float, jitter: float, cap: float
) -> None:
    policy = RetryPolicy(retries=50, delay=delay, backoff=backoff, jitter=jitter, max_delay=cap)
    assert 0 <= policy.delay_before(try_number) <= cap


def test_priority_then_fifo() -> None:
    q = ReadyQueue(10)
    q.push("low-1", priority=0)
    q.push("high", priority=5)
    q.push("low-2", priority=0)
    assert [p for p, _ in q.pop_startable()] == ["high", "low-1", "low-2"]


def test_full_pool_does_not_block_other_pools_and_wakes_in_order() -> None:
    q = ReadyQueue(10, {"db": 1})
    q.push("db-1", limits=("db",))
    q.push("db-2", limits=("db",))
    q.push("free", limits=())
    started = q.pop_startable()
    assert [p for p, _ in started] == ["db-1", "free"]
    assert q.pop_startable() == []
    q.release(("db",))
    assert [p for p, _ in q.pop_startable()] == ["db-2"]


def test_global_limit() -> None:
    q = ReadyQueue(2)
    for i in range(5):
        q.push(i)
    assert [p for p, _ in q.pop_startable()] == [0, 1]
    q.release(())
    assert [p for p, _ in q.pop_startable()] == [2]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_workload_never_exceeds_any_limit_and_runs_everything(data: st.DataObject) -> None:
    capacities = {"p1": data.draw(st.integers(1, 3)), "p2": data.draw(st.integers(1, 3))}
    global_limit = data.draw(st.integers(1, 5))
    q = ReadyQueue(global_limit, capacities)
    n = data.draw(st.integers(1, 60))
    key_sets = [(), ("p1",), ("p2",), ("p1", "p2")]
    for i in range(n):
        q.push(
            i, priority=data.draw(st.integers(0, 2)), limits=data.draw(st.sampled_from(key_sets))
        )
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    running: list[tuple[int, tuple[str, ...]]] = []
    done = 0
    while done < n:
        running.extend(q.pop_startable())
        assert len(running) <= global_limit
        for key, cap in capacities.items():
            assert sum(1 for _, ks in running if key in ks) <= cap
        assert running, "ready work left but nothing can start: a lost wake-up"
        item = running.pop(rng.randrange(len(running)))
        q.release(item[1])
        done += 1
    assert len(q) == 0
