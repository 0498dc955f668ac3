"""Podium's event sources: declare them in ``@dag(triggers=[...])``.

A sensor only produces events and acknowledges them once their runs are stored; it knows nothing
about DAGs.
"""

from .kafka import KafkaTopic
from .s3 import S3Events
from .timers import Cron, Every

__all__ = ["Cron", "Every", "KafkaTopic", "S3Events"]
