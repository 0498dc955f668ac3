"""What the fuzz tests share: deterministic hypothesis settings, value strategies, and a real engine
running on its own event loop in a thread, so one engine serves every example of a test function.

Hypothesis drives examples from a synchronous test body; the engine lives in an anyio blocking
portal (a loop in a background thread) and the test calls into it with ``portal.call``. That keeps
shrinking working against the real engine without paying an engine start per example.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from engine import DAG, Engine

T = TypeVar("T")

#: Deterministic (the same examples on every run, no example database) and quick: ~50 examples.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one engine per test function, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- values -------------------------------------------------------------------------------------

#: JSON scalars, including the edges: big and 64-bit-overflowing ints, NaN-free floats, odd text.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        ["", "0", "1.5", "true", "no", "NaN", "1e999", "\u0000", "\ud7ff\ue000", " 7 "]
    ),
)

#: Arbitrary (shallow) JSON documents.
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def nest(depth: int, leaf: Any = 1, *, as_dict: bool = False) -> Any:
    """``leaf`` inside ``depth`` lists (or ``{"a": ...}`` objects)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


#: Deeply nested documents; depths around orjson's limits (254 to encode, 1024 to decode) included.
deep_values = st.builds(
    nest,
    st.one_of(
        st.integers(0, 40), st.sampled_from([250, 252, 253, 254, 255, 256, 300, 600, 1023, 1024])
    ),
    json_scalars,
    as_dict=st.booleans(),
)

#: Big strings (up to 1.5 MB, over the engine's 1 MiB result cap).
huge_strings = st.sampled_from([10_000, 300_000, 1_100_000, 1_500_000]).map(lambda n: "x" * n)

#: Python-side values an in-process event source could hand over (beyond what JSON can express).
python_only = st.sampled_from(
    [2**64, -(2**70), float("nan"), float("inf"), b"bytes", (1, 2), "\ud800", {1, 2}]
)

payload_values = st.one_of(
    json_values, deep_values, huge_strings, json_scalars, st.lists(json_scalars, max_size=5)
)


# -- a real engine on a loop in a thread ----------------------------------------------------------


@dataclass
class Served:
    """An engine running in ``portal``'s event loop (call into it with ``portal.call``)."""

    engine: Engine
    portal: BlockingPortal
    ids: Iterator[int]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def next_id(self) -> int:
        return next(self.ids)


@contextmanager
def engine_in_thread(db: Path, dags: list[DAG], **options: Any) -> Iterator[Served]:
    """``async with Engine(db, dags=dags, sensors=False, **options)`` on a loop of its own."""
    with start_blocking_portal() as portal:
        engine = portal.call(lambda: Engine(db, dags=dags, sensors=False, **options))
        with portal.wrap_async_context_manager(engine):
            yield Served(engine, portal, itertools.count())


__all__ = [
    "FUZZ",
    "Served",
    "deep_values",
    "engine_in_thread",
    "huge_strings",
    "json_scalars",
    "json_values",
    "nest",
    "payload_values",
    "python_only",
]
