"""The OpenLineage run-event JSON Schema (vendored in tests/data/openlineage, see its README) as a
``jsonschema`` validator: ``check_run_event(event)`` raises ``ValidationError`` for an event that
breaks the spec, ``check_parent_facet(facet)`` for a parent-run facet."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

DATA = Path(__file__).resolve().parent / "data" / "openlineage"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
PARENT = "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json"


@cache
def _registry() -> Registry:
    resources = []
    for name in ("OpenLineage.json", "ParentRunFacet.json"):
        schema = json.loads((DATA / name).read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry = Registry().with_resources(resources)
    return registry


@cache
def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": ref},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check_run_event(event: Any) -> None:
    """Validate against the spec's ``RunEvent`` (the document's root: one of its event kinds)."""
    _validator(CORE).validate(event)
    _validator(f"{CORE}#/$defs/RunEvent").validate(event)


def check_parent_facet(facet: Any) -> None:
    _validator(f"{PARENT}#/$defs/ParentRunFacet").validate(facet)
