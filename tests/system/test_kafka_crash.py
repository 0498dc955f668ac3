"""SIGKILL a `podium run` consuming a Kafka topic, mid-stream, and restart it: still exactly one
run per message."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest

from tests.servers import KafkaBroker, create_topic, produce

DAGS = Path(__file__).with_name("kafka_dags.py")


def stored_runs(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return conn.execute("SELECT run_key, state FROM runs").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def start(db: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "run", str(DAGS), "--db", str(db)],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip


@pytest.mark.timeout(240)
def test_sigkill_mid_stream_then_restart_gives_one_run_per_message(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    total = 3000
    anyio.run(create_topic, kafka_broker.bootstrap, topic, 3)
    anyio.run(produce, kafka_broker.bootstrap, topic, [{"n": i} for i in range(total)])
    db, log = tmp_path / "c.db", tmp_path / "engine.log"
    env = {
        **os.environ,
        "PODIUM_TEST_TOPIC": topic,
        "PODIUM_TEST_BOOTSTRAP": kafka_broker.bootstrap,
    }
    kills = 0
    proc = start(db, env, log)
    try:
        for threshold in (300, 1200, 2100):  # kill three times at different depths of the stream
            deadline = time.monotonic() + 60
            while len(stored_runs(db)) < threshold:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            proc = start(db, env, log)
        deadline = time.monotonic() + 150
        while True:
            runs = stored_runs(db)
            if len(runs) >= total and all(state == "success" for _, state in runs):
                break
            assert time.monotonic() < deadline, f"{len(runs)} runs\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        time.sleep(2)  # redeliveries after the last restart would show up here
        runs = stored_runs(db)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    keys = [key for key, _ in runs]
    assert kills == 3
    assert len(keys) == total == len(set(keys)), "a message made two runs, or none"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        params = [json.loads(p)["n"] for (p,) in conn.execute("SELECT params FROM runs")]
    assert sorted(params) == list(range(total))
