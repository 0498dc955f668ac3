"""Templated arguments rendered by a real engine when each try starts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine import Context, Engine, Template, dag, task

BODY_RAN: list[str] = []


@task
async def load(path: str, ctx: Context) -> str:
    BODY_RAN.append(ctx.run_id)
    return path


@dag
def landing(day: str = "2026-11-25") -> None:
    load(Template("s3://landing/{{ params.day }}/{{ logical_date | add_days(-1) | ds_nodash }}"))


@dag
def typo(day: str = "2026-11-25") -> None:
    load(Template("s3://landing/{{ params.dy }}/"))


async def test_template_rendered_when_the_try_starts(tmp_path: Path) -> None:
    slot = datetime(2026, 11, 25, 4, tzinfo=UTC).timestamp()
    async with Engine(tmp_path / "p.db", dags=[landing]) as podium:
        run = await podium.trigger("landing", {"day": "2026-12-01"}, logical_date=slot)
        done = await run.wait(timeout=20)
    assert done.state == "success"
    assert done.tasks["load"].result == "s3://landing/2026-12-01/20261124"


async def test_missing_name_fails_the_task_before_its_body(tmp_path: Path) -> None:
    BODY_RAN.clear()
    async with Engine(tmp_path / "p.db", dags=[typo]) as podium:
        run = await podium.trigger("typo")
        done = await run.wait(timeout=20)
    assert done.state == "failed"
    assert BODY_RAN == []
    assert done.tasks["load"].error is not None
    assert (
        "task 'load' field 'path': 'params' has no attribute 'dy' (did you mean 'day'?)"
        in done.tasks["load"].error
    )
