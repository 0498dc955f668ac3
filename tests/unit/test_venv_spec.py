"""The pure parts of the Virtualenv runner: what names an environment, where the cache is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine import Virtualenv, VirtualenvError
from engine.runners.venv_build import default_cache_dir, env_spec


def test_an_environment_is_named_by_what_it_holds_and_its_python() -> None:
    one = env_spec(["tabulate", "packaging==23.2"], None, None)
    assert one.key == env_spec([" packaging==23.2", "tabulate "], None, None).key  # order, spaces
    assert one.python == sys.executable
    assert one.key != env_spec(["tabulate"], None, None).key
    assert one.key != env_spec(["tabulate", "packaging==23.2"], None, "3.12").key


def test_a_lockfile_is_named_by_its_contents(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("tabulate==0.9.0\n")
    first = Virtualenv(lockfile=lock).spec()
    lock.write_text("tabulate==0.8.10\n")
    assert Virtualenv(lockfile=lock).spec().key != first.key
    with pytest.raises(VirtualenvError, match="cannot read the lockfile"):
        Virtualenv(lockfile=tmp_path / "missing.lock").spec()


def test_settings_are_checked_and_hashable() -> None:
    assert Virtualenv(requirements=["a"]) == Virtualenv(requirements=("a",))
    assert len({Virtualenv(requirements=["a"]), Virtualenv(requirements=("a",))}) == 1
    with pytest.raises(VirtualenvError, match="not both"):
        Virtualenv(requirements=["a"], lockfile="x.lock")
    with pytest.raises(VirtualenvError, match="list of requirements"):
        Virtualenv(requirements="tabulate")  # type: ignore[arg-type]


def test_the_cache_is_the_setting_then_the_variable_then_the_user_cache() -> None:
    assert default_cache_dir({"PODIUM_VENV_CACHE": "/opt/venvs"}) == Path("/opt/venvs")
    assert default_cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/podium/venvs")
    assert default_cache_dir({}) == Path("~/.cache/podium/venvs").expanduser()
    assert Virtualenv(cache_dir="/here").resolve_cache_dir() == Path("/here")
