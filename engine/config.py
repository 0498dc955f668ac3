"""``EngineConfig``: the engine's settings, validated once, frozen."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import serialization
from .errors import PodiumError
from .logs import DEFAULT_MAX_LOG_BYTES
from .runners.base import Runner
from .store import Durability


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Settings of an ``Engine`` (see its docstring for each); invalid values raise ``PodiumError``."""

    db: str = "podium.db"
    max_tasks: int = 64
    pools: Mapping[str, int] = field(default_factory=dict)
    max_threads: int = 8
    durability: Durability = "normal"
    max_result_bytes: int | None = serialization.DEFAULT_MAX_RESULT_BYTES
    shutdown_grace: float = 30.0
    poll_interval: float = 0.25
    sensors: bool = True
    high_water: int = 2000
    low_water: int | None = None
    bus_size: int = 64
    capture_logs: bool = True
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    loop_lag_threshold: float = 0.5
    max_map_length: int = 10_000
    http: str | None = None
    http_token: str | None = None
    http_public_read: bool = False
    http_private_probes: bool = False
    runner: Runner | None = None

    def __post_init__(self) -> None:
        if self.runner is not None and not isinstance(self.runner, Runner):
            raise PodiumError(f"runner must be a runner such as Process(), got {self.runner!r}")
        object.__setattr__(self, "db", os.fspath(self.db))
        if not isinstance(self.max_tasks, int) or self.max_tasks < 1:
            raise PodiumError(f"max_tasks must be >= 1, got {self.max_tasks}")
        if not isinstance(self.max_threads, int) or self.max_threads < 1:
            raise PodiumError(f"max_threads must be >= 1, got {self.max_threads}")
        for name, slots in self.pools.items():
            if not isinstance(slots, int) or slots < 1:
                raise PodiumError(f"pool {name!r} needs an int >= 1 slots, got {slots!r}")
        object.__setattr__(self, "pools", MappingProxyType(dict(self.pools)))
        if self.durability not in ("normal", "full"):
            raise PodiumError(f"durability must be 'normal' or 'full', got {self.durability!r}")
        low = self.high_water // 2 if self.low_water is None else self.low_water
        if not 0 <= low < self.high_water:
            raise PodiumError(
                f"need 0 <= low_water < high_water, got low_water={low}, high_water={self.high_water}"
            )
        object.__setattr__(self, "low_water", low)
        if not isinstance(self.max_map_length, int) or self.max_map_length < 0:
            raise PodiumError(f"max_map_length must be an int >= 0, got {self.max_map_length!r}")
        if self.bus_size < 1:
            raise PodiumError(f"bus_size must be >= 1, got {self.bus_size}")
        self.http_address  # noqa: B018 - validates the address

    @property
    def low_water_mark(self) -> int:
        assert self.low_water is not None  # resolved in __post_init__
        return self.low_water

    @property
    def http_address(self) -> tuple[str, int] | None:
        """``"127.0.0.1:8080"`` or ``":8080"`` (loopback) as (host, port)."""
        return parse_http(self.http)


def parse_http(http: str | None) -> tuple[str, int] | None:
    """``"127.0.0.1:8080"`` or ``":8080"`` (loopback) → (host, port)."""
    if http is None:
        return None
    host, _, port = http.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise PodiumError(f"http must look like HOST:PORT, got {http!r}") from None
    if not 0 <= number <= 65535:
        raise PodiumError(f"http port must be within 0..65535, got {number}")
    return (host or "127.0.0.1", number)
