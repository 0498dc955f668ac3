"""Back-off arithmetic: pure, no clock."""

from __future__ import annotations

import itertools

import pytest

from engine.backoff import Backoff


def test_doubles_from_initial_up_to_the_cap() -> None:
    assert [Backoff(0.5, cap=30.0).delay(n) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    # what the store writer waits between failed commits
    assert [Backoff(0.0625, cap=2.0).delay(n) for n in range(1, 8)] == [
        0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 2.0,
    ]  # fmt: skip


def test_no_cap_and_other_factors() -> None:
    assert [Backoff(1.0).delay(n) for n in (1, 2, 3, 11)] == [1.0, 2.0, 4.0, 1024.0]
    assert [Backoff(2.0, factor=3.0).delay(n) for n in (1, 2, 3)] == [2.0, 6.0, 18.0]
    assert [Backoff(5.0, factor=1.0).delay(n) for n in (1, 50)] == [5.0, 5.0]
    assert Backoff(0.0).delay(7) == 0.0


def test_zero_or_fewer_failures_count_as_the_first() -> None:
    assert Backoff(0.2, cap=5.0).delay(0) == Backoff(0.2, cap=5.0).delay(-3) == 0.2


def test_a_long_run_of_failures_stays_at_the_cap_without_overflow() -> None:
    assert Backoff(0.2, cap=5.0).delay(10**6) == 5.0
    assert Backoff(1.0).delay(10**6) == float("inf")
    assert Backoff(0.0).delay(10**6) == 0.0


def test_jitter_adds_up_to_its_share_then_the_cap_bounds_it() -> None:
    policy = Backoff(2.0, cap=10.0, jitter=0.5)
    assert policy.delay(1, rand=lambda: 0.0) == 2.0
    assert policy.delay(1, rand=lambda: 0.999) == pytest.approx(2.999)
    assert policy.delay(3, rand=lambda: 0.999) == 10.0  # 8 + 4 * 0.999, capped
    calls: list[int] = []

    def counting() -> float:
        calls.append(1)
        return 0.5

    Backoff(1.0).delay(3, rand=counting)
    assert calls == []  # no jitter: the random source is left alone


def test_delays_iterate_and_reset_after_a_success() -> None:
    delays = Backoff(0.5, cap=4.0).delays()
    assert list(itertools.islice(delays, 5)) == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert delays.failures == 5
    delays.reset()
    assert next(delays) == 0.5
    assert iter(delays) is delays


def test_jittered_delays_use_the_given_random_source() -> None:
    delays = Backoff(1.0, jitter=1.0).delays(rand=lambda: 0.5)
    assert [next(delays), next(delays)] == [1.5, 3.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"initial": float("inf")},
        {"initial": float("nan")},
        {"initial": 1.0, "cap": -1.0},
        {"initial": 1.0, "cap": float("nan")},
        {"initial": 1.0, "factor": 0.5},
        {"initial": 1.0, "factor": float("inf")},
        {"initial": 1.0, "jitter": 1.5},
        {"initial": 1.0, "jitter": -0.1},
    ],
)
def test_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="back-off"):
        Backoff(**kwargs)


def test_a_cap_below_the_initial_delay_is_a_true_bound() -> None:
    assert Backoff(10.0, cap=3.0).delay(1) == 3.0
