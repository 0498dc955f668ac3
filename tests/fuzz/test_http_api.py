"""The HTTP API's mutations with arbitrary bodies: a 2xx, or a 4xx with ``{"error": ...}``; never a
5xx, and the server keeps answering.

A real engine and server (127.0.0.1, port 0) run on a loop in a thread for the whole test; the
examples speak plain HTTP/1.1 to it with ``http.client``.
"""

from __future__ import annotations

import functools
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from engine import dag, task
from engine.web import serve
from sensors import Cron

from .support import FUZZ, Served, deep_values, engine_in_thread, json_scalars, json_values

TOKEN = "fuzz-token"
TIMEOUT = 20.0


@task
async def add(offset: int, ratio: float) -> float:
    return offset * ratio


@task
async def label_of(label: str, items: Any) -> str:
    return f"{label}:{type(items).__name__}"


@dag(triggers=[Cron("0 6 * * *", tz="Europe/Berlin")])
def api_daily(offset: int = 0, label: str = "", ratio: float = 1.0, items: Any = None) -> None:
    add(offset, ratio)
    label_of(label, items)


@task(pool="slow")
async def wait_a_while() -> str:
    await anyio.sleep(3)
    return "done"


@dag
def api_slow() -> None:
    wait_a_while()


@task
async def explode() -> None:
    raise ValueError("boom")


@dag
def api_broken(count: int = 0) -> None:
    explode()


DAGS = [api_daily, api_slow, api_broken]


@dataclass
class Api:
    served: Served
    port: int
    run_ids: list[str]

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN
    ) -> tuple[int, str, bytes]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with engine_in_thread(
        tmp_path / "api.db", DAGS, pools={"slow": 2}, shutdown_grace=0.5
    ) as served:
        future, port = served.portal.start_task(
            functools.partial(serve, served.engine, "127.0.0.1", 0, TOKEN)
        )
        engine = served.engine

        async def some_runs() -> list[str]:
            done = await engine.trigger("api_daily", {"offset": 2})
            failed = await engine.trigger("api_broken")
            running = await engine.trigger("api_slow")
            await done.wait(TIMEOUT)
            await failed.wait(TIMEOUT)
            return [done.run_id, failed.run_id, running.run_id]

        try:
            yield Api(served, port, served.call(some_runs))
        finally:
            future.cancel()


# -- requests -------------------------------------------------------------------------------------

segment = st.one_of(st.text(max_size=12), st.sampled_from(["", ".", "..", "%", "a/b", "\u00e9"]))
dates = st.one_of(
    st.integers(1, 12).map(lambda d: f"2026-01-{d:02d}"),
    st.sampled_from(
        [
            "2026-02-30",
            "9999-12-31",
            "0001-01-01T00:00",
            "2026-01-03T05:00",
            "2026-01-03 06:00+14:00",
        ]
    ),
    st.text(max_size=10),
)
anything = st.one_of(json_values, json_scalars)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # nested too deep for orjson to write: write it by hand
        return b'{"params": {"items": ' + b"[" * 300 + b"]" * 300 + b"}}"


junk = st.one_of(
    st.binary(max_size=50),
    st.sampled_from([b"", b"   ", b"{", b"null", b"[]", b"\xff\xfe{}", b'{"a": NaN}']),
    st.one_of(json_values, deep_values).map(_encode),
    st.just(b'{"params": {"items": ' + b"[" * 600 + b"]" * 600 + b"}}"),
)


def _mostly(first: st.SearchStrategy[bytes], *rest: st.SearchStrategy[bytes]) -> Any:
    """``first`` three times out of four or so: bodies well-formed enough to reach the operation."""
    choices = [first, first, first, *rest]
    return st.integers(0, len(choices) - 1).flatmap(lambda i: choices[i])


params = st.one_of(
    st.dictionaries(
        st.sampled_from(["offset", "label", "ratio", "items", "count", "nope"]),
        st.one_of(anything, deep_values),
    ),
    anything,
)
trigger_bodies = _mostly(
    st.fixed_dictionaries({}, optional={"params": params, "key": st.one_of(segment, anything)}).map(
        _encode
    ),
    junk,
)
TASK_IDS = ["add", "label_of", "explode", "wait_a_while", "nope"]
run_bodies = _mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "reason": st.one_of(st.text(max_size=20), anything),
            "tasks": st.one_of(st.lists(st.sampled_from(TASK_IDS), max_size=3), anything),
            "failed_only": st.one_of(st.booleans(), anything),
            "downstream": st.one_of(st.booleans(), anything),
        },
    ).map(_encode),
    junk,
)


dag_bodies = _mostly(
    st.fixed_dictionaries(
        {"start": dates, "end": dates},
        optional={
            "max_active": st.integers(-3, 3),
            "missing_only": st.booleans(),
            "wait": st.booleans(),
            "skip_queued": st.booleans(),
        },
    ).map(_encode),
    st.fixed_dictionaries(
        {},
        optional={
            "start": st.one_of(dates, anything),
            "end": st.one_of(dates, anything),
            "max_active": anything,
            "missing_only": anything,
            "wait": anything,
            "skip_queued": anything,
        },
    ).map(_encode),
    junk,
)

