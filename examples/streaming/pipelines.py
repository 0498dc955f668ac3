"""Two event-triggered pipelines.

- ``on_order``: one run per message on the Kafka topic ``orders``. The message's JSON becomes the
  run's params; a message that is not JSON is recorded ``dead`` and copied to ``orders.dead``.
- ``on_landing_file``: one run per object created under ``incoming/`` in the bucket ``landing``,
  from S3 event notifications delivered to SQS. The task reads the object and counts its rows.

The endpoints are only known when the local servers start, so the DAGs are built by
``make_dags(...)`` rather than at import time.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from aiobotocore.session import get_session

from engine import DAG, Context, Skip, dag, task
from sensors import KafkaTopic, S3Events

# tansu holds a group join for half the session timeout: keep it short for a snappy demo
FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}


@task
async def validate_order(
    ctx: Context, order_id: int, amount: float, customer: str
) -> dict[str, Any]:
    if amount <= 0:
        raise Skip(f"order {order_id} has no amount")
    ctx.log.info("order %s from %s: %.2f", order_id, customer, amount)
    return {"order_id": order_id, "amount": amount, "customer": customer.strip().lower()}


@task
async def price_order(order: dict[str, Any]) -> dict[str, Any]:
    vat = round(order["amount"] * 0.19, 2)
    return {**order, "vat": vat, "total": round(order["amount"] + vat, 2)}


def make_dags(*, bootstrap: str, queue_url: str, s3_endpoint: str, bucket: str) -> list[DAG]:
    """The example's DAGs, wired to the given Kafka broker and S3/SQS endpoint."""

    orders = KafkaTopic(
        "orders",
        bootstrap_servers=bootstrap,
        group_id="podium-example",
        dead_letter_topic="orders.dead",
        client_options=FAST_GROUP,
    )

    @dag(triggers=[orders])
    def on_order(order_id: int = 0, amount: float = 0.0, customer: str = "") -> None:
        price_order(validate_order(order_id, amount, customer))

    files = S3Events(
        bucket=bucket,
        prefix="incoming/",
        queue_url=queue_url,
        endpoint_url=s3_endpoint,
        wait_time=1,
    )

    @task(retries=2, retry_delay=1)
    async def count_rows(ctx: Context, bucket: str, key: str) -> dict[str, Any]:
        async with get_session().create_client(
            "s3", endpoint_url=s3_endpoint, region_name="us-east-1"
        ) as s3:
            response = await s3.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as body:
                text = (await body.read()).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        ctx.log.info("%s: %d rows", key, len(rows))
        return {"key": key, "rows": len(rows), "columns": list(rows[0]) if rows else []}

    @dag(triggers=[files])
    def on_landing_file(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
        count_rows(bucket, key)

    return [on_order, on_landing_file]
