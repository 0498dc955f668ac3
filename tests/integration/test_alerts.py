"""Alerts delivered to a real local HTTP server (aiohttp on 127.0.0.1), from a real engine.

Wiring as the engine does it: ``engine.add_observer(alerting)`` and ``alerting.run()`` in a task
group next to the engine.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from engine import Context, Engine, ManualClock, RunState, dag, task
from engine.alerting import Alerting
from engine.alerts import ALERT_KINDS, Alert
from engine.notifiers import CallbackNotifier, JSONWebhook, SlackWebhook, slack_payload
from engine.slowness import SLA

BASE_URL = "http://podium.test:8080"


class Receiver:
    """Records the JSON bodies POSTed to ``/{name}``; answers with scripted statuses (then 200).
    ``/hang`` never answers until the server stops."""

    def __init__(self) -> None:
        self.posts: dict[str, list[Any]] = defaultdict(list)
        self.statuses: dict[str, list[int]] = {}
        self.always: dict[str, int] = {}
        self.port = 0
        self._changed = anyio.Event()
        self._stop = anyio.Event()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.posts[name].append(await request.json())
        self._changed.set()
        self._changed = anyio.Event()
        if name == "hang":
            await self._stop.wait()
        scripted = self.statuses.get(name)
        status = scripted.pop(0) if scripted else self.always.get(name, 200)
        return web.Response(status=status, text="ok" if status == 200 else "server error")

    async def wait_for(self, name: str, count: int, timeout: float = 10) -> list[Any]:
        with anyio.fail_after(timeout):
            while len(self.posts[name]) < count:
                await self._changed.wait()
        return self.posts[name]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.port = runner.addresses[0][1]
    try:
        yield r
    finally:
        r._stop.set()
        await runner.cleanup()


@asynccontextmanager
async def serving(engine: Engine, alerting: Alerting) -> AsyncIterator[None]:
    """The engine with its alerting loop, as ``Engine`` wires them."""
    engine.add_observer(alerting)
    async with engine, anyio.create_task_group() as tg:
        await tg.start(alerting.run)
        yield
        tg.cancel_scope.cancel()


async def wait_until(predicate: Any, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "podium.db"


@task(retries=1)
async def load(ctx: Context) -> None:
    raise ValueError(f"could not load batch 7 (try {ctx.try_number})\ncolumn 'amount': got 'n/a'")


@dag
def nightly_sales() -> None:
    load()


async def test_failed_task_posts_one_slack_message_naming_dag_run_task_try_error_and_link(
    db: Path,
) -> None:
    async with receiver() as server:
        slack = SlackWebhook(server.url("slack"))
        podium = Engine(db, dags=[nightly_sales])
        alerting = Alerting(podium, [slack], base_url=BASE_URL)
        async with serving(podium, alerting):
            done = await (await podium.trigger("nightly_sales")).wait(timeout=10)
            assert done.state is RunState.FAILED and done.tasks["load"].try_number == 2
            with anyio.fail_after(10):
                await alerting.flush()
        [message] = server.posts["slack"]  # the retried try is not alerted by default
    text = message["text"]
    assert "Task failed" in text
    assert "*DAG* `nightly_sales`" in text
    assert f"*Run* `{done.run_id}`" in text
    assert "*Task* `load`" in text
    assert "*Try* 2" in text
    assert "```column 'amount': got 'n/a'```" in text  # the error's last line
    assert f"<{BASE_URL}/runs/{done.run_id}|Open run {done.run_id}>" in text
    assert message["blocks"][0]["text"]["text"] == text
    assert alerting.stats[(slack.name, "delivered")] == 1


async def test_webhook_answering_500_twice_gets_the_alert_on_the_third_try(db: Path) -> None:
    async with receiver() as server:
        server.statuses["flaky"] = [500, 500]
        hook = JSONWebhook(server.url("flaky"), retries=3, backoff=0.01)
        podium = Engine(db, dags=[nightly_sales])
        alerting = Alerting(podium, [hook], base_url=BASE_URL)
        async with serving(podium, alerting):
            done = await (await podium.trigger("nightly_sales")).wait(timeout=10)
            with anyio.fail_after(10):
                await alerting.flush()
        posts = server.posts["flaky"]
    assert len(posts) == 3 and posts[0] == posts[1] == posts[2]
    alert = posts[2]
    assert alert["kind"] == "failure"
    assert (alert["dag_id"], alert["run_id"], alert["task_id"]) == (
        "nightly_sales",
        done.run_id,
        "load",
    )
    assert alert["try_number"] == 2
    assert alert["error_last_line"] == "column 'amount': got 'n/a'"
    assert alert["url"] == f"{BASE_URL}/runs/{done.run_id}"
    assert alerting.stats[(hook.name, "delivered")] == 1
    assert alerting.stats[(hook.name, "failed")] == 0


@task
async def maybe_fail(fail: bool) -> str:
    if fail:
        raise RuntimeError("upstream API returned 503")
    return "ok"


@dag
def api_sync(fail: bool = False) -> None:
    maybe_fail(fail)


async def test_failing_and_hanging_notifiers_never_affect_runs_and_are_logged(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="podium.alerts")
    heard: list[Alert] = []

    async def healthy(alert: Alert) -> None:
        heard.append(alert)

    async with receiver() as server:
        server.always["broken"] = 500
        broken = JSONWebhook(server.url("broken"), retries=1, backoff=0.01)
        hanging = SlackWebhook(server.url("hang"), timeout=60, retries=0)
        podium = Engine(db, dags=[api_sync])
        alerting = Alerting(podium, [broken, hanging, CallbackNotifier(healthy)])
        async with serving(podium, alerting):
            failed = await (await podium.trigger("api_sync", {"fail": True})).wait(timeout=10)
            await server.wait_for("hang", 1)  # the hanging notifier holds its first alert...
            ok = await (await podium.trigger("api_sync")).wait(timeout=10)
            again = await (await podium.trigger("api_sync")).wait(timeout=10)
            assert [failed.state, ok.state, again.state] == ["failed", "success", "success"]
            assert failed.tasks["maybe_fail"].error == "RuntimeError: upstream API returned 503"
            # ...while runs go on, and the other notifiers deliver (failure, then recovery)
            await wait_until(lambda: len(heard) == 2)
            await wait_until(lambda: alerting.stats[(broken.name, "failed")] == 2)
            assert alerting.pending == 2  # the hanging delivery and the recovery alert behind it
        assert [a.kind for a in heard] == ["failure", "recovery"]
    assert len(server.posts["broken"]) == 4  # two alerts, two tries each
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        f"alert failure of api_sync/{failed.run_id} not delivered to {broken.name} after 2 tries: "
        f"{broken.name} answered HTTP 500: server error"
    ) in errors
    assert any("failed (try 1 of 2)" in r.getMessage() for r in caplog.records)


async def test_unanswered_deliveries_time_out_and_4xx_is_not_retried(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="podium.alerts")
    async with receiver() as server:
        server.always["gone"] = 404  # a revoked webhook: retrying cannot help
        hanging = JSONWebhook(server.url("hang"), timeout=0.2, retries=0)
        gone = SlackWebhook(server.url("gone"), retries=3, backoff=0.01, name="slack:gone")
        podium = Engine(db, dags=[api_sync])
        alerting = Alerting(podium, [hanging, gone])
        async with serving(podium, alerting):
            done = await (await podium.trigger("api_sync", {"fail": True})).wait(timeout=10)
            assert done.state is RunState.FAILED
            with anyio.fail_after(10):
                await alerting.flush()
        assert len(server.posts["gone"]) == 1
    assert alerting.stats[(hanging.name, "failed")] == alerting.stats[("slack:gone", "failed")] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        f"not delivered to {hanging.name} after 1 tries: no answer within 0.2s" in m for m in errors
    )
    assert any(
        "not delivered to slack:gone after 1 tries: slack:gone answered HTTP 404" in m
        for m in errors
    )


clocks: dict[str, ManualClock] = {}  # the engine clock each DAG's tasks move
gates: dict[str, anyio.Event] = {}  # run_id -> what a held task waits for


@task
async def crunch(ctx: Context, hold: bool = False) -> None:
    if hold:
        gates[ctx.run_id] = gate = anyio.Event()
        await gate.wait()
    else:
        clocks[ctx.dag_id].advance(2.0)  # a normal try takes 2 s of engine time


@dag
def reports(hold: bool = False) -> None:
    crunch(hold)


async def test_slowdown_alert_arrives_while_the_task_still_runs(db: Path) -> None:
    clock = ManualClock()
    clocks["reports"] = clock
    async with Engine(db, dags=[reports], clock=clock) as podium:  # history: three 2 s successes
        for _ in range(3):
            assert (await (await podium.trigger("reports")).wait(timeout=10)).state == "success"

    async with receiver() as server:
        hook = JSONWebhook(server.url("alerts"))
        podium = Engine(db, dags=[reports], clock=clock)
        alerting = Alerting(podium, [hook], base_url=BASE_URL)  # N=20, k=3, 1 s minimum
        async with serving(podium, alerting):
            assert alerting.baselines.samples("reports", "crunch") == [2.0, 2.0, 2.0]
            run = await podium.trigger("reports", {"hold": True})
            await wait_until(lambda: run.run_id in gates)

            clock.advance(5.0)  # 5 s: not yet 3 x 2 s
            await wait_until(lambda: alerting.checked_at == clock.now())
            assert server.posts["alerts"] == [] and not alerting.is_slow(run.run_id, "crunch")

            clock.advance(2.0)  # 7 s > 6 s
            [alert] = await server.wait_for("alerts", 1)
            now = await podium.get_run(run.run_id)
            assert now.tasks["crunch"].state == "running"  # flagged while it still runs
            assert alerting.is_slow(run.run_id, "crunch")
            assert alert["kind"] == "slowdown"
            assert (alert["run_id"], alert["task_id"], alert["try_number"]) == (
                run.run_id,
                "crunch",
                1,
            )
            assert alert["details"] == {
                "elapsed": 7.0,
                "baseline": 2.0,
                "threshold": 6.0,
                "samples": 3,
            }
            assert "running 7.0s, more than 3x its usual 2.0s" in alert["message"]

            clock.advance(60.0)  # still running, still slow: no second alert for this try
            await wait_until(lambda: alerting.checked_at == clock.now())
            gates[run.run_id].set()
            done = await run.wait(timeout=10)
            assert done.state is RunState.SUCCESS
            with anyio.fail_after(10):
                await alerting.flush()
            assert len(server.posts["alerts"]) == 1
            assert not alerting.is_slow(run.run_id, "crunch")
            # the observed success joins the baseline
            assert alerting.baselines.samples("reports", "crunch") == [2.0, 2.0, 2.0, 67.0]


async def test_retry_failure_and_recovery_alerts_to_a_sync_callback(db: Path) -> None:
    heard: list[Alert] = []

    @task(retries=1)
    async def fetch(fail: bool) -> None:
        if fail:
            raise ConnectionError("reset by peer")

    @dag
    def feed(fail: bool = False) -> None:
        fetch(fail)

    podium = Engine(db, dags=[feed])
    alerting = Alerting(podium, [CallbackNotifier(heard.append)], on=ALERT_KINDS)
    async with serving(podium, alerting):
        bad = await (await podium.trigger("feed", {"fail": True})).wait(timeout=10)
        good = await (await podium.trigger("feed")).wait(timeout=10)
        with anyio.fail_after(10):
            await alerting.flush()
    assert [(a.kind, a.run_id, a.task_id, a.try_number) for a in heard] == [
        ("retry", bad.run_id, "fetch", 1),
        ("failure", bad.run_id, "fetch", 2),
        ("recovery", good.run_id, None, None),
    ]
    assert heard[0].error_last_line == "ConnectionError: reset by peer"
    assert heard[2].message == f"DAG feed recovered: run {good.run_id} succeeded after a failed run"
    assert heard[0].url is None  # no base_url given


async def test_recovery_knows_the_last_outcome_from_the_state_file(db: Path) -> None:
    async with Engine(db, dags=[api_sync]) as podium:
        await (await podium.trigger("api_sync", {"fail": True})).wait(timeout=10)
    heard: list[Alert] = []
    podium = Engine(db, dags=[api_sync])
    alerting = Alerting(podium, [CallbackNotifier(heard.append)])
    async with serving(podium, alerting):
        good = await (await podium.trigger("api_sync")).wait(timeout=10)
        with anyio.fail_after(10):
            await alerting.flush()
    assert [(a.kind, a.run_id) for a in heard] == [("recovery", good.run_id)]


async def test_sla_misses_are_alerted_while_the_run_is_late(db: Path) -> None:
    clock = ManualClock()
    clocks["reports"] = clock
    heard: list[Alert] = []
    arrived = anyio.Event()

    async def collect(alert: Alert) -> None:
        heard.append(alert)
        arrived.set()

    podium = Engine(db, dags=[reports], clock=clock)
    slas = {"reports": 120.0, ("reports", "crunch"): SLA(30, relative_to="start")}
    alerting = Alerting(podium, [CallbackNotifier(collect)], sla=slas, slowness=None)
    async with serving(podium, alerting):
        run = await podium.trigger("reports", {"hold": True})
        await wait_until(lambda: run.run_id in gates)
        clock.advance(31)
        with anyio.fail_after(10):
            await arrived.wait()
        [task_miss] = heard
        assert (task_miss.kind, task_miss.task_id, task_miss.try_number) == (
            "sla_miss",
            "crunch",
            1,
        )
        assert "missed its SLA of 30.0s after the run's start: still not finished" in (
            task_miss.message
        )
        clock.advance(90)  # 121 s after the logical date
        await wait_until(lambda: len(heard) == 2)
        assert (heard[1].kind, heard[1].task_id) == ("sla_miss", None)
        assert heard[1].message.startswith("Run of DAG reports missed its SLA of 2m 0s")
        clock.advance(100)
        await wait_until(lambda: alerting.checked_at == clock.now())
        gates[run.run_id].set()
        assert (await run.wait(timeout=10)).state is RunState.SUCCESS
        with anyio.fail_after(10):
            await alerting.flush()
    assert len(heard) == 2  # one per SLA and run


async def test_a_full_queue_drops_the_oldest_alert_with_a_warning(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="podium.alerts")
    got: list[str] = []
    busy = anyio.Event()
    release = anyio.Event()

    async def slow(alert: Alert) -> None:
        busy.set()
        await release.wait()
        got.append(alert.run_id)

    podium = Engine(db)
    alerting = Alerting(podium, [CallbackNotifier(slow, timeout=30, name="slow")], queue_size=2)

    def alert(run_id: str) -> Alert:
        return Alert(kind="failure", dag_id="d", run_id=run_id, message="m")

    async with serving(podium, alerting):
        alerting.emit(alert("a1"))
        with anyio.fail_after(10):
            await busy.wait()  # a1 is being delivered
        for run_id in ("a2", "a3", "a4"):  # a4 finds a2, a3 queued: a2 goes
            alerting.emit(alert(run_id))
        release.set()
        with anyio.fail_after(10):
            await alerting.flush()
    assert got == ["a1", "a3", "a4"]
    assert alerting.stats[("slow", "dropped")] == 1
    assert any(
        "alert queue of slow is full (2 waiting): dropped the oldest alert (failure d/a2)"
        in r.getMessage()
        for r in caplog.records
    )


def test_slack_text_escapes_what_slack_would_read_as_markup() -> None:
    payload = slack_payload(
        Alert(
            kind="failure",
            dag_id="d",
            run_id="r",
            task_id="t",
            try_number=1,
            message="m",
            error_last_line="KeyError: '<script>' & more",
            url="http://x/runs/r",
        )
    )
    assert "```KeyError: '&lt;script&gt;' &amp; more```" in payload["text"]
    assert "<http://x/runs/r|Open run r>" in payload["text"]
