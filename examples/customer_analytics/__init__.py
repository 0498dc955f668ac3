"""The customer-analytics demo pipeline; the DAGs are ``pipeline.customer_analytics`` and the
asset-triggered ``pipeline.top_customers``."""

from .pipeline import POOLS, customer_analytics, top_customers

__all__ = ["POOLS", "customer_analytics", "top_customers"]
