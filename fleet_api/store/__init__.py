"""Store backends, chosen by URL (`FLEET_STORE`), and seeding from data.json."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleet_api.store.base import (
    ListQuery,
    NameTaken,
    Page,
    PreconditionFailed,
    Rotation,
    SessionRecord,
    Ship,
    Store,
    TokenId,
    User,
)

__all__ = ["ListQuery", "NameTaken", "Page", "PreconditionFailed", "Ship", "Store", "User", "open_store"]
__all__ += ["Rotation", "SessionRecord", "TokenId"]


def open_store(url: str, clock: Callable[[], float] = time.time) -> Store:
    """Open the backend that `url` names: memory://, sqlite:///path, postgresql://...
    `clock` (epoch seconds) is the time the store reads where no caller passes one."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from fleet_api.store.memory import MemoryStore

        return MemoryStore(clock)
    if scheme == "sqlite":
        from fleet_api.store.sqlite import SQLiteStore

        return SQLiteStore(url, clock)
    if scheme in ("postgresql", "postgres"):
        from fleet_api.store.postgres import PostgresStore

        return PostgresStore(url, clock)
    raise ValueError(f"unsupported store URL {url!r}: use memory://, sqlite:///path or postgresql://...")
