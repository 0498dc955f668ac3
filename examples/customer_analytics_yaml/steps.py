"""The steps ``pipeline.yaml`` calls that need more than the Python pipeline's function: relative
``data_dir``/``output_dir`` params are under this example's folder, so these resolve them and call the
function (``examples.customer_analytics.pipeline``). The other steps call the pipeline's functions
directly. Results travel between tasks as in the Python DAG (``"{{ tasks.<id>.result }}"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import Context
from examples.customer_analytics import pipeline

HERE = Path(__file__).resolve().parent


def folder(path: str) -> str:
    """``path``, relative to this example's folder unless it is absolute."""
    return str(path if Path(path).is_absolute() else HERE / path)


def prepare_sources(ctx: Context, data_dir: str, output_dir: str) -> dict[str, Any]:
    return pipeline.prepare_sources.fn(ctx, folder(data_dir), folder(output_dir))


def extract_products(
    ctx: Context, sources: dict[str, Any], day: str, output_dir: str
) -> dict[str, Any]:
    return pipeline.extract_products.fn(ctx, sources, day, folder(output_dir))


def load(ctx: Context, enriched: dict[str, Any], output_dir: str) -> dict[str, Any]:
    return pipeline.load.fn(ctx, enriched, folder(output_dir))


def report(ctx: Context, loaded: dict[str, Any], output_dir: str) -> dict[str, Any]:
    return pipeline.report.fn(ctx, loaded, folder(output_dir))
