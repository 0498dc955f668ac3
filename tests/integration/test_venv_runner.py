"""The Virtualenv runner (engine/runners/venv.py) on a real engine, with real environments built by
uv from PyPI and real warm workers. Builds cost seconds each, so the module shares one cache folder
(a session fixture: nothing comes from an earlier session) and builds three environments in all:
the legacy one (tabulate, which the engine's venv lacks, and an older packaging than the engine's),
the one `podium env build` builds ahead, and the one that cannot be built. Nothing here waits on
time: the tests wait for runs, and for a pid file."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import packaging
import pytest

from engine import Engine, RunState, Virtualenv, dag, task
from engine.errors import VirtualenvError
from engine.loader import load_dags
from engine.runners.reaper import start_time
from engine.runners.venv_build import MARKER
from engine.store import Store

sys.path.insert(0, str(Path(__file__).parent))
import runner_tasks as rt
import venv_tasks as vt

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow

LEGACY = ["tabulate", "packaging==23.2"]


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venvs")


def legacy(cache: Path, **options: Any) -> Virtualenv:
    return Virtualenv(requirements=LEGACY, cache_dir=cache, **options)


async def run_dag(engine: Engine, dag_id: str, timeout: float = 300) -> Any:
    run = await engine.trigger(dag_id)
    return await run.wait(timeout=timeout)


def env_dirs(cache: Path) -> list[str]:
    """The environments in the cache (and no build left half-done)."""
    building = cache / ".building"
    assert not building.exists() or not list(building.iterdir())
    return sorted(p.name for p in cache.iterdir() if p.name != ".building")


async def test_a_task_gets_its_own_packages_and_a_second_task_reuses_the_env(
    tmp_path: Path, venv_cache: Path
) -> None:
    assert importlib.util.find_spec("tabulate") is None  # the engine's venv lacks it
    assert packaging.__version__ != "23.2"

    @dag
    def first() -> None:
        task(runner=legacy(venv_cache))(vt.versions)([["a", 1]])
        task(runner=legacy(venv_cache), task_id="twin")(vt.versions)([["b", 2]])

    async with Engine(tmp_path / "a.db", dags=[first]) as engine:
        run = await run_dag(engine, "first")
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items()}
    seen, twin = run.tasks["versions"].result, run.tasks["twin"].result
    assert seen["packaging"] == "23.2" and seen["table"] == "a  1"
    assert os.getpid() not in (seen["pid"], twin["pid"])  # in the environment's workers
    env = Path(seen["prefix"])
    assert twin["prefix"] == seen["prefix"] and env.parent == venv_cache  # one env, built once
    marker = (env / MARKER).stat()
    assert env_dirs(venv_cache).count(env.name) == 1

    # another engine, another setting, the same requirements in another order: no rebuild
    again = Virtualenv(requirements=list(reversed(LEGACY)), cache_dir=venv_cache, grace=1.0)

    @dag
    def second() -> None:
        task(runner=again, task_id="later")(vt.versions)([["c", 3]])

    async with Engine(tmp_path / "b.db", dags=[second]) as engine:
        later = await run_dag(engine, "second")
    assert later.tasks["later"].result["prefix"] == str(env)
    after = (env / MARKER).stat()
    assert (after.st_ino, after.st_mtime_ns) == (marker.st_ino, marker.st_mtime_ns)


async def test_logs_checkpoints_results_and_exceptions_cross_the_channel(
    tmp_path: Path, venv_cache: Path
) -> None:
    env = legacy(venv_cache)
    factor = 3

    def closure(x: int) -> int:
        return x * factor

    @dag
    def talk() -> None:
        task(runner=env, retries=1)(vt.chatty)(3, fail_after=2)
        task(runner=env)(vt.async_sum)([1, 2, 3])
        task(runner=env)(vt.not_json)()
        task(runner=env, task_id="set_argument")(vt.async_sum)({1, 2})
        task(runner=env, task_id="closure")(closure)(2)
        task(runner=env, task_id="imports_engine")(rt.pid_of)()

    async with Engine(tmp_path / "t.db", dags=[talk]) as engine:
        run = await run_dag(engine, "talk")
        logs = await engine.task_logs(run.run_id, "chatty")
    tasks = run.tasks
    chatty = tasks["chatty"]
    # try 1 checkpointed pages 1 and 2, then raised; try 2 resumed after page 2
    assert chatty.state == "success" and chatty.try_number == 2
    assert chatty.result == {"started_at": 2, "try": 2, "task": "chatty"}
    assert chatty.checkpoint == 3
    assert chatty.tries[0].error == "ValueError: failed after page 2"  # a builtin comes back as is
    assert "in chatty" in (chatty.tries[0].traceback or "")  # the task process's own traceback
    assert [(line["try_number"], line["level"], line["message"]) for line in logs] == [
        (1, "INFO", "page 1 of 3"),
        (1, "INFO", "printed page 1"),
        (1, "INFO", "page 2 of 3"),
        (1, "INFO", "printed page 2"),
        (2, "INFO", "page 3 of 3"),
        (2, "INFO", "printed page 3"),
    ]
    assert tasks["async_sum"].result == 6
    assert tasks["not_json"].error.startswith(
        "ResultError: result of task 'not_json' is not JSON-serializable"
    )
    assert tasks["set_argument"].error.startswith("VirtualenvError: task 'set_argument': argument")
    assert "builtins.set" in tasks["set_argument"].error
    assert "importable by module:qualname" in tasks["closure"].error
    assert tasks["imports_engine"].error == (
        "ImportError: module 'runner_tasks' imports 'engine', which the virtualenv does not have: "
        "define the task's function in a module that does not import the engine"
    )


async def test_a_requirement_that_cannot_be_installed_fails_the_try_with_uvs_message(
    tmp_path: Path, venv_cache: Path
) -> None:
    broken = Virtualenv(requirements=["nonexistent-package-xyz==1.0"], cache_dir=venv_cache)
    known = env_dirs(venv_cache)

    @dag
    def doomed() -> None:
        task(runner=broken)(vt.async_sum)([1])

    @dag
    def fine() -> None:
        task(runner=legacy(venv_cache))(vt.async_sum)([1, 2])
        task(task_id="here")(vt.async_sum)([3])

    async with Engine(tmp_path / "x.db", dags=[doomed, fine]) as engine:
        run = await run_dag(engine, "doomed")
        after = await run_dag(engine, "fine")  # the engine keeps serving
    error = run.tasks["async_sum"].error
    assert error.startswith("VirtualenvError: cannot build the virtualenv for [nonexistent")
    assert "nonexistent-package-xyz was not found in the package registry" in error  # uv's words
    assert after.state is RunState.SUCCESS
    assert after.tasks["async_sum"].result == 3 and after.tasks["here"].result == 3
    assert env_dirs(venv_cache) == known  # nothing left of the failed build


async def test_cancel_kills_the_task_process_and_its_record_goes(
    tmp_path: Path, venv_cache: Path
) -> None:
    pid_file = tmp_path / "pid"

    @dag
    def spinning() -> None:
        task(runner=legacy(venv_cache, grace=0.5))(vt.spin_forever)(str(pid_file))

    async with Engine(tmp_path / "k.db", dags=[spinning]) as engine:
        started = await engine.trigger("spinning")
        with anyio.fail_after(120):  # the task writes its pid once it runs
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.01)
        pid = int(pid_file.read_text())
        began = start_time(pid)
        assert pid in {r.pid for r in await engine.store.runner_processes()}  # the reaper knows
        await engine.cancel(started.run_id)
        run = await engine.wait_run(started.run_id, timeout=60)
        assert run.state is RunState.CANCELLED
        assert start_time(pid) is None or start_time(pid) != began
        # its record went with it (the pool may have recorded a replacement meanwhile)
        assert pid not in {r.pid for r in await engine.store.runner_processes()}
    async with Store(tmp_path / "k.db") as store:  # and the replacement's went at the stop
        assert await store.runner_processes() == []


async def test_podium_env_build_builds_ahead_and_a_run_then_starts_without_building(
    tmp_path: Path, venv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "tables.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import venv_tasks\n"
        "from engine import Virtualenv, dag, task\n\n"
        "@dag\n"
        "def tables():\n"
        "    task(runner=Virtualenv(requirements=['tabulate']))(venv_tasks.table)([['x', 9]])\n"
    )
    known = set(env_dirs(venv_cache))
    command = [sys.executable, "-m", "engine", "env", "build", str(dags)]
    environ = {**os.environ, "PODIUM_VENV_CACHE": str(venv_cache)}
    built = await anyio.run_process(command, env=environ, check=False)
    assert built.returncode == 0, built.stderr.decode()
    assert built.stdout.decode().startswith("built ")
    (new,) = set(env_dirs(venv_cache)) - known
    marker = (venv_cache / new / MARKER).stat()
    again = await anyio.run_process(command, env=environ, check=False)
    assert again.returncode == 0 and again.stdout.decode().startswith("cached ")

    loaded = load_dags(dags)
    assert not loaded.errors
    monkeypatch.setenv("PODIUM_VENV_CACHE", str(venv_cache))  # read when the runner opens
    async with Engine(tmp_path / "e.db", dags=loaded.dags) as engine:
        run = await run_dag(engine, "tables")
    assert run.tasks["table"].result == "x  9"
    after = (venv_cache / new / MARKER).stat()
    assert (after.st_ino, after.st_mtime_ns) == (marker.st_ino, marker.st_mtime_ns)


def test_workers_must_be_a_positive_int() -> None:
    assert Virtualenv().workers == 4
    for bad in (0, -1, 1.5, True):
        with pytest.raises(VirtualenvError, match="workers"):
            Virtualenv(workers=bad)  # type: ignore[arg-type]


async def test_sequential_tries_reuse_one_warm_worker_shared_by_equal_environments(
    tmp_path: Path, venv_cache: Path
) -> None:
    wandered = tmp_path / "elsewhere"
    wandered.mkdir()
    # the same environment named twice: requirements in another order, another grace and size
    other = Virtualenv(requirements=list(reversed(LEGACY)), cache_dir=venv_cache, grace=1.0)

    @dag
    def sequence() -> None:
        first = task(runner=legacy(venv_cache, workers=2), task_id="first")(vt.where)()
        moved = task(runner=legacy(venv_cache, workers=2))(vt.wander)(str(wandered))
        second = task(runner=other, task_id="second")(vt.where)()
        first >> moved >> second

    async with Engine(tmp_path / "w.db", dags=[sequence]) as engine:
        run = await run_dag(engine, "sequence")
        rows = await engine.store.runner_processes()
        logs = await engine.task_logs(run.run_id, "second")
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items()}
    first, second = run.tasks["first"].result, run.tasks["second"].result
    # one worker served all three tries (one pool for both settings, started lazily: only one)
    assert second["pid"] == first["pid"] == run.tasks["wander"].result
    assert [r.pid for r in rows] == [first["pid"]]
    assert second["calls"] == first["calls"] + 1  # module state lives on, as in a Process pool
    # what `wander` changed was put back before the next try
    assert second["cwd"] == first["cwd"] != str(wandered)
    assert second["sigterm_ignored"] is False
    assert [(line["level"], line["message"]) for line in logs] == [
        ("INFO", "printed by try 1"),
        ("WARNING", "logged by try 1"),
    ]
    assert start_time(first["pid"]) is None  # stopped with the engine


async def test_workers_caps_the_tries_of_an_environment_that_run_at_once(
    tmp_path: Path, venv_cache: Path
) -> None:
    one = legacy(venv_cache, workers=1)

    @dag
    def fan() -> None:
        for i in range(3):  # independent: ready at once, run one at a time on the one worker
            task(runner=one, task_id=f"t{i}")(vt.where)()

    async with Engine(tmp_path / "f.db", dags=[fan]) as engine:
        run = await run_dag(engine, "fan")
        rows = await engine.store.runner_processes()
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items()}
    results = [run.tasks[f"t{i}"].result for i in range(3)]
    assert {r["pid"] for r in results} == {r.pid for r in rows} and len(rows) == 1
    assert sorted(r["calls"] for r in results) == [1, 2, 3]


async def test_each_try_on_a_warm_worker_logs_into_its_own_log(
    tmp_path: Path, venv_cache: Path
) -> None:
    env = legacy(venv_cache, workers=1)

    @dag
    def voices() -> None:
        one = task(runner=env, task_id="one")(vt.speaks)("one")
        loud = task(runner=env)(vt.print_lots)(1)
        two = task(runner=env, task_id="two")(vt.speaks)("two")
        one >> loud >> two

    async with Engine(tmp_path / "v.db", dags=[voices], max_log_bytes=100_000) as engine:
        run = await run_dag(engine, "voices")
        logs = {t: await engine.task_logs(run.run_id, t) for t in ("one", "print_lots", "two")}
    assert run.state is RunState.SUCCESS, {t: i.error for t, i in run.tasks.items()}
    assert run.tasks["one"].result == run.tasks["print_lots"].result == run.tasks["two"].result
    for tag in ("one", "two"):
        assert sorted((line["level"], line["message"]) for line in logs[tag]) == [
            ("INFO", f"{tag}: ctx.log"),
            ("INFO", f"{tag}: print"),
            ("WARNING", f"{tag}: fd 2"),  # below Python, on the worker's stderr
            ("WARNING", f"{tag}: logging"),
        ]
    loud = logs["print_lots"]
    assert loud[0]["message"] == "x" * 99 and loud[-1]["message"].startswith("[log truncated")
    assert sum(len(line["message"]) for line in loud) < 110_000  # the budget is per try


async def test_a_crashed_timed_out_or_limited_worker_is_replaced(
    tmp_path: Path, venv_cache: Path
) -> None:
    pid_file = tmp_path / "pid"
    env = legacy(venv_cache, workers=1, grace=0.5)
    steps: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
        ("warm", vt.where, (), {}),
        ("segfault", vt.segfault, (), {}),
        ("after_segfault", vt.where, (), {}),
        ("limited", vt.lower_file_limit, (), {}),
        ("after_limit", vt.where, (), {}),
        ("timed", vt.spin_forever, (str(pid_file),), {"timeout": 5}),
        ("after_timeout", vt.where, (), {}),
        ("fail_first_try", vt.fail_first_try, (), {"retries": 1}),
    ]

    @dag
    def rough() -> None:
        prev = None
        for name, fn, args, options in steps:
            ref = task(runner=env, task_id=name, trigger_rule="all_done", **options)(fn)(*args)
            if prev is not None:
                prev >> ref
            prev = ref

    async with Engine(tmp_path / "c.db", dags=[rough]) as engine:
        run = await run_dag(engine, "rough")
    tasks = run.tasks
    pid = {name: (tasks[name].result or {}).get("pid") for name in tasks if "after" in name}
    warm = tasks["warm"].result["pid"]
    assert tasks["segfault"].error.startswith(
        "WorkerDiedError: virtualenv worker process died: SIGSEGV"
    )
    assert pid["after_segfault"] not in (None, warm) and start_time(warm) is None
    assert tasks["limited"].state == "success"
    assert tasks["limited"].result == pid["after_segfault"] != pid["after_limit"]
    timed_pid = int(pid_file.read_text())
    assert tasks["timed"].error.startswith("TaskTimeoutError")
    assert timed_pid == pid["after_limit"] != pid["after_timeout"]
    assert start_time(timed_pid) is None
    flaky = tasks["fail_first_try"]
    assert flaky.state == "success" and flaky.try_number == 2
    assert flaky.result != pid["after_timeout"]  # the retry ran on the replacement
    assert flaky.tries[0].error == "WorkerDiedError: virtualenv worker process died: exit code 5"
