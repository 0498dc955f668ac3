"""CLI arguments: the parser and the value parsing in-process (fuzzed), and a handful of nasty
argument lists through a real ``python -m engine`` (exit code 2 and an ``error:`` line, no
traceback)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import PodiumError
from engine.cli import _parser
from engine.cli_operations import _operation_args
from engine.cli_output import parse_pairs, parse_value

from .support import FUZZ

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> dict[str, list[str]]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sorted(s._option_string_actions) for name, s in sub.choices.items()}


COMMANDS = _commands()
ALL_FLAGS = sorted({f for flags in COMMANDS.values() for f in flags})

nasty_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "=",
            "=x",
            "x=",
            "a=b=c",
            "--",
            "-",
            "-1",
            "nan",
            "inf",
            "1e999",
            "9" * 5000,
            "名前=値",
            "x=\U0001f600",
            "x=\udcff",  # an undecodable argv byte, as Python hands it over (surrogateescape)
            "x=" + "[" * 300 + "]" * 300,
            "x=" + "y" * 100_000,
            "crm=0",
            "crm=-3",
            "127.0.0.1:99999",
            ":8080",
            "2026-02-30",
            "queued",
        ]
    ),
)
token = st.one_of(st.sampled_from(ALL_FLAGS), nasty_text)
argvs = st.one_of(
    st.tuples(st.sampled_from(sorted(COMMANDS)), st.lists(token, max_size=8)).map(
        lambda p: [p[0], *p[1]]
    ),
    st.lists(token, max_size=6),
)


@FUZZ
@given(argv=argvs)
def test_parser_accepts_or_exits_2_with_an_error_line(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:  # --help
                assert "usage:" in out.getvalue()
                return
            assert exc.code == 2, exc.code
            assert "error:" in err.getvalue()
            return
    assert callable(args.handler)
    # what the commands do with the values next: a result or a PodiumError, nothing else
    if hasattr(args, "param"):
        _pairs_or_podium_error(args.param, "--param", parse_value)
    if hasattr(args, "pool"):
        _pairs_or_podium_error(args.pool, "--pool", int)
    if hasattr(args, "operation"):
        operation, op_args = _operation_args(args)
        assert isinstance(operation, str) and isinstance(op_args, dict)


def _pairs_or_podium_error(items: list[str], flag: str, convert: Any) -> None:
    try:
        pairs = parse_pairs(items, flag, convert)
    except PodiumError as exc:
        assert str(exc).startswith(flag)
        return
    assert set(pairs) == {item.partition("=")[0] for item in items}


@FUZZ
@given(items=st.lists(nasty_text, max_size=5), flag=st.sampled_from(["--param", "--pool"]))
def test_parse_pairs_gives_a_dict_or_a_podium_error(items: list[str], flag: str) -> None:
    _pairs_or_podium_error(items, flag, parse_value if flag == "--param" else int)


@FUZZ
@given(text=nasty_text)
def test_parse_value_is_json_when_it_parses_else_the_text(text: str) -> None:
    value = parse_value(text)
    try:
        expected = orjson.loads(text)
    except orjson.JSONDecodeError:
        expected = text
    assert value == expected or value != value  # NaN never equals itself


# -- a real `python -m engine`: nasty arguments, each an exit 2 with an error line ---------------

DAG_FILE = """
from typing import Any
from engine import dag, task
from sensors import Cron

@task
async def echo(items: Any) -> str:
    return "ok"

@dag(triggers=[Cron("0 4 * * *", tz="Europe/Berlin")])
def nightly(items: Any = None, count: int = 0, name: str = "") -> None:
    echo(items)
"""

DEEP = "[" * 300 + "]" * 300
CASES: dict[str, list[str]] = {
    "param without a name": ["trigger", "nightly", "--param", "=x"],
    "unicode param, unknown DAG": ["trigger", "nightly", "--param", "名前=値"],
    "huge param value": ["trigger", "nightly", "--path", "{dags}", "--param", "count=" + "9" * 100_000],
    "pool with zero slots": ["run", "{dags}", "--pool", "crm=0"],
    "max tasks zero": ["run", "{dags}", "--max-tasks", "0"],
    "not an int": ["runs", "--limit", "ten"],
    "unknown subcommand": ["explode"],
    # found by the properties: these end in a traceback (exit 1) today
    "param nested too deep to store": ["trigger", "nightly", "--path", "{dags}", "--param", f"items={DEEP}"],
    "param with undecodable bytes": ["trigger", "nightly", "--path", "{dags}", "--param", "name=\udcff"],
    "backfill end at the end of time": [
        "backfill", "nightly", "--path", "{dags}", "--start", "2026-01-01", "--end", "9999-12-31",
    ],
    "backfill max active negative": [
        "backfill", "nightly", "--path", "{dags}", "--start", "2026-01-01", "--end", "2026-01-01",
        "--max-active", "-1",
    ],
    "http port out of range": ["run", "{dags}", "--http", "127.0.0.1:99999"],
    "http port in use": ["run", "{dags}", "--http", "127.0.0.1:{busy}"],
}  # fmt: skip


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every case run at once (each in its own folder and state file)."""
    base = tmp_path_factory.mktemp("cli")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PODIUM_TOKEN": "t", "COLUMNS": "160"}

    def one(index: int, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        folder = base / f"case{index}"
        folder.mkdir()
        (folder / "dags.py").write_text(DAG_FILE)
        args = [
            a.replace("{dags}", str(folder / "dags.py")).replace(
                "{busy}", str(busy.getsockname()[1])
            )
            for a in argv
        ]
        if args[0] not in ("explode",):
            args += ["--db", str(folder / "p.db")]
        command = [sys.executable, "-m", "engine", *(os.fsencode(a) for a in args)]
        try:
            return subprocess.run(command, cwd=folder, env=env, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, -9, b"", b"still running after 30 s")

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                name: pool.submit(one, i, argv) for i, (name, argv) in enumerate(CASES.items())
            }
            yield {name: f.result() for name, f in futures.items()}
    finally:
        busy.close()


@pytest.mark.parametrize("case", list(CASES))
def test_nasty_arguments_exit_2_with_an_error_line(cli_results: dict[str, Any], case: str) -> None:
    result = cli_results[case]
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert result.returncode == 2, (result.returncode, stderr[-3000:])
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr[-3000:]
