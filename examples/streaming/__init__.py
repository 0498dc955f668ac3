"""Streaming-triggered pipelines: Kafka orders and S3 file arrivals (``python -m examples.streaming``)."""
