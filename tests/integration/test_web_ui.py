"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium), driven over the DevTools
protocol with aiohttp's websocket client: no browser download, no extra dependency.

Install the browser with ``tests/ensure_chromium.sh`` (``make test`` runs it); without it these
tests fail. ``PODIUM_SCREENSHOT=1`` rewrites ``docs/run-page.png``.
"""

from __future__ import annotations

import base64
import functools
import itertools
import os
import signal
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import orjson

from engine import Context, Engine, TaskGroup, dag, task
from engine.web import serve
from sensors import KafkaTopic
from sensors.base import Event, EventBatch
from sensors.sources import subscription_of

CHROMIUM = Path(os.environ.get("PODIUM_CHROMIUM", "/usr/bin/chromium"))
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "run-page.png"
WIDTH, HEIGHT = 1400, 1000
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    f"--window-size={WIDTH},{HEIGHT}",
]
GATE: dict[str, anyio.Event] = {}

if not CHROMIUM.exists():  # `make test` installs it; a missing browser is a failure, not a skip
    raise RuntimeError(f"{CHROMIUM} is missing: run tests/ensure_chromium.sh (make test does)")


# -- a DevTools protocol client ---------------------------------------------------------------------


class Browser:
    """One Chromium process and its DevTools websocket; pages are flattened target sessions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, anyio.Event] = {}
        self._results: dict[int, dict[str, Any]] = {}
        self._waiters: list[tuple[str, str | None, anyio.Event]] = []
        self.errors: list[str] = []  # uncaught exceptions and console/CSP errors in any page

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = orjson.loads(msg.data)
            if "id" in data:
                self._results[data["id"]] = data
                self._replies.pop(data["id"]).set()
                continue
            method, session = data.get("method", ""), data.get("sessionId")
            params = data.get("params", {})
            if method == "Runtime.exceptionThrown":
                self.errors.append(str(params["exceptionDetails"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(f"{params['entry']['source']}: {params['entry']['text']}")
            for waiter in [w for w in self._waiters if w[0] == method and w[1] == session]:
                self._waiters.remove(waiter)
                waiter[2].set()

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:  # fmt: skip
        msg_id = next(self._ids)
        self._replies[msg_id] = done = anyio.Event()
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_str(orjson.dumps(message).decode())
        with anyio.fail_after(20):
            await done.wait()
        reply = self._results.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def expect(self, method: str, session: str | None) -> anyio.Event:
        event = anyio.Event()
        self._waiters.append((method, session, event))
        return event

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.resize(WIDTH, HEIGHT)
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def resize(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", metrics)

    async def goto(self, url: str) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        reply = await self.send("Page.navigate", {"url": url})
        assert "errorText" not in reply, reply
        with anyio.fail_after(20):
            await loaded.wait()

    async def js(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} raised {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def until(self, expression: str, timeout: float = 10) -> Any:
        """Evaluate until the value is truthy (the page changes on its own: it polls the API)."""
        with anyio.fail_after(timeout):
            while not (value := await self.js(expression)):
                await anyio.sleep(0.05)
        return value

    async def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element's box."""
        box = await self.js(
            f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **box})
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, **box, "button": "left", "buttons": buttons, "clickCount": 1},
            )

    async def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        return base64.b64decode((await self.send("Page.captureScreenshot", params))["data"])


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    argv = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"]
    proc = await anyio.open_process(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        port_file = profile / "DevToolsActivePort"
        with anyio.fail_after(30):
            while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
                assert proc.returncode is None, f"chromium exited with {proc.returncode}"
                await anyio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
            anyio.create_task_group() as tg,
        ):
            browser = Browser(ws)
            tg.start_soon(browser.read)
            yield browser
            await ws.close()
    finally:
        with anyio.CancelScope(shield=True):
            _signal_group(proc, signal.SIGTERM)
            with anyio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                _signal_group(proc, signal.SIGKILL)
                await proc.wait()


def _signal_group(proc: anyio.abc.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the browser and its renderer/GPU children: our own session
    except ProcessLookupError:
        pass


# -- PNG checks without PIL -------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """Every pixel of an 8-bit RGB or RGBA PNG (the kinds Chromium writes), row by row."""
    width, height = png_size(data)
    depth, colour = data[24], data[25]
    assert depth == 8 and colour in (2, 6), (depth, colour)
    channels = 3 if colour == 2 else 4
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + a) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + b) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels += [tuple(row[i : i + 3]) for i in range(0, stride, channels)]
        prev = row
    return pixels


def near(pixels: list[tuple[int, ...]], rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return sum(1 for p in pixels if all(abs(p[i] - rgb[i]) <= tolerance for i in range(3)))


# -- the DAGs and the server ------------------------------------------------------------------------


@task
async def extract(ctx: Context) -> list[dict[str, int]]:
    ctx.log.info("reading orders from the landing zone")
    await anyio.sleep(0.15)
    return [{"order": i, "amount": 10 * i} for i in range(3)]


@task
async def clean(rows: list[dict[str, int]]) -> list[dict[str, int]]:
    await anyio.sleep(0.2)
    return [r for r in rows if r["amount"] >= 0]


@task(retries=1, retry_delay=0.1)
async def load_orders(ctx: Context, rows: list[dict[str, int]]) -> int:
    ctx.log.info("loading %d rows into the warehouse", len(rows))
    await ctx.checkpoint({"loaded": 1})
    await anyio.sleep(0.1)
    raise ConnectionError("warehouse refused the connection (db.internal:5432)")


@task(pool="db")
async def enrich(rows: list[dict[str, int]]) -> int:
    await anyio.sleep(0.3)
    return len(rows)


@task(pool="db")
async def geocode(rows: list[dict[str, int]]) -> int:
    await anyio.sleep(0.2)
    return len(rows)


@task
async def aggregate(a: int, b: int) -> dict[str, int]:
    await anyio.sleep(0.05)
    return {"customers": a, "regions": b}


@task
async def report(loaded: int, stats: dict[str, int]) -> str:
    return f"{loaded} {stats}"


@dag(description="orders from the landing zone to the warehouse")
def orders() -> None:
    rows = extract()
    report(load_orders(clean(rows)), aggregate(enrich(rows), geocode(rows)))


@task
async def wait_gate(ctx: Context) -> str:
    ctx.log.info("waiting for the gate")
    await GATE["open"].wait()
    return "open"


@task
async def finish(value: str) -> str:
    return value


@dag
def live() -> None:
    finish(wait_gate())


ORDERS_STATES = {
    "extract": "success",
    "clean": "success",
    "load_orders": "failed",
    "enrich": "success",
    "geocode": "success",
    "aggregate": "success",
    "report": "upstream_failed",
}


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    async with Engine(
        tmp_path / "podium.db",
        dags=[orders, live],
        pools={"db": 1},
        sensors=False,
        shutdown_grace=1,
    ) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, eng, "127.0.0.1", 0, "ui-token"))
            yield eng, f"http://127.0.0.1:{port}"
            tg.cancel_scope.cancel()


