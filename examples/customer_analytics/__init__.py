"""The customer-analytics demo pipeline; the DAG is ``pipeline.customer_analytics``."""

from .pipeline import POOLS, customer_analytics

__all__ = ["POOLS", "customer_analytics"]
