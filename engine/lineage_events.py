"""OpenLineage, the pure parts: options, naming (asset URI <-> dataset, Podium run <-> run UUID), and
the validation of RunEvents sent to Podium. No I/O, and no import of the ``openlineage`` package:
the HTTP API accepts events whether or not ``podium[openlineage]`` is installed.

Naming, both ways (docs/lineage.md):

- an asset URI ``scheme://authority/path`` is the dataset ``namespace="scheme://authority"``,
  ``name="path"`` (OpenLineage's naming for ``s3://bucket`` + ``key``, ``kafka://broker`` + ``topic``,
  ``postgres://host:5432`` + ``db.schema.table``); a URI without ``://`` is ``name=uri`` in the
  engine's namespace;
- a dataset sent to Podium is the asset ``{namespace}/{name}`` (one slash between them), so the
  two directions agree on every ``scheme://authority/path`` URI;
- a Podium run is the OpenLineage run ``uuid5(PODIUM_UUID_NAMESPACE, "run:{run_id}")``; one try of
  a task is ``uuid5(..., "try:{run_id}:{task_id}:{try_number}")``: stable, so a receiver sees one
  run per Podium run whatever process emits it.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .backoff import Backoff
from .errors import LineageEventError, PodiumError

PODIUM_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:podium")
"""The namespace of the name-based UUIDs of Podium's runs and tries (a constant: never change it)."""

EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
"""The ``eventType`` values of the OpenLineage run-event schema."""

MAX_EVENT_BYTES = 1024 * 1024
"""The largest OpenLineage event ``POST /api/v1/lineage`` accepts (column lineage can be large)."""

MAX_DATASETS = 1000
"""The most inputs, and the most outputs, one accepted event may name."""


