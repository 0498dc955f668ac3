"""Data assets and conditions on them: pure definitions, no I/O.

An ``Asset`` names a piece of data by URI (``s3://landing/crm/``, ``postgres://dwh/orders``,
``kafka://broker:9092/orders``): tasks declare what they read (``inlets``) and write (``outlets``),
and a DAG can run when assets have new events (``OnAssets(a & (b | c))``).

``a & b`` and ``a | b`` build a condition tree (``AllOf`` / ``AnyOf``). A condition is evaluated
against the set of asset URIs that have unconsumed events for the DAG (``evaluate``); ``explain``
says which parts are met, which is the answer to "why has it not run?".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Union

from .errors import DAGError


class _Combinable:
    """``&`` and ``|`` for assets and conditions (a plain URI string is accepted on either side)."""

    __slots__ = ()

    def __and__(self, other: ConditionLike) -> AllOf:
        return AllOf((as_condition(self), as_condition(other)))

    def __rand__(self, other: ConditionLike) -> AllOf:
        return AllOf((as_condition(other), as_condition(self)))

    def __or__(self, other: ConditionLike) -> AnyOf:
        return AnyOf((as_condition(self), as_condition(other)))

    def __ror__(self, other: ConditionLike) -> AnyOf:
        return AnyOf((as_condition(other), as_condition(self)))


@dataclass(frozen=True, eq=False)
class Asset(_Combinable):
    """A piece of data, known by its URI. ``name`` (default: the URI) and ``metadata`` (owner,
    description, ...) are for people and the catalog. ``fresh_within``: seconds after its last
    event (or, before any, after it was first declared) within which a new event is expected;
    the catalog shows it as stale past that, and alerting raises one ``freshness_miss`` per miss.
    Two assets with the same URI are equal."""

    uri: str
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fresh_within: float | None = None

    def __post_init__(self) -> None:
        check_uri(self.uri)
        if self.name is not None and not isinstance(self.name, str):
            raise DAGError(f"asset {self.uri!r}: name must be a string, got {self.name!r}")
        if not isinstance(self.metadata, Mapping):
            raise DAGError(f"asset {self.uri!r}: metadata must be a mapping")
        fresh = self.fresh_within
        if fresh is not None and (
            isinstance(fresh, bool) or not isinstance(fresh, (int, float)) or not fresh > 0
        ):
            raise DAGError(
                f"asset {self.uri!r}: fresh_within must be a number of seconds > 0, got {fresh!r}"
            )

    @property
    def label(self) -> str:
        return self.name or self.uri

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Asset) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(("asset", self.uri))

    def __repr__(self) -> str:
        return f"Asset({self.uri!r})"


@dataclass(frozen=True)
class AllOf(_Combinable):
    """True when every part is true (``a & b``)."""

    parts: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", _flatten(AllOf, self.parts))


@dataclass(frozen=True)
class AnyOf(_Combinable):
    """True when any part is true (``a | b``)."""

    parts: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", _flatten(AnyOf, self.parts))


Condition: TypeAlias = Union[Asset, AllOf, AnyOf]  # noqa: UP007 (evaluated at runtime)
ConditionLike: TypeAlias = Union[Condition, str]  # noqa: UP007


def check_uri(uri: object) -> str:
    """``uri`` if it is a usable asset URI (a non-empty string without surrounding whitespace)."""
    if not isinstance(uri, str) or not uri or uri.strip() != uri:
        raise DAGError(
            f"an asset URI must be a non-empty string without surrounding spaces, got {uri!r}"
        )
    return uri


def as_asset(value: Asset | str) -> Asset:
    """An ``Asset`` from an ``Asset`` or a URI string."""
    if isinstance(value, Asset):
        return value
    if isinstance(value, str):
        return Asset(value)
    raise DAGError(f"expected an Asset or a URI string, got {value!r}")


def as_assets(values: Iterable[Asset | str] | Asset | str | None, what: str) -> tuple[Asset, ...]:
    """Declared inlets or outlets as a tuple of distinct assets, in order."""
    if values is None:
        return ()
    if isinstance(values, (Asset, str)):
        values = [values]
    try:
        assets = [as_asset(v) for v in values]
    except TypeError:
        raise DAGError(f"{what} must be a list of Assets or URI strings, got {values!r}") from None
    return tuple(dict.fromkeys(assets))


def as_condition(value: object) -> Condition:
    """A condition from an asset, a URI string, a condition, or a list (all of them)."""
    if isinstance(value, (Asset, AllOf, AnyOf)):
        return value
    if isinstance(value, str):
        return Asset(value)
    if isinstance(value, (list, tuple)) and value:
        return AllOf(tuple(as_condition(v) for v in value))
    raise DAGError(f"expected an asset condition (Asset, URI, a & b, a | b), got {value!r}")


def _flatten(kind: type[AllOf] | type[AnyOf], parts: Iterable[Condition]) -> tuple[Condition, ...]:
    flat: list[Condition] = []
    for part in parts:
        part = as_condition(part)
        if type(part) is kind:
            flat.extend(part.parts)
        elif part not in flat:
            flat.append(part)
    if not flat:
        raise DAGError("an asset condition needs at least one asset")
    return tuple(flat)


def assets_of(condition: Condition) -> tuple[Asset, ...]:
    """The distinct assets a condition names, in order of appearance."""
    return tuple(dict.fromkeys(_walk(condition)))


def uris_of(condition: Condition) -> tuple[str, ...]:
    return tuple(a.uri for a in assets_of(condition))


def _walk(condition: Condition) -> Iterator[Asset]:
    if isinstance(condition, Asset):
        yield condition
        return
    for part in condition.parts:
        yield from _walk(part)


def evaluate(condition: Condition, present: Set[str]) -> bool:
    """True when ``condition`` holds given the URIs of the assets with unconsumed events."""
    if isinstance(condition, Asset):
        return condition.uri in present
    if isinstance(condition, AllOf):
        return all(evaluate(p, present) for p in condition.parts)
    return any(evaluate(p, present) for p in condition.parts)


def explain(condition: Condition, present: Set[str]) -> dict[str, Any]:
    """The condition as a tree of JSON-ready nodes, each saying whether it is met:
    ``{"asset": uri, "met": bool}`` or ``{"op": "all"|"any", "met": bool, "parts": [...]}``."""
    if isinstance(condition, Asset):
        return {"asset": condition.uri, "met": condition.uri in present}
    parts = [explain(p, present) for p in condition.parts]
    op = "all" if isinstance(condition, AllOf) else "any"
    met = all(p["met"] for p in parts) if op == "all" else any(p["met"] for p in parts)
    return {"op": op, "met": met, "parts": parts}


def missing(condition: Condition, present: Set[str]) -> list[str]:
    """URIs whose events would help: for ``a & (b | c)`` with only ``b`` present, ``["a"]``."""
    if evaluate(condition, present):
        return []
    if isinstance(condition, Asset):
        return [condition.uri]
    if isinstance(condition, AllOf):
        out: list[str] = []
        for part in condition.parts:
            out.extend(u for u in missing(part, present) if u not in out)
        return out
    return list(dict.fromkeys(u for p in condition.parts for u in missing(p, present)))


def describe(condition: Condition) -> str:
    """``a & (b | c)`` in words, with URIs."""
    if isinstance(condition, Asset):
        return condition.uri
    joiner = " & " if isinstance(condition, AllOf) else " | "
    texts = [describe(p) if isinstance(p, Asset) else f"({describe(p)})" for p in condition.parts]
    return joiner.join(texts)


def spec(condition: Condition) -> Any:
    """The condition as JSON data: a URI, ``{"all": [...]}`` or ``{"any": [...]}``."""
    if isinstance(condition, Asset):
        return condition.uri
    key = "all" if isinstance(condition, AllOf) else "any"
    return {key: [spec(p) for p in condition.parts]}


@dataclass(frozen=True, slots=True)
class ReportedAssetEvent:
    """What a task reported with ``ctx.asset_event``: recorded if and when the try succeeds."""

    uri: str
    metadata: Mapping[str, Any] | None = None
    schema: Sequence[Any] | None = None


@dataclass(frozen=True, slots=True)
class AssetEvent:
    """One recorded asset event: data ``uri`` written by a task's successful try (or read at a
    source), with when and by whom, and what the task said about it."""

    event_id: str
    uri: str
    ts: float
    run_id: str | None = None
    dag_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    metadata: Mapping[str, Any] | None = None
    schema: Sequence[Any] | None = None
    seq: int | None = None  # its row number, once stored

    def payload(self) -> dict[str, Any]:
        """The event as JSON-ready data (what ``OnAssets`` filters see and runs list)."""
        return {
            "uri": self.uri,
            "event_id": self.event_id,
            "seq": self.seq,
            "ts": self.ts,
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "schema": list(self.schema) if self.schema is not None else None,
        }


def _columns(schema: Sequence[Any] | None) -> dict[str, Any]:
    """A reported schema as ``{column name: its description}``: a column is a string (its name)
    or a mapping with a ``name`` (the rest, e.g. ``type``, describes it)."""
    out: dict[str, Any] = {}
    for n, col in enumerate(schema or ()):
        if isinstance(col, Mapping):
            name = str(col.get("name", f"#{n}"))
            out[name] = {k: v for k, v in col.items() if k != "name"}
        else:
            out[str(col)] = None
    return out


def schema_changes(
    previous: Sequence[Any] | None, current: Sequence[Any] | None
) -> dict[str, Any] | None:
    """What changed between two reported schemas: ``{"added": [names], "removed": [names],
    "changed": [{"name", "from", "to"}]}``, or None when either is missing or nothing changed."""
    if previous is None or current is None:
        return None
    before, after = _columns(previous), _columns(current)
    added = [c for c in after if c not in before]
    removed = [c for c in before if c not in after]
    changed = [
        {"name": c, "from": before[c], "to": after[c]}
        for c in after
        if c in before and before[c] != after[c]
    ]
    if not (added or removed or changed):
        return None
    return {"added": added, "removed": removed, "changed": changed}


def describe_schema_changes(changes: Mapping[str, Any]) -> str:
    """``added: region; removed: zip; changed: amount (int -> float)`` for people."""
    parts = []
    if changes.get("added"):
        parts.append("added: " + ", ".join(changes["added"]))
    if changes.get("removed"):
        parts.append("removed: " + ", ".join(changes["removed"]))
    if changes.get("changed"):
        texts = []
        for c in changes["changed"]:
            old, new = (_type_text(c["from"]), _type_text(c["to"]))
            texts.append(f"{c['name']} ({old} -> {new})")
        parts.append("changed: " + ", ".join(texts))
    return "; ".join(parts)


def _type_text(description: Any) -> str:
    if isinstance(description, Mapping) and set(description) == {"type"}:
        return str(description["type"])
    return "?" if description is None else str(description)


def freshness(
    fresh_within: float | None, last_ts: float | None, since: float, now: float
) -> dict[str, Any] | None:
    """Where an asset stands against ``fresh_within`` (None when it has none): ``fresh``, the
    ``deadline`` (its last event's time, or ``since`` before any, plus ``fresh_within``) and
    ``overdue`` seconds past it."""
    if fresh_within is None:
        return None
    deadline = (last_ts if last_ts is not None else since) + fresh_within
    return {
        "fresh_within": fresh_within,
        "fresh": now <= deadline,
        "deadline": deadline,
        "overdue": max(now - deadline, 0.0),
    }


def task_outputs(
    outlets: Sequence[Asset],
    reported: Sequence[ReportedAssetEvent],
    *,
    run_id: str,
    dag_id: str,
    task_id: str,
    try_number: int,
    now: float,
) -> list[AssetEvent]:
    """The asset events of a successful try: one per declared outlet, plus the ones it reported.

    A report for an outlet's URI stands for that outlet's event (it adds metadata, it does not
    double it); reports for other URIs (known only at run time) are added, in order."""
    reported_uris = {r.uri for r in reported}
    plain = [ReportedAssetEvent(a.uri) for a in outlets if a.uri not in reported_uris]
    return [
        AssetEvent(
            event_id=f"asset:{run_id}:{task_id}:{try_number}:{n}",
            uri=r.uri,
            ts=now,
            run_id=run_id,
            dag_id=dag_id,
            task_id=task_id,
            try_number=try_number,
            metadata=r.metadata,
            schema=r.schema,
        )
        for n, r in enumerate([*plain, *reported])
    ]


__all__ = [
    "AllOf",
    "AnyOf",
    "Asset",
    "AssetEvent",
    "Condition",
    "ReportedAssetEvent",
    "as_asset",
    "as_assets",
    "as_condition",
    "assets_of",
    "describe",
    "describe_schema_changes",
    "evaluate",
    "explain",
    "freshness",
    "missing",
    "schema_changes",
    "spec",
    "task_outputs",
    "uris_of",
]
