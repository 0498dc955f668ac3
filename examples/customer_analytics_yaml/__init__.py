"""The customer-analytics pipeline as a YAML DAG (``pipeline.yaml``), calling the Python pipeline's
functions through ``steps.py``."""

from __future__ import annotations

from pathlib import Path

from engine import DAG
from engine.yaml_dags import load_yaml_dag

HERE = Path(__file__).resolve().parent
PIPELINE_YAML = HERE / "pipeline.yaml"
OUTPUT_DIR = HERE / "output"


def load_dag() -> DAG:
    """The DAG of ``pipeline.yaml`` (``YAMLDAGError`` listing every problem if it is invalid)."""
    return load_yaml_dag(PIPELINE_YAML)


__all__ = ["OUTPUT_DIR", "PIPELINE_YAML", "load_dag"]
