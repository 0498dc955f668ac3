"""What every trigger declaration shares: an optional event filter and a params mapper."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

EventFilter = Callable[[Mapping[str, Any]], bool]
ParamsMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]
