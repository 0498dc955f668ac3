"""The short chaos run of `make test`: 10 SIGKILLs under Kafka + timer + manual load
(`make chaos` runs 200)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.driver import run_chaos
from tests.servers import KafkaBroker


@pytest.mark.timeout(480)
def test_ten_kills_lose_nothing_double_nothing_and_respect_limits(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    seed = int(os.environ.get("PODIUM_CHAOS_SEED", random.randrange(2**31)))
    print(f"chaos seed {seed} (replay: PODIUM_CHAOS_SEED={seed})")
    report = run_chaos(tmp_path, kills=10, seed=seed, broker=kafka_broker)
    assert report.problems == [], f"seed {seed}: {report.problems[:20]}"
    assert report.kills == 10
    assert report.events_produced > 0 and report.manual_triggers >= 4
    assert report.runs >= report.events_produced + report.manual_triggers
    assert report.max_live_pool <= 2 and report.max_live_global <= 8
