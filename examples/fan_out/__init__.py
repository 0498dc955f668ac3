"""The fan-out example: ``pipeline.daily_files`` maps ``load_file`` over the files of a day."""

from .pipeline import daily_files

__all__ = ["daily_files"]