@dataclass(frozen=True, kw_only=True)
class LineageOptions:
    """How Podium emits OpenLineage events (``Engine(lineage=LineageOptions(...))``).

    ``namespace``: the jobs' namespace (default: ``$OPENLINEAGE_NAMESPACE``, else ``podium``).
    ``queue_size``: events waiting to be sent at most; past it new events are dropped (and
    counted), never waited for. ``retries``: further tries of an event the transport failed to send,
    ``backoff`` apart; then the event is dropped and logged. ``drain_timeout``: how long a stopping
    engine waits for the events still queued. ``producer``: the events' ``producer`` URI.
    The transport is the client's (``openlineage.yml``, ``OPENLINEAGE_URL``, ...), or pass a client:
    ``Engine(openlineage_client=OpenLineageClient(...))``."""

    namespace: str = ""
    queue_size: int = 1000
    retries: int = 4
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5, cap=30.0, jitter=0.2))
    drain_timeout: float = 5.0
    producer: str = "urn:podium:engine"

    def __post_init__(self) -> None:
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise PodiumError(f"lineage queue_size must be an int >= 1, got {self.queue_size!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise PodiumError(f"lineage retries must be an int >= 0, got {self.retries!r}")
        if not (math.isfinite(self.drain_timeout) and self.drain_timeout >= 0):
            raise PodiumError(f"lineage drain_timeout must be >= 0, got {self.drain_timeout!r}")
        if not self.producer:
            raise PodiumError("lineage producer must be a non-empty URI")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> LineageOptions:
        """Options with the namespace from ``$OPENLINEAGE_NAMESPACE`` when not given."""
        env = os.environ if environ is None else environ
        if not kwargs.get("namespace"):
            kwargs["namespace"] = env.get("OPENLINEAGE_NAMESPACE") or "podium"
        return cls(**kwargs)


# -- naming -----------------------------------------------------------------------------------------


def dataset_of(uri: str, default_namespace: str) -> tuple[str, str]:
    """The OpenLineage dataset (namespace, name) of an asset URI."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        return default_namespace, uri
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}", path or "/"


def uri_of(namespace: str, name: str) -> str:
    """The asset URI of an OpenLineage dataset: ``{namespace}/{name}``."""
    base = namespace if namespace.endswith("://") else namespace.rstrip("/")
    return f"{base}/{name.lstrip('/')}"


def run_uuid(run_id: str) -> str:
    """The OpenLineage run id of a Podium run."""
    return str(uuid.uuid5(PODIUM_UUID_NAMESPACE, f"run:{run_id}"))


def try_uuid(run_id: str, task_id: str, try_number: int) -> str:
    """The OpenLineage run id of one try of a task."""
    return str(uuid.uuid5(PODIUM_UUID_NAMESPACE, f"try:{run_id}:{task_id}:{try_number}"))


# -- events sent to Podium --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalDataset:
    """A dataset of an accepted event, as an asset: its URI, and what the event said about it."""

    uri: str
    namespace: str
    name: str
    schema: list[dict[str, Any]] | None = None
    rows: int | None = None


@dataclass(frozen=True, slots=True)
class ExternalRunEvent:
    """A validated OpenLineage RunEvent from another tool (dbt, Spark, ...)."""

    event_type: str
    event_time: float
    producer: str
    run_id: str
    namespace: str
    job: str
    parent_run_id: str | None
    inputs: tuple[ExternalDataset, ...]
    outputs: tuple[ExternalDataset, ...]


def parse_run_event(data: Any) -> ExternalRunEvent:
    """Check an OpenLineage RunEvent (the JSON of ``POST /api/v1/lineage``) for what Podium stores:
    ``eventTime`` (ISO 8601 with a zone), ``producer``, ``schemaURL``, ``eventType`` (one of the
    spec's), ``run.runId`` (a UUID), ``job.namespace`` and ``job.name``, and ``inputs`` /
    ``outputs`` as lists of datasets with a ``namespace`` and a ``name``. Raises
    ``LineageEventError`` naming the first problem."""
    if not isinstance(data, dict):
        raise LineageEventError("an OpenLineage event must be a JSON object")
    if "run" not in data and "eventType" not in data and ("dataset" in data or "job" in data):
        raise LineageEventError(
            "only OpenLineage RunEvents are accepted (this looks like a DatasetEvent or JobEvent)"
        )
    event_time = _time(_string(data, "eventTime", "eventTime"))
    producer = _string(data, "producer", "producer")
    _string(data, "schemaURL", "schemaURL")
    event_type = data.get("eventType")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise LineageEventError(
            f"'eventType' must be one of {', '.join(sorted(EVENT_TYPES))}, got {event_type!r}"
        )
    run = _object(data, "run", "run")
    run_id = _uuid(_string(run, "runId", "run.runId"), "run.runId")
    job = _object(data, "job", "job")
    namespace = _string(job, "namespace", "job.namespace")
    name = _string(job, "name", "job.name")
    parent_run_id: str | None = None
    facets = run.get("facets")
    if isinstance(facets, dict) and isinstance(facets.get("parent"), dict):
        parent_run = facets["parent"].get("run")
        if isinstance(parent_run, dict) and isinstance(parent_run.get("runId"), str):
            parent_run_id = parent_run["runId"]
    return ExternalRunEvent(
        event_type=event_type,
        event_time=event_time,
        producer=producer,
        run_id=run_id,
        namespace=namespace,
        job=name,
        parent_run_id=parent_run_id,
        inputs=_datasets(data, "inputs"),
        outputs=_datasets(data, "outputs"),
    )


def _object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise LineageEventError(f"{where!r} is required and must be an object")
    return value


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise LineageEventError(f"{where!r} is required and must be a non-empty string")
    return value


def _uuid(value: str, where: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise LineageEventError(f"{where!r} must be a UUID, got {value[:80]!r}") from None


def _time(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise LineageEventError(
            f"'eventTime' must be an ISO 8601 date-time, got {value[:80]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise LineageEventError(f"'eventTime' needs a time zone (e.g. Z), got {value[:80]!r}")
    return parsed.timestamp()


def _datasets(data: Mapping[str, Any], key: str) -> tuple[ExternalDataset, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise LineageEventError(f"{key!r} must be a list of datasets")
    if len(value) > MAX_DATASETS:
        raise LineageEventError(f"{key!r} names {len(value)} datasets; at most {MAX_DATASETS}")
    out: dict[str, ExternalDataset] = {}
    for n, item in enumerate(value):
        where = f"{key}[{n}]"
        if not isinstance(item, dict):
            raise LineageEventError(f"{where!r} must be an object")
        namespace = _string(item, "namespace", f"{where}.namespace")
        name = _string(item, "name", f"{where}.name")
        facets = item.get("facets")
        io_facets = item.get("outputFacets" if key == "outputs" else "inputFacets")
        uri = uri_of(namespace, name)
        out[uri] = ExternalDataset(
            uri=uri,
            namespace=namespace,
            name=name,
            schema=_schema(facets),
            rows=_rows(io_facets),
        )
    return tuple(out.values())


def _schema(facets: Any) -> list[dict[str, Any]] | None:
    """The schema facet's fields as Podium's asset schema: ``[{"name": ..., "type": ...}]``."""
    if not isinstance(facets, dict) or not isinstance(facets.get("schema"), dict):
        return None
    fields = facets["schema"].get("fields")
    if not isinstance(fields, list):
        return None
    out = []
    for f in fields:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            entry: dict[str, Any] = {"name": f["name"]}
            if isinstance(f.get("type"), str):
                entry["type"] = f["type"]
            out.append(entry)
    return out


def _rows(facets: Any) -> int | None:
    if not isinstance(facets, dict):
        return None
    stats = facets.get("outputStatistics")
    if isinstance(stats, dict):
        rows = stats.get("rowCount")
        if isinstance(rows, int) and not isinstance(rows, bool):
            return rows
    return None


def schema_fields(schema: Sequence[Any] | None) -> list[tuple[str, str | None]]:
    """(name, type) of each field of a Podium asset schema (entries without a name are skipped)."""
    out: list[tuple[str, str | None]] = []
    for f in schema or ():
        if isinstance(f, Mapping) and isinstance(f.get("name"), str):
            kind = f.get("type")
            out.append((f["name"], kind if isinstance(kind, str) else None))
    return out


__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "PODIUM_UUID_NAMESPACE",
    "ExternalDataset",
    "ExternalRunEvent",
    "LineageOptions",
    "dataset_of",
    "parse_run_event",
    "run_uuid",
    "try_uuid",
    "uri_of",
]
