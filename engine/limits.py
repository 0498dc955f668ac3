"""Concurrency limits and the ready queue: which ready task starts next, without exceeding any limit.

Ready tasks wait in one heap ordered by priority (higher first), then arrival (FIFO). A task whose pool,
DAG or per-task limit is full is parked on that limit and put back in the heap, with its original place,
when a slot of that limit frees. So a full pool never blocks tasks of other pools, and nobody starves.
Pure bookkeeping: no clock, no I/O, no event loop.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

LimitKey = Hashable


@dataclass(slots=True)
class ReadyItem:
    payload: Any
    limits: tuple[LimitKey, ...] = ()
    woken_by: LimitKey | None = None


# Heap entries: (-priority, arrival, item). Tuples of ints compare in C; arrival numbers are unique,
# so the item itself is never compared.
Entry = tuple[int, int, ReadyItem]


class ReadyQueue:
    """Ready tasks under a global limit and any number of keyed limits (pools, DAGs, tasks)."""

    def __init__(self, global_limit: int, capacities: Mapping[LimitKey, int] | None = None) -> None:
        if global_limit < 1:
            raise ValueError("global limit must be >= 1")
        self.global_limit = global_limit
        self.global_used = 0
        self.capacities: dict[LimitKey, int] = dict(capacities or {})
        self.used: dict[LimitKey, int] = {}
        self._heap: list[Entry] = []
        self._parked: dict[LimitKey, list[Entry]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap) + sum(len(p) for p in self._parked.values())

    def set_capacity(self, key: LimitKey, capacity: int) -> None:
        """Change a limit; raising it wakes as many parked tasks as it frees slots."""
        self.capacities[key] = capacity
        parked = self._parked.get(key)
        while parked and self.used.get(key, 0) + self._woken(key) < capacity:
            entry = heapq.heappop(parked)
            entry[2].woken_by = key
            heapq.heappush(self._heap, entry)

    def _woken(self, key: LimitKey) -> int:
        return sum(1 for entry in self._heap if entry[2].woken_by == key)

    def push(self, payload: Any, *, priority: int = 0, limits: tuple[LimitKey, ...] = ()) -> None:
        """Add a ready task; ``limits`` are the keyed limits it needs a slot of (unknown keys: unlimited)."""
        item = ReadyItem(payload, tuple(k for k in limits if k in self.capacities))
        heapq.heappush(self._heap, (-priority, next(self._seq), item))

    def pop_startable(self, max_items: int | None = None) -> list[tuple[Any, tuple[LimitKey, ...]]]:
        """Take every task that can start now, acquiring its slots; returns (payload, limits) pairs."""
        started: list[tuple[Any, tuple[LimitKey, ...]]] = []
        heap = self._heap
        while heap and self.global_used < self.global_limit:
            if max_items is not None and len(started) >= max_items:
                break
            entry = heapq.heappop(heap)
            item = entry[2]
            blocked = self._first_full(item.limits)
            if blocked is not None:
                self._park(entry, blocked)
                continue
            item.woken_by = None
            self.global_used += 1
            for key in item.limits:
                self.used[key] = self.used.get(key, 0) + 1
            started.append((item.payload, item.limits))
        return started

    def release(self, limits: tuple[LimitKey, ...]) -> None:
        """Give back the slots of a task that finished; wake one parked task per freed keyed slot."""
        self.global_used -= 1
        for key in limits:
            self.used[key] -= 1
            self._wake(key)

    def remove(self, predicate: Any) -> list[Any]:
        """Drop waiting tasks whose payload matches ``predicate`` (e.g. a cancelled run's tasks)."""
        removed = [e[2].payload for e in self._heap if predicate(e[2].payload)]
        if removed:
            self._heap = [e for e in self._heap if not predicate(e[2].payload)]
            heapq.heapify(self._heap)
        for key, parked in list(self._parked.items()):
            keep = [e for e in parked if not predicate(e[2].payload)]
            removed.extend(e[2].payload for e in parked if predicate(e[2].payload))
            if len(keep) != len(parked):
                heapq.heapify(keep)
                self._parked[key] = keep
        return removed

    def _first_full(self, limits: tuple[LimitKey, ...]) -> LimitKey | None:
        for key in limits:
            if self.used.get(key, 0) >= self.capacities[key]:
                return key
        return None

    def _park(self, entry: Entry, key: LimitKey) -> None:
        heapq.heappush(self._parked.setdefault(key, []), entry)
        item = entry[2]
        woken_by, item.woken_by = item.woken_by, None
        if woken_by is not None and woken_by != key:
            # This task was woken by a slot of `woken_by` but did not take it; pass the wake-up on.
            self._wake(woken_by)

    def _wake(self, key: LimitKey) -> None:
        parked = self._parked.get(key)
        if parked and self.used.get(key, 0) < self.capacities[key]:
            entry = heapq.heappop(parked)
            entry[2].woken_by = key
            heapq.heappush(self._heap, entry)
