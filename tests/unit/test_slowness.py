"""Baselines, slowness and SLA deadlines: pure functions over explicit numbers."""

from __future__ import annotations

import pytest

from engine.slowness import (
    SLA,
    Baselines,
    RunningTry,
    SlownessPolicy,
    as_sla,
    find_slow,
    is_slow,
    policy_lookup,
    sla_deadline,
    sla_missed,
    threshold,
)


def test_is_slow_compares_with_k_times_the_baseline_floored_at_min_baseline() -> None:
    # a 2-minute task is slow past 6 minutes, not at exactly 6
    assert not is_slow(360.0, 120.0, 3, 1.0)
    assert is_slow(360.1, 120.0, 3, 1.0)
    # a 20 ms task counts as 1 s: slow only past 3 s, not at 61 ms
    assert not is_slow(0.061, 0.02, 3, 1.0)
    assert not is_slow(3.0, 0.02, 3, 1.0)
    assert is_slow(3.01, 0.02, 3, 1.0)
    # the floor can be lowered
    assert is_slow(0.061, 0.02, 3, 0.0)
    assert threshold(0.02, 3, 0.05) == pytest.approx(0.15)


def test_baseline_is_the_median_of_the_last_n_durations() -> None:
    b = Baselines(capacity=5)
    assert b.baseline("etl", "load") is None
    for d in (10.0, 12.0, 11.0):
        b.add("etl", "load", d)
    assert b.baseline("etl", "load") == 11.0
    b.add("etl", "load", 100.0)  # an outlier barely moves a median
    assert b.baseline("etl", "load") == 11.5
    for d in (1.0, 1.0, 1.0):
        b.add("etl", "load", d)  # window of 5: 11, 100, 1, 1, 1
    assert b.samples("etl", "load") == [11.0, 100.0, 1.0, 1.0, 1.0]
    assert b.baseline("etl", "load") == 1.0
    assert b.baseline("etl", "load", window=2) == 1.0
    assert b.baseline("etl", "other") is None
    b.add("etl", "load", -5.0)  # a clock step backwards is not a duration
    assert len(b.samples("etl", "load")) == 5


def test_seed_puts_history_before_what_was_observed() -> None:
    b = Baselines(capacity=4)
    b.add("d", "t", 9.0)  # observed while the history was loading
    b.seed("d", "t", [1.0, 2.0, 3.0, 4.0])  # oldest first
    assert b.samples("d", "t") == [2.0, 3.0, 4.0, 9.0]
    b.seed("d", "new", [])
    assert b.samples("d", "new") == []


def test_find_slow_uses_each_tasks_policy_and_needs_min_samples() -> None:
    b = Baselines(capacity=20)
    for d in (100.0, 120.0, 110.0):
        b.add("etl", "load", d)  # baseline 110
    for d in (5.0, 5.0):
        b.add("etl", "tiny", d)  # only 2 samples
    b.add("etl", "quick", 2.0)
    b.add("etl", "quick", 2.0)
    b.add("etl", "quick", 2.0)
    now = 10_000.0
    running = [
        RunningTry("etl", "r1", "load", 1, started_at=now - 331),  # > 3 * 110 = 330
        RunningTry("etl", "r2", "load", 2, started_at=now - 329),  # not yet
        RunningTry("etl", "r1", "tiny", 1, started_at=now - 1000),  # too few samples
        RunningTry("etl", "r1", "quick", 1, started_at=now - 7),  # 2 x 3 = 6, but a k=5 override
        RunningTry("etl", "r1", "unknown", 1, started_at=now - 1e6),  # no history at all
    ]
    policy_for = policy_lookup(
        SlownessPolicy(), {("etl", "quick"): SlownessPolicy(factor=5, min_samples=1)}
    )
    slow = find_slow(running, b, policy_for, now)
    assert [(s.run_id, s.task_id, s.try_number) for s in slow] == [("r1", "load", 1)]
    s = slow[0]
    assert (s.elapsed, s.baseline, s.threshold, s.samples) == (331.0, 110.0, 330.0, 3)
    later = find_slow(running, b, policy_for, now + 4)
    assert {(s.run_id, s.task_id) for s in later} == {
        ("r1", "load"),
        ("r2", "load"),
        ("r1", "quick"),
    }


def test_policy_lookup_prefers_task_then_dag_then_default_and_none_disables() -> None:
    default = SlownessPolicy()
    per_dag = SlownessPolicy(factor=2)
    per_task = SlownessPolicy(window=5, min_samples=1)
    lookup = policy_lookup(default, {"etl": per_dag, ("etl", "load"): per_task, "noisy": None})
    assert lookup("etl", "load") is per_task
    assert lookup("etl", "other") is per_dag
    assert lookup("noisy", "x") is None
    assert lookup("elsewhere", "x") is default
    assert policy_lookup(None)("any", "task") is None


def test_find_slow_window_limits_the_samples_used() -> None:
    b = Baselines(capacity=10)
    for d in (100.0, 100.0, 100.0, 1.0, 1.0, 1.0):
        b.add("d", "t", d)
    policy = SlownessPolicy(window=3, min_baseline=0.5)
    slow = find_slow([RunningTry("d", "r", "t", 1, 0.0)], b, policy_lookup(policy), now=3.5)
    assert [(s.baseline, s.threshold) for s in slow] == [(1.0, 3.0)]


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="factor"):
        SlownessPolicy(factor=1)
    with pytest.raises(ValueError, match="window"):
        SlownessPolicy(window=0)
    with pytest.raises(ValueError, match="min_samples"):
        SlownessPolicy(window=2, min_samples=3)


def test_sla_relative_to_the_logical_date() -> None:
    sla = SLA(3600)  # one hour after the logical date
    logical, started = 1_000_000.0, 1_000_900.0
    assert sla_deadline(sla, logical_date=logical, run_started_at=started) == 1_003_600.0
    kw = {"logical_date": logical, "run_started_at": started}
    assert not sla_missed(sla, **kw, finished_at=None, now=1_003_600.0)
    assert sla_missed(sla, **kw, finished_at=None, now=1_003_600.5)
    assert not sla_missed(sla, **kw, finished_at=1_003_600.0, now=2_000_000.0)  # just in time
    assert sla_missed(sla, **kw, finished_at=1_003_601.0, now=1_003_601.0)


def test_sla_relative_to_the_run_start() -> None:
    sla = SLA(600, relative_to="start")
    assert sla_deadline(sla, logical_date=0.0, run_started_at=None) is None  # not started yet
    assert not sla_missed(sla, logical_date=0.0, run_started_at=None, finished_at=None, now=1e9)
    assert sla_deadline(sla, logical_date=0.0, run_started_at=5000.0) == 5600.0
    assert sla_missed(sla, logical_date=0.0, run_started_at=5000.0, finished_at=None, now=5601.0)
    assert not sla_missed(sla, logical_date=0.0, run_started_at=5000.0, finished_at=None, now=5599)


def test_sla_shorthand_and_validation() -> None:
    assert as_sla(90) == SLA(90.0, "logical_date")
    assert as_sla(None) is None
    explicit = SLA(5, "start")
    assert as_sla(explicit) is explicit
    with pytest.raises(ValueError, match="seconds > 0"):
        SLA(0)
    with pytest.raises(ValueError, match="relative_to"):
        SLA(10, relative_to="end")  # type: ignore[arg-type]
