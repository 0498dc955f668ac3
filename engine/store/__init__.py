"""SQLite state store: schema, named queries, the rows it hands out, the batched writer, the owner lock."""

from .lock import OwnerLock, is_owned
from .records import (
    AssetEventRow,
    AssetNameRow,
    AssetRow,
    DagRow,
    EventRow,
    KeyRow,
    LogRow,
    OperationRow,
    RequestRow,
    RequestStatusRow,
    RunInputRow,
    RunnerProcessRow,
    RunRow,
    SchemaRow,
    SourceUseRow,
    TaskRow,
    TryRow,
)
from .store import Durability, Store, run_from_row, task_from_row
from .writer import StoreWriter

__all__ = [
    "AssetEventRow",
    "AssetNameRow",
    "AssetRow",
    "DagRow",
    "Durability",
    "EventRow",
    "KeyRow",
    "LogRow",
    "OperationRow",
    "OwnerLock",
    "RequestRow",
    "RequestStatusRow",
    "RunInputRow",
    "RunRow",
    "RunnerProcessRow",
    "SchemaRow",
    "SourceUseRow",
    "Store",
    "StoreWriter",
    "TaskRow",
    "TryRow",
    "is_owned",
    "run_from_row",
    "task_from_row",
]
