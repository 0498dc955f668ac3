"""What the web examples (``aiohttp_app``, ``fastapi_app``) share: the ``word_stats`` DAG they serve,
a run as their JSON API returns it, and the HTTP status each engine error maps to."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from engine import (
    Context,
    DAGNotFoundError,
    EngineStoppedError,
    ParamError,
    PodiumError,
    Run,
    RunNotFoundError,
    dag,
    task,
)

MAX_WAIT = 30.0
"""The longest a ``GET /runs/{run_id}?wait=SECONDS`` long-poll waits for the run to finish."""


@task
def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@task
async def count_words(ctx: Context, words: list[str]) -> dict[str, int]:
    ctx.log.info("counting %d words", len(words))
    return dict(Counter(words).most_common(5))


@task
def longest_word(words: list[str]) -> str:
    return max(words, key=len, default="")


@task
def summarize(top: dict[str, int], longest: str, words: list[str]) -> dict[str, Any]:
    return {"words": len(words), "distinct": len(set(words)), "top": top, "longest": longest}


@dag(max_active_runs=4, description="Word statistics of a text (the web examples' DAG)")
def word_stats(text: str = "the quick brown fox jumps over the lazy dog") -> None:
    words = tokenize(text)
    summarize(count_words(words), longest_word(words), words)


_STATUS: dict[type[PodiumError], int] = {
    DAGNotFoundError: 404,
    RunNotFoundError: 404,
    ParamError: 400,
    EngineStoppedError: 503,
}


def http_status(exc: PodiumError) -> int:
    """The HTTP status an engine error becomes: unknown DAG or run 404, bad params 400, stopping 503."""
    return next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API returns it."""
    return {
        "run_id": run.run_id,
        "dag_id": run.dag_id,
        "key": run.key,
        "state": run.state.value,
        "finished": run.finished,
        "params": run.params,
        "logical_date": run.logical_date.isoformat() if run.logical_date else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "note": run.note,
        "tasks": {
            task_id: {
                "state": ti.state.value,
                "try_number": ti.try_number,
                "started_at": ti.started_at,
                "finished_at": ti.finished_at,
                "result": ti.result,
                "error": ti.error,
            }
            for task_id, ti in run.tasks.items()
        },
    }