RUN_ENDPOINTS = {
    "cancel": "/api/runs/{run}/cancel",
    "rerun": "/api/runs/{run}/rerun",
    "resume": "/api/runs/{run}/resume",
    "cancel_task": "/api/runs/{run}/tasks/{task}/cancel",
}
# pause/unpause only a DAG without a timer, so a waiting backfill never waits on a paused DAG
DAG_ENDPOINTS = {
    "pause": ("/api/dags/{dag}/pause", ["api_slow", "api_broken"]),
    "unpause": ("/api/dags/{dag}/unpause", ["api_slow", "api_broken"]),
    "backfill": ("/api/dags/{dag}/backfill", ["api_daily", "api_broken"]),
}


def _post(api: Api, path: str, body: bytes, token: str | None = TOKEN) -> dict[str, Any]:
    """The property every request shares: 2xx with JSON, or 4xx with a JSON error; then the
    server still answers."""
    status, content_type, answer = api.request("POST", path, body, token=token)
    event(f"{path.split('/')[-1]} {status}")
    assert status < 500, (status, path, body[:300], answer[:2000])
    assert content_type.startswith("application/json"), (status, content_type, answer[:500])
    data = orjson.loads(answer)
    if status >= 400:
        assert isinstance(data["error"], str) and data["error"], data
    health_status, _, health = api.request("GET", "/api/health")
    assert health_status == 200 and orjson.loads(health)["ok"] is True, health
    return data if status < 300 else {}


@FUZZ
@given(dag_id=st.sampled_from([d.dag_id for d in DAGS]), body=trigger_bodies)
def test_trigger_bodies(api: Api, dag_id: str, body: bytes) -> None:
    data = _post(api, f"/api/dags/{dag_id}/trigger", body)
    if data:  # the run it names exists
        status, _, run = api.request("GET", f"/api/runs/{quote(data['run_id'], safe='')}")
        assert status == 200, (data, run[:500])


@FUZZ
@given(
    endpoint=st.sampled_from(sorted(RUN_ENDPOINTS)),
    which=st.integers(0, 2),
    task_id=st.sampled_from(TASK_IDS),
    body=run_bodies,
)
def test_run_operation_bodies(
    api: Api, endpoint: str, which: int, task_id: str, body: bytes
) -> None:
    path = RUN_ENDPOINTS[endpoint].format(run=api.run_ids[which], task=task_id)
    _post(api, path, body)


@FUZZ
@given(
    endpoint=st.sampled_from(["backfill", "backfill", "backfill", "pause", "unpause"]),
    which=st.integers(0, 1),
    body=dag_bodies,
)
def test_dag_operation_bodies(api: Api, endpoint: str, which: int, body: bytes) -> None:
    template, dag_ids = DAG_ENDPOINTS[endpoint]
    _post(api, template.format(dag=dag_ids[which]), body)


@FUZZ
@given(
    template=st.sampled_from(
        [
            *RUN_ENDPOINTS.values(),
            *(t for t, _ in DAG_ENDPOINTS.values()),
            "/api/dags/{dag}/trigger",
        ]
    ),
    name=segment,
    task_id=segment,
    body=st.one_of(junk, trigger_bodies, run_bodies, dag_bodies),
    token=st.sampled_from([TOKEN, TOKEN, None, "wrong", "", f"{TOKEN}x"]),
)
def test_arbitrary_names_and_tokens(
    api: Api, template: str, name: str, task_id: str, body: bytes, token: str | None
) -> None:
    path = template.format(
        dag=quote(name, safe=""), run=quote(name, safe=""), task=quote(task_id, safe="")
    )
    status, content_type, answer = api.request("POST", path, body, token=token)
    assert status < 500 and content_type.startswith("application/json"), (status, answer[:500])
    if token != TOKEN:
        assert status in (401, 404), (status, answer[:500])  # 404: no such route at all


# -- regressions found by the properties above ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"start": "2026-01-01", "end": "9999-12-31"},  # OverflowError: date value out of range
        {"start": "2026-01-01", "end": "2026-01-02", "max_active": -1},  # ValueError (anyio)
    ],
)
def test_backfill_with_out_of_range_values_is_a_4xx(api: Api, body: dict[str, Any]) -> None:
    status, _, answer = api.request("POST", "/api/dags/api_daily/backfill", orjson.dumps(body))
    assert 400 <= status < 500, (status, answer[:2000])


def test_background_backfill_with_bad_values_does_not_stop_the_server(api: Api) -> None:
    """With ``"wait": false`` the backfill runs in the server's job group; an error other than a
    PodiumError there ends ``serve`` itself (the task group fails): the API stops answering."""
    body = {"start": "2026-01-01", "end": "2026-01-02", "max_active": -1, "wait": False}
    status, _, answer = api.request("POST", "/api/dags/api_daily/backfill", orjson.dumps(body))
    assert status in (202, 400, 422), (status, answer[:2000])
    for _ in range(3):
        status, _, _ = api.request("GET", "/api/health")
        assert status == 200
