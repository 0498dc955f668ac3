"""``DAG.validate_params`` with arbitrary params: a checked dict or a ``ParamError``, nothing else.

What it returns is correct, too: every declared param is there, typed ones hold their type (or
None), undeclared ones are kept only when not strict; and what it accepted is accepted again after
the JSON round trip a run's params make through the state file (a restarted engine re-validates
them when it adopts the run).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ParamError, dag, task

from .support import FUZZ, deep_values, huge_strings, payload_values, python_only


@task
async def echo(must: str, count: int, amount: float, flag: bool, name: str, items: Any) -> str:
    return f"{must}{count}{amount}{flag}{name}{items}"


@dag
def typed(
    must: str,
    count: int = 0,
    amount: float = 0.0,
    flag: bool = False,
    name: str = "",
    items: list[int] | None = None,
    anything: Any = None,  # not coerced: any value
) -> None:
    echo(must, count, amount, flag, name, items)


DECLARED = set(typed.params)
SCALAR_TYPES = {"must": str, "count": int, "amount": float, "flag": bool, "name": str}

values = st.one_of(payload_values, python_only, deep_values, huge_strings)
# what a user or producer might send for each declared name, typed right or wrong
declared = st.fixed_dictionaries(
    {}, optional={name: st.one_of(values, st.text(max_size=12)) for name in DECLARED}
)
undeclared = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in DECLARED), values)
str_keyed = st.builds(lambda a, b: {**b, **a}, declared, undeclared)


def _check(given_params: dict[Any, Any], strict: bool) -> dict[str, Any] | None:
    try:
        result = typed.validate_params(given_params, strict=strict)
    except ParamError as exc:
        assert str(exc).startswith("DAG 'typed'"), exc
        return None
    assert set(result) >= DECLARED
    for name, kind in SCALAR_TYPES.items():
        value = result[name]
        assert value is None or isinstance(value, kind), (name, value)
    unknown = set(given_params) - DECLARED
    if strict:
        assert not unknown, f"strict validation kept unknown params {unknown}"
    else:
        assert all(result[k] is given_params[k] for k in unknown)
    assert "must" in given_params  # required
    return result


@FUZZ
@given(params=str_keyed, strict=st.booleans())
def test_validate_params_returns_checked_params_or_raises_param_error(
    params: dict[str, Any], strict: bool
) -> None:
    result = _check(params, strict)
    if result is None:
        return
    # accepted once, accepted again: as given (idempotent) and after the state file's JSON trip
    assert typed.validate_params(result, strict=strict) == result or _has_nan(result)
    try:
        stored = orjson.loads(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:
        return  # not storable: Engine.new_run refuses it with a ParamError (see test_event_payloads)
    typed.validate_params(stored, strict=strict)


@FUZZ
@given(
    params=st.builds(
        lambda a, b: {**b, **a},
        declared,
        st.dictionaries(st.one_of(st.integers(), st.none(), st.tuples(st.integers())), values),
    ),
    strict=st.booleans(),
)
def test_params_with_keys_that_are_not_strings_are_a_param_error(
    params: dict[Any, Any], strict: bool
) -> None:
    """Event params come from user mappers and custom sources, whose keys can be anything:
    ``sorted()``/``join`` over the unknown keys must not turn into a TypeError."""
    _check(params, strict)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"must": "x", "count": "12"}, {"count": 12}),
        ({"must": "x", "amount": 3}, {"amount": 3.0}),
        ({"must": "x", "flag": " Yes "}, {"flag": True}),
        ({"must": "x", "count": "9" * 5000}, ParamError),  # over int's digit limit: ValueError
        ({"must": "x", "count": 1.5}, ParamError),
        ({"must": "x", "flag": "maybe"}, ParamError),
        ({"must": 1}, ParamError),
        ({}, ParamError),
    ],
)
def test_coercion_edges(params: dict[str, Any], expected: Any) -> None:
    if expected is ParamError:
        with pytest.raises(ParamError):
            typed.validate_params(params)
    else:
        result = typed.validate_params(params)
        assert {k: result[k] for k in expected} == expected


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False
