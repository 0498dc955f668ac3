"""Start a local Kafka broker (tansu) and S3/SQS (moto), produce sample events, show the runs.

.venv/bin/python -m examples.streaming        # needs the dev extras: `make test` installs them
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import get_session
from rich.console import Console
from rich.table import Table

from engine import Engine, Run

from .pipelines import make_dags

console = Console(width=max(Console().width, 120))


async def run_demo(workdir: Path, *, orders: int = 12, files: int = 3) -> dict[str, Any]:
    """Run the whole demo in ``workdir``; returns what happened (used by the test too)."""
    from tests.servers import (
        KafkaBroker,
        MotoServer,
        create_topic,
        make_bucket_with_sqs_notifications,
        produce,
    )

    broker, moto = KafkaBroker().start(), MotoServer().start()
    # moto accepts any credentials; the engine's S3/SQS clients read them from the environment
    for name, value in moto.aws_env().items():
        if name != "AWS_ENDPOINT_URL":
            os.environ.setdefault(name, value)
    try:
        aws = moto.aws_client_kwargs()
        await create_topic(broker.bootstrap, "orders", partitions=3)
        queue_url = await make_bucket_with_sqs_notifications(aws, "landing", "landing-events")
        dags = make_dags(
            bootstrap=broker.bootstrap, queue_url=queue_url, s3_endpoint=moto.endpoint_url,
            bucket="landing",
        )  # fmt: skip
        async with Engine(workdir / "streaming.db", dags=dags) as podium:
            values: list[Any] = [
                {"order_id": i, "amount": round(10 + i * 3.5, 2), "customer": f" Customer{i % 4} "}
                for i in range(orders)
            ]
            values.insert(orders // 2, b"{not json")  # one malformed message among good ones
            await produce(broker.bootstrap, "orders", values)
            async with get_session().create_client("s3", **aws) as s3:
                for i in range(files):
                    body = "id,amount\n" + "".join(f"{j},{j * 2}\n" for j in range(10 * (i + 1)))
                    await s3.put_object(Bucket="landing", Key=f"incoming/day {i} ü.csv", Body=body)
                await s3.put_object(Bucket="landing", Key="archive/old.csv", Body="id\n1\n")
            runs = await _wait_for_runs(podium, orders + files)
            dead = await podium.events(outcome="dead")
            outcomes = Counter(e["outcome"] for e in await podium.events(limit=1000))
    finally:
        broker.close()
        moto.close()
    return {"runs": runs, "dead": dead, "outcomes": outcomes}


async def _wait_for_runs(podium: Engine, count: int, timeout: float = 60) -> list[Run]:
    deadline = time.monotonic() + timeout
    while True:
        runs = await podium.runs(limit=1000)
        if len(runs) >= count and all(r.finished for r in runs):
            return [await podium.get_run(r.run_id) for r in runs]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(runs)} of {count} runs after {timeout}s")
        await anyio.sleep(0.1)


def show(result: dict[str, Any]) -> None:
    table = Table(title="runs started by events", title_justify="left")
    for col in ("dag", "trigger", "run key", "state", "result"):
        table.add_column(col)
    for run in sorted(result["runs"], key=lambda r: (r.dag_id, r.key)):
        last = list(run.tasks.values())[-1] if run.tasks else None
        summary = last.result if last and last.result is not None else (last.error if last else "")
        text = json.dumps(summary, ensure_ascii=False) if not isinstance(summary, str) else summary
        table.add_row(run.dag_id, run.trigger, run.key, run.state.value, text[:70])
    console.print(table)
    console.print(f"event outcomes: {dict(result['outcomes'])}")
    for event in result["dead"]:
        console.print(f"[red]dead[/] {event['event_id']}: {event['error']}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = anyio.run(run_demo, Path(tmp))
    show(result)
    sys.exit(0 if all(r.state == "success" for r in result["runs"]) else 1)


if __name__ == "__main__":
    main()
