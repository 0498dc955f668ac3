"""A Kafka-triggered DAG for the crash tests; the broker and topic come from the environment."""

from __future__ import annotations

import os

import anyio

from engine import dag, task
from sensors import KafkaTopic

TOPIC = KafkaTopic(
    os.environ["PODIUM_TEST_TOPIC"],
    bootstrap_servers=os.environ["PODIUM_TEST_BOOTSTRAP"],
    group_id="crash-test",
    client_options={"session_timeout_ms": 3000, "heartbeat_interval_ms": 500},
)


@task(retries=3)  # a try running when the engine is killed is retried (that try counts)
async def work(n: int) -> int:
    await anyio.sleep(0.002)
    return n


@dag(triggers=[TOPIC])
def consume(n: int = -1) -> None:
    work(n)
