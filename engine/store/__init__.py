"""SQLite state store: schema, named queries, the batched writer, the owner lock."""

from .lock import OwnerLock, is_owned
from .store import Durability, Store, run_from_row, task_from_row
from .writer import StoreWriter

__all__ = [
    "Durability",
    "OwnerLock",
    "Store",
    "StoreWriter",
    "is_owned",
    "run_from_row",
    "task_from_row",
]
