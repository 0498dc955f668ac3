"""Runnable examples of Podium: ``python -m examples.customer_analytics`` (``make demo``)."""
