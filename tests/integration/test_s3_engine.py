"""S3 object events through the whole engine, against a real moto S3/SQS server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import get_session

from engine import Context, Engine, Run, dag, task
from sensors import S3Events
from tests.servers import MotoServer, make_bucket_with_sqs_notifications

seen: list[dict[str, Any]] = []


@task
async def ingest(ctx: Context, bucket: str, key: str, size: int, etag: str) -> str:
    seen.append({"bucket": bucket, "key": key, "size": size, "etag": etag, "event": ctx.event})
    return key


async def put_objects(moto: MotoServer, bucket: str, keys: list[str]) -> None:
    async with get_session().create_client("s3", **moto.aws_client_kwargs()) as s3:
        for key in keys:
            await s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


async def wait_runs(podium: Engine, dag_id: str, count: int, timeout: float = 30) -> list[Run]:
    with anyio.fail_after(timeout):
        while True:
            runs = await podium.runs(dag_id=dag_id, limit=1000)
            if len(runs) >= count and all(r.finished for r in runs):
                return runs
            await anyio.sleep(0.05)


async def test_sqs_notifications_start_one_run_per_object_with_the_exact_key(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    seen.clear()
    name = f"landing-{uuid.uuid4().hex[:8]}"
    queue_url = await make_bucket_with_sqs_notifications(
        moto_server.aws_client_kwargs(), name, name
    )
    trigger = S3Events(
        bucket=name,
        prefix="crm/",
        queue_url=queue_url,
        endpoint_url=moto_server.endpoint_url,
        wait_time=1,
        visibility_timeout=30,
    )

    @dag(dag_id="on_file", triggers=[trigger])
    def on_file(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
        ingest(bucket, key, size, etag)

    keys = ["crm/new file ü.csv", "crm/a+b=c&d.csv", "crm/plain.csv"]
    async with Engine(tmp_path / "s3.db", dags=[on_file]) as podium:
        await put_objects(moto_server, name, [*keys, "other/ignored.csv"])
        runs = await wait_runs(podium, "on_file", 3)
        await anyio.sleep(1.5)  # one more receive cycle: nothing else may arrive
        runs = await podium.runs(dag_id="on_file")
        events = await podium.events(limit=50)
    assert sorted(r.params["key"] for r in runs) == sorted(keys)
    assert all(r.state == "success" for r in runs)
    assert sorted(s["key"] for s in seen) == sorted(keys)
    assert {s["size"] for s in seen} == {len(k.encode()) for k in keys}
    assert all(r.key.startswith(f"s3:{name}/crm/") for r in runs)
    assert {e["outcome"] for e in events if e["dag_id"] == "on_file"} == {"ran", "filtered"}


async def test_polling_a_bucket_neither_repeats_nor_skips_across_restarts(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    seen.clear()
    name = f"poll-{uuid.uuid4().hex[:8]}"
    async with get_session().create_client("s3", **moto_server.aws_client_kwargs()) as s3:
        await s3.create_bucket(Bucket=name)
    await put_objects(moto_server, name, ["in/old.csv"])  # exists before the first start
    trigger = S3Events(
        bucket=name, prefix="in/", endpoint_url=moto_server.endpoint_url, poll_interval=0.2
    )

    @dag(dag_id="polled", triggers=[trigger])
    def polled(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
        ingest(bucket, key, size, etag)

    db = tmp_path / "poll.db"
    async with Engine(db, dags=[polled]) as podium:
        with anyio.fail_after(30):  # the first poll records the baseline (as a cursor)
            while await podium.sink.load_cursor(trigger.subscription) is None:
                await anyio.sleep(0.02)
        await put_objects(moto_server, name, ["in/one.csv", "in/two.csv"])
        await wait_runs(podium, "polled", 2)
    await put_objects(moto_server, name, ["in/three.csv"])  # while the engine is down
    async with Engine(db, dags=[polled]) as podium:
        await put_objects(moto_server, name, ["in/four.csv"])
        runs = await wait_runs(podium, "polled", 4)
        await anyio.sleep(0.6)  # a few more polls: no repeats
        runs = await podium.runs(dag_id="polled")
    assert sorted(r.params["key"] for r in runs) == [
        "in/four.csv",
        "in/one.csv",
        "in/three.csv",
        "in/two.csv",
    ]


class FlakyProxy:
    """A real HTTP proxy in front of moto that fails every request with a 500 while ``failing``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.failing = True
        self.failed = 0
        self.forwarded = 0

    async def handle(self, request: Any) -> Any:
        from aiohttp import ClientSession, web

        if self.failing:
            self.failed += 1
            body = "<ErrorResponse><Error><Code>InternalError</Code></Error></ErrorResponse>"
            return web.Response(status=500, text=body, content_type="text/xml")
        self.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as upstream,
        ):
            drop = {"content-length", "transfer-encoding", "content-encoding", "connection"}
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in drop},
            )


async def test_sqs_endpoint_failing_requests_delays_but_loses_nothing(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    from aiohttp import web

    seen.clear()
    proxy = FlakyProxy(moto_server.endpoint_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        name = f"flaky-{uuid.uuid4().hex[:8]}"
        queue_url = await make_bucket_with_sqs_notifications(
            moto_server.aws_client_kwargs(), name, name
        )
        trigger = S3Events(
            bucket=name, prefix="in/", queue_url=queue_url,
            endpoint_url=f"http://127.0.0.1:{port}", wait_time=1,
        )  # fmt: skip

        @dag(dag_id="flaky", triggers=[trigger])
        def flaky(bucket: str = "", key: str = "", size: int = 0, etag: str = "") -> None:
            ingest(bucket, key, size, etag)

        async with Engine(tmp_path / "flaky.db", dags=[flaky]) as podium:
            await put_objects(moto_server, name, ["in/a.csv", "in/b.csv", "in/c.csv"])
            with anyio.fail_after(20):
                while proxy.failed < 3:  # the sensor keeps trying through the failures
                    await anyio.sleep(0.05)
            assert await podium.runs() == []
            proxy.failing = False  # the endpoint recovers
            runs = await wait_runs(podium, "flaky", 3)
            await anyio.sleep(1.5)
            runs = await podium.runs(dag_id="flaky")
    finally:
        await runner.cleanup()
    assert sorted(r.params["key"] for r in runs) == ["in/a.csv", "in/b.csv", "in/c.csv"]
    assert proxy.forwarded > 0
