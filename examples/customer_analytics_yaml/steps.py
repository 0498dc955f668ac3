"""The steps ``pipeline.yaml`` calls (``call: examples.customer_analytics_yaml.steps:clean``).

Each one calls the Python pipeline's function (``examples.customer_analytics.pipeline``) and hands
its result to the next steps through a JSON file in the run's staging folder
(``<output_dir>/staging/<run_id>/results/<task>.json``): YAML tasks do not pass results to each other
yet (``depends_on`` only orders them), so the file is the data edge. Each step's result is also its
task result, as in the Python DAG. Relative ``data_dir``/``output_dir`` are under this folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from engine import Context
from examples.customer_analytics import pipeline

HERE = Path(__file__).resolve().parent


def folder(path: str) -> str:
    """``path``, relative to this example's folder unless it is absolute."""
    return str(path if Path(path).is_absolute() else HERE / path)


def _result_file(output_dir: str, run_id: str, task_id: str) -> Path:
    return pipeline.staging_dir(folder(output_dir), run_id) / "results" / f"{task_id}.json"


def _put(ctx: Context, output_dir: str, value: Any) -> Any:
    path = _result_file(output_dir, ctx.run_id, ctx.task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline.write_text_atomically(path, json.dumps(value, ensure_ascii=False))
    return value


def _get(ctx: Context, output_dir: str, task_id: str) -> Any:
    return json.loads(_result_file(output_dir, ctx.run_id, task_id).read_text(encoding="utf-8"))


def prepare_sources(ctx: Context, data_dir: str, output_dir: str) -> dict[str, Any]:
    sources = pipeline.prepare_sources.fn(ctx, folder(data_dir), folder(output_dir))
    return _put(ctx, output_dir, sources)


async def extract_crm(ctx: Context, output_dir: str) -> list[dict[str, str]]:
    source = anyio.Path(_result_file(output_dir, ctx.run_id, "prepare_sources"))
    sources = json.loads(await source.read_text(encoding="utf-8"))
    rows = await pipeline.extract_crm.fn(ctx, sources)
    target = anyio.Path(_result_file(output_dir, ctx.run_id, ctx.task_id))
    await target.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return rows


def extract_products(ctx: Context, day: str, output_dir: str) -> dict[str, Any]:
    sources = _get(ctx, output_dir, "prepare_sources")
    products = pipeline.extract_products.fn(ctx, sources, day, folder(output_dir))
    return _put(ctx, output_dir, products)


def clean(ctx: Context, output_dir: str) -> dict[str, Any]:
    crm, products = _get(ctx, output_dir, "extract_crm"), _get(ctx, output_dir, "extract_products")
    return _put(ctx, output_dir, pipeline.clean.fn(crm, products))


def enrich(ctx: Context, output_dir: str) -> dict[str, Any]:
    cleaned = _get(ctx, output_dir, "clean")
    return _put(ctx, output_dir, pipeline.enrich.fn(cleaned))


def load(ctx: Context, output_dir: str) -> dict[str, Any]:
    enriched = _get(ctx, output_dir, "enrich")
    loaded = pipeline.load.fn(ctx, enriched, folder(output_dir))
    return _put(ctx, output_dir, loaded)


def report(ctx: Context, output_dir: str) -> dict[str, Any]:
    loaded = _get(ctx, output_dir, "load")
    return pipeline.report.fn(ctx, loaded, folder(output_dir))