# -- the tests --------------------------------------------------------------------------------------


async def test_run_page_of_a_failed_run_shows_graph_timeline_and_the_failure(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (engine, url), chromium(tmp_path) as browser:
        run = await (await engine.trigger("orders")).wait(20)
        assert {t: ti.state.value for t, ti in run.tasks.items()} == ORDERS_STATES
        page = await browser.new_page()
        await page.goto(f"{url}/runs/{run.run_id}")

        nodes = await page.js(
            "[...document.querySelectorAll('#graph svg g.node')]"
            ".map(n => [n.dataset.task, n.getAttribute('class')])"
        )
        assert sorted(nodes) == sorted([t, f"node st-{s}"] for t, s in ORDERS_STATES.items())
        edges = await page.js("document.querySelectorAll('#graph svg path.edge').length")
        assert edges == 8
        # the failed task stands out: a thick red outline with a glow, a banner, its panel open
        rect = await page.js(
            "(() => { const s = getComputedStyle(document.querySelector("
            "'#graph g.node[data-task=load_orders] rect'));"
            " return [s.stroke, s.strokeWidth, s.filter]; })()"
        )
        assert rect[0] == "rgb(217, 63, 63)" and rect[1] == "3.5px" and "drop-shadow" in rect[2]
        ok_width = await page.js(
            "getComputedStyle(document.querySelector('#graph g.node[data-task=extract] rect')).strokeWidth"
        )
        assert ok_width == "2px"
        banner = await page.js("document.querySelector('.failed-banner').innerText")
        assert "load_orders" in banner and "warehouse refused the connection" in banner
        assert await page.js("document.getElementById('task-load_orders').open") is True
        # the timeline: a bar per try, the second try of load_orders after a retry wait, and
        # the pool wait of whichever of enrich/geocode got the single "db" slot second
        bars = await page.js(
            "[...document.querySelectorAll('#gantt rect.bar')]"
            ".map(b => [b.dataset.task, b.dataset.kind, b.getAttribute('class'), +b.getAttribute('width')])"
        )
        running = [b for b in bars if b[1] == "running"]
        assert len(running) == 7  # six tasks ran, load_orders twice; report never ran
        assert [b[2] for b in running if b[0] == "load_orders"] == ["bar running st-failed"] * 2
        assert any(b[1] == "retry_wait" and b[0] == "load_orders" for b in bars)
        assert any(b[1] == "queued" and b[0] in ("enrich", "geocode") and b[3] > 20 for b in bars)
        # the log of the open failed task is fetched by the page's script
        log = await page.until(
            "(() => { const t = document.querySelector('#task-load_orders pre.log').innerText;"
            " return t.includes('loading 3 rows') && t; })()"
        )
        assert "INFO" in log
        checkpoint = await page.js(
            "document.querySelector('#task-load_orders [data-field=checkpoint_preview]').innerText"
        )
        assert '"loaded": 1' in checkpoint
        reason = await page.js(
            "document.querySelector('#task-report [data-field=waiting_reason]').innerText"
        )
        assert reason == "did not run: upstream load_orders did not succeed"

        # screenshots: the graph alone shows the state colours; the page for the README
        box = await page.js(
            "(() => { const r = document.querySelector('#graph svg').getBoundingClientRect();"
            " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
        )
        graph_png = await page.screenshot(clip=box)
        assert png_size(graph_png) == (round(box["width"]), round(box["height"]))
        pixels = png_pixels(graph_png)
        assert len(set(pixels)) > 50
        assert near(pixels, (217, 63, 63)) > 100  # the failed node's outline
        assert near(pixels, (46, 158, 72)) > 100  # the successful ones
        assert near(pixels, (224, 130, 90)) > 50  # report: upstream_failed

        await page.js("window.scrollTo(0, 0)")
        height = min(await page.js("document.documentElement.scrollHeight"), 1500)
        await page.resize(WIDTH, height)
        shot = await page.screenshot()
        assert png_size(shot) == (WIDTH, height)
        assert len(set(png_pixels(shot))) > 200
        (tmp_path / "run-page.png").write_bytes(shot)
        if os.environ.get("PODIUM_SCREENSHOT") or not DOCS_PNG.exists():
            DOCS_PNG.parent.mkdir(exist_ok=True)
            DOCS_PNG.write_bytes(shot)

        # the home page: the run as a red square, one click from the failed task
        await page.goto(f"{url}/")
        squares = await page.js(
            "[...document.querySelectorAll('.squares a.sq')].map(a => [a.getAttribute('class'), a.getAttribute('href')])"
        )
        assert squares == [["sq st-failed", f"/runs/{run.run_id}"]]
        link = await page.js("document.querySelector('ul.failures a').getAttribute('href')")
        assert link == f"/runs/{run.run_id}#task-load_orders"
        assert browser.errors == []


async def test_run_page_updates_live_without_reload(tmp_path: Path) -> None:
    GATE["open"] = anyio.Event()
    async with served(tmp_path) as (engine, url), chromium(tmp_path) as browser:
        run = await engine.trigger("live")
        with anyio.fail_after(10):
            while (await engine.get_run(run.run_id)).tasks["wait_gate"].state != "running":
                await anyio.sleep(0.02)
        page = await browser.new_page()
        await page.goto(f"{url}/runs/{run.run_id}")
        node = "document.querySelector('#graph g.node[data-task={}]').getAttribute('class')"
        assert await page.js(node.format("wait_gate")) == "node st-running"
        assert await page.js(node.format("finish")) == "node st-pending"
        reason = "document.querySelector('#task-finish [data-field=waiting_reason]').innerText"
        assert await page.js(reason) == "waiting on upstream: wait_gate"
        # open the running task's log: it follows the task while it runs
        await page.js("document.getElementById('task-wait_gate').open = true")
        await page.until(
            "document.querySelector('#task-wait_gate pre.log').innerText.includes('waiting for the gate')"
        )
        await page.js("window.__sameDocument = true")

        GATE["open"].set()
        await run.wait(10)
        await page.until(f"({node.format('finish')}) === 'node st-success'")
        assert await page.js(node.format("wait_gate")) == "node st-success"
        await page.until(
            "document.querySelector('[data-field=run-state]').textContent === 'success'"
        )
        assert await page.js("window.__sameDocument") is True  # updated in place, no reload
        assert await page.js(reason) == ""
        assert await page.until(
            "document.querySelectorAll('#gantt rect.bar.running.st-success').length === 2"
        )
        assert await page.js("document.querySelector('main').dataset.finished") == "true"

        # the home page's Trigger button POSTs with the tab's token; a wrong one is refused
        await page.goto(f"{url}/")
        button = "document.querySelector('tr[data-dag=live] button[data-post$=\"/trigger\"]')"
        await page.js(f"sessionStorage.setItem('podium-token', 'wrong'); {button}.click()")
        await page.until(
            "document.getElementById('toast').textContent === 'The token was refused.'"
        )
        assert len(await engine.runs(dag_id="live")) == 1
        await page.js(f"sessionStorage.setItem('podium-token', 'ui-token'); {button}.click()")
        new_path = await page.until(
            f"location.pathname.startsWith('/runs/') && location.pathname !== '/runs/{run.run_id}'"
            " && document.readyState === 'complete' && location.pathname"
        )
        (newest, _) = await engine.runs(dag_id="live")
        assert new_path == f"/runs/{newest.run_id}"
        assert [e for e in browser.errors if "401 (Unauthorized)" not in e] == []


# -- hostile text stays text ------------------------------------------------------------------------

PAYLOAD = (
    "<script>window.__pwned=1;document.title='pwned'</script>"
    '"><img src=x onerror="window.__pwned=2;document.title=\'pwned\'">'
    "'><svg onload=window.__pwned=3>"
    "</textarea></title></pre></code><script>window.__pwned=4</script>"
)
HOSTILE_TOPIC = KafkaTopic("hostile-topic")


@task
async def hostile_ok(ctx: Context, note: str = "") -> str:
    ctx.log.warning("log line %s", PAYLOAD)
    await ctx.checkpoint({"at": PAYLOAD})
    return f"result {note}"


@task
async def hostile_fail(ctx: Context, value: str) -> None:
    ctx.log.error("about to fail: %s", PAYLOAD)
    raise ValueError(f"task error {PAYLOAD}")


@dag(dag_id="hostile", triggers=[HOSTILE_TOPIC], description=f"description {PAYLOAD}")
def hostile(note: str = f"default {PAYLOAD}") -> None:
    hostile_fail(hostile_ok(note))


NOT_PWNED = (
    "window.__pwned === undefined && !document.title.includes('pwned')"
    " && document.querySelectorAll('[onerror], [onload], img, body script:not([src])').length === 0"
)


async def test_hostile_params_errors_logs_and_events_are_shown_as_text(tmp_path: Path) -> None:
    async with Engine(tmp_path / "x.db", dags=[hostile], sensors=False, shutdown_grace=1) as eng:
        first = await eng.trigger("hostile", {"note": f"param {PAYLOAD}"}, key=f"key {PAYLOAD}")
        triggered = await first.wait(20)
        subscription = subscription_of(HOSTILE_TOPIC, dag_id="hostile", index=0)
        batch = EventBatch(
            subscription,
            [
                Event("kafka", "kafka:hostile-topic:0:7", {"body": f"event {PAYLOAD}"}),
                Event("kafka", "kafka:hostile-topic:0:8", None, error=f"undecodable {PAYLOAD}"),
            ],
        )
        await eng.sink.publish(batch)
        assert await batch.stored() == ["ran", "dead"]
        with anyio.fail_after(20):
            while len(evented := await eng.runs(dag_id="hostile", state="failed")) < 2:
                await anyio.sleep(0.02)
        (from_event,) = [r for r in evented if r.run_id != triggered.run_id]
        async with anyio.create_task_group() as tg, chromium(tmp_path) as browser:
            port = await tg.start(functools.partial(serve, eng, "127.0.0.1", 0, "x-token"))
            url = f"http://127.0.0.1:{port}"
            page = await browser.new_page()
            # with the page's Content-Security-Policy off, escaping alone stands between the
            # payload and the page: an unescaped <script> or onerror= would run
            await page.send("Page.setBypassCSP", {"enabled": True})
            shown = {
                "/": ["description "],
                "/dags/hostile": ["description ", "default "],
                "/runs": [],
                "/events": ["undecodable "],
                f"/runs/{triggered.run_id}": ["param ", "key ", "task error ", "result param "],
                f"/runs/{from_event.run_id}": ["event ", "task error "],
                "/dags/" + PAYLOAD.replace("/", "%2F"): ["no DAG '"],
            }
            for path, prefixes in shown.items():
                await page.goto(url + path)
                assert await page.js(NOT_PWNED), path
                text = await page.js("document.body.innerText + document.title")
                if path == f"/runs/{triggered.run_id}":  # the traceback and the checkpoint
                    text += await page.js("document.body.textContent")
                if path == "/runs":  # the run key, on hover
                    text += await page.js(
                        "[...document.querySelectorAll('td[title]')].map(td => td.title).join()"
                    )
                    assert "key " + PAYLOAD in text
                if path == "/":  # the Trigger button's params prompt, pre-filled from an attribute
                    text += await page.js(
                        "document.querySelector('button[data-params]').dataset.params"
                    )
                    assert "default " + PAYLOAD in text.replace("\\", "")
                for prefix in prefixes:
                    assert prefix + PAYLOAD in text.replace("\\", ""), (path, prefix)
            # the log lines arrive through the page's script once the task panel opens
            await page.goto(f"{url}/runs/{triggered.run_id}#task-hostile_ok")
            log = await page.until(
                "(() => { const t = document.querySelector('#task-hostile_ok pre.log').innerText;"
                f" return t.includes({PAYLOAD!r}) && t; }})()"
            )
            assert "log line " + PAYLOAD in log
            failed_log = await page.until(
                "(() => { const t = document.querySelector('#task-hostile_fail pre.log').innerText;"
                " return t.includes('about to fail') && t; })()"
            )
            assert "about to fail: " + PAYLOAD in failed_log
            assert await page.js(NOT_PWNED)
            tg.cancel_scope.cancel()


async def test_private_reads_sign_the_browser_in_once_with_an_httponly_cookie(
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestServer

    from engine.web import make_app

    async with Engine(tmp_path / "p.db", dags=[orders], pools={"db": 1}, sensors=False) as eng:
        run = await (await eng.trigger("orders")).wait(20)
        app = make_app(eng, token="ui-token", private_reads=True)  # as serve does off loopback
        async with TestServer(app, host="127.0.0.1") as server, chromium(tmp_path) as browser:
            url = f"http://127.0.0.1:{server.port}"
            page = await browser.new_page()

            async def submit(token: str) -> None:
                loaded = browser.expect("Page.loadEventFired", page.session)
                await page.js(
                    f"document.querySelector('input[name=token]').value = {token!r};"
                    " document.querySelector('form.login').submit()"
                )
                with anyio.fail_after(20):
                    await loaded.wait()

            await page.goto(f"{url}/runs/{run.run_id}")
            assert await page.js("location.pathname") == "/login"
            assert await page.js("document.querySelector('#graph')") is None
            await submit("wrong")
            assert await page.js("document.getElementById('refused').innerText") == (
                "The token was refused."
            )
            await submit("ui-token")
            assert await page.js("location.pathname") == f"/runs/{run.run_id}"
            assert await page.js("document.querySelectorAll('#graph g.node').length") == 7
            assert await page.js("document.cookie") == ""  # HttpOnly: no script reads it
            # the page's own requests (the open failed task's log) carry the session
            await page.until(
                "document.querySelector('#task-load_orders pre.log').innerText"
                ".includes('loading 3 rows')"
            )
            await page.goto(f"{url}/events")
            assert await page.js("location.pathname") == "/events"
            loaded = browser.expect("Page.loadEventFired", page.session)
            await page.js("document.querySelector('form.logout button').click()")
            with anyio.fail_after(20):
                await loaded.wait()
            assert await page.js("location.pathname") == "/login"
            await page.goto(f"{url}/")
            assert await page.js("location.pathname") == "/login"


# -- mapped tasks and task groups -------------------------------------------------------------------


@task
async def list_parts(n: int) -> list[int]:
    return list(range(n))


@task
async def part(ctx: Context, i: int) -> int:
    ctx.log.info("processing part %d", i)
    if i % 7 == 3:
        raise ValueError(f"part {i} is broken")
    return i


@dag
def parts(n: int = 120) -> None:
    part.map(list_parts(n))


@task
async def pull(ctx: Context, n: int) -> int:
    ctx.log.info("pulling %d", n)
    return n


@task
async def combine(a: int, b: int) -> int:
    return a + b


@dag
def staged() -> None:
    with TaskGroup("extract"):
        crm = pull(1)
        shop = pull(2)
    with TaskGroup("load"):
        combine(crm, shop)


@asynccontextmanager
async def served_fanout(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    async with Engine(tmp_path / "f.db", dags=[parts, staged], sensors=False) as eng:
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(serve, eng, "127.0.0.1", 0, "ui-token"))
            yield eng, f"http://127.0.0.1:{port}"
            tg.cancel_scope.cancel()


FAILED_PARTS = [i for i in range(120) if i % 7 == 3]


async def test_a_mapped_task_is_one_node_with_its_count_and_state_mix_and_paged_instances(
    tmp_path: Path,
) -> None:
    async with served_fanout(tmp_path) as (engine, url), chromium(tmp_path) as browser:
        run = await (await engine.trigger("parts")).wait(30)
        assert run.state == "failed" and len(FAILED_PARTS) == 17
        page = await browser.new_page()
        await page.goto(f"{url}/runs/{run.run_id}")

        # the graph: one node for the mapped task, none per instance
        nodes = await page.js(
            "[...document.querySelectorAll('#graph svg g.node')].map(n => n.dataset.task)"
        )
        assert sorted(nodes) == ["list_parts", "part"]
        node = "#graph g.node[data-task=part]"
        assert await page.js(f"document.querySelector('{node}').getAttribute('class')") == (
            "node mapped st-failed"
        )
        assert await page.js(f"document.querySelector('{node} .node-label').textContent") == (
            "part \u00d7120"
        )
        assert await page.js(f"document.querySelector('{node} .node-state').textContent") == (
            "103 ✓ 17 ✗"
        )
        # the bar: one segment per state, as wide as its share
        segments = await page.js(
            f"[...document.querySelectorAll('{node} rect.mix')]"
            ".map(r => [r.dataset.state, r.getBoundingClientRect().width])"
        )
        widths = dict(segments)
        assert set(widths) == {"success", "failed"}
        assert abs(widths["success"] / widths["failed"] - 103 / 17) < 0.2
        # the failed banner names the mapped task once, not its 17 failed instances
        banner = await page.js(
            "[...document.querySelectorAll('.failed-banner li a')].map(a => a.textContent)"
        )
        assert banner == ["part"]

        # the instances: counts per state, the first page of 50 panels, paged
        panel = "#task-part .instances"
        filters = await page.js(
            f"[...document.querySelectorAll('{panel} a.inst-state')].map(a => a.textContent.trim())"
        )
        assert filters == ["120 all", "17 failed", "103 success"]
        listed = f"[...document.querySelectorAll('{panel} details.task')].map(d => d.dataset.task)"
        assert await page.js(listed) == [f"part[{i}]" for i in range(50)]
        await page.js("document.getElementById('task-part').open = true")
        await page.click(f"{panel} nav.pager a[data-inst-page]")
        await page.until(f"({listed})[0] === 'part[50]'")
        assert await page.js(listed) == [f"part[{i}]" for i in range(50, 100)]
        assert (
            await page.js(f"document.querySelector('{panel} [data-field=inst-range]').textContent")
            == "51\u2013100 of 120"
        )
        await page.click(f"{panel} a.inst-state.st-failed")
        await page.until(f"({listed}).length === 17")
        assert await page.js(listed) == [f"part[{i}]" for i in FAILED_PARTS]
        classes = await page.js(
            f"[...document.querySelectorAll('{panel} details.task')].map(d => d.getAttribute('class'))"
        )
        assert set(classes) == {"task st-failed"}
        # an instance's panel has its own tries, error and log
        await page.js("document.getElementById('task-part[10]').open = true")
        instance = "document.getElementById('task-part[10]')"
        log = await page.until(
            f"(() => {{ const t = {instance}.querySelector('pre.log').innerText;"
            " return t.includes('processing part 10') && t; })()"
        )
        assert "INFO" in log
        error = await page.js(f"{instance}.querySelector('[data-field=error_line]').innerText")
        assert "part 10 is broken" in error

        # the timeline: one lane for the mapped task; a click lists its instances under it
        lanes = "[...document.querySelectorAll('#gantt g.gantt-row')].map(g => g.dataset.task)"
        assert await page.js(lanes) == ["list_parts", "part"]
        bar = await page.js(
            "document.querySelector('#gantt rect.bar.mapped[data-task=part]').getAttribute('class')"
        )
        assert bar == "bar mapped st-failed"
        await page.click("#gantt g.gantt-row[data-task=part] text")
        await page.until(f"({lanes}).length > 2")
        shown = await page.js(lanes)
        assert shown[:3] == ["list_parts", "part", "part[0]"] and len(shown) == 2 + 50 + 1
        assert (
            await page.js(
                "document.querySelectorAll('#gantt rect.bar.running[data-task^=\"part[\"]').length"
            )
            == 50
        )
        assert browser.errors == []


async def test_groups_collapse_and_expand_on_a_click(tmp_path: Path) -> None:
    async with served_fanout(tmp_path) as (engine, url), chromium(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(f"{url}/dags/staged")
        clusters = (
            "[...document.querySelectorAll('svg.graph g.cluster')].map(g => g.dataset.cluster)"
        )
        tasks = "[...document.querySelectorAll('svg.graph g.node[data-task]')].map(g => g.dataset.task).sort()"
        assert sorted(await page.js(clusters)) == ["extract", "load"]  # small DAG: expanded
        assert await page.js(tasks) == ["extract.pull", "extract.pull_2", "load.combine"]
        # the group's box holds its tasks
        inside = await page.js(
            "(() => { const c = document.querySelector('g.cluster[data-cluster=extract] rect').getBoundingClientRect();"
            " return [...document.querySelectorAll('g.node[data-task^=\"extract.\"] rect')].every(n => {"
            " const r = n.getBoundingClientRect(); return r.left >= c.left && r.right <= c.right"
            " && r.top >= c.top && r.bottom <= c.bottom; }); })()"
        )
        assert inside is True

        await page.click("g.cluster[data-cluster=extract] text.cluster-title")
        await page.until("!!document.querySelector('svg.graph g.group-node[data-group=extract]')")
        assert await page.js(tasks) == ["load.combine"]
        assert await page.js(clusters) == ["load"]
        assert (
            await page.js(
                "document.querySelector('g.group-node[data-group=extract] .node-label').textContent"
            )
            == "▸ extract (2)"
        )
        edges = await page.js(
            "[...document.querySelectorAll('svg.graph path.edge')].map(e => [e.dataset.from, e.dataset.to])"
        )
        assert edges == [["extract.*", "load.combine"]]  # two edges joined into one

        await page.click("svg.graph g.group-node[data-group=extract]")
        await page.until(f"({tasks}).length === 3")
        assert sorted(await page.js(clusters)) == ["extract", "load"]

        # on the run page the collapsed group shows its tasks' state mix
        run = await (await engine.trigger("staged")).wait(20)
        assert run.state == "success"
        await page.goto(f"{url}/runs/{run.run_id}")
        await page.click("g.cluster[data-cluster=extract] text.cluster-title")
        group = "document.querySelector('#graph g.group-node[data-group=extract]')"
        await page.until(f"!!{group}")
        assert await page.js(f"{group}.getAttribute('class')") == "node group-node st-success"
        assert await page.js(f"{group}.querySelector('.node-state').textContent") == "2 ✓"
        # a task inside the group is still one click from the graph when it is expanded
        await page.click("#graph g.group-node[data-group=extract]")
        await page.until("!!document.querySelector('#graph g.node[data-task=\"extract.pull\"]')")
        assert browser.errors == []
