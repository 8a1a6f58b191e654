"""Store backends, chosen by URL (`FLEET_STORE`), and seeding from data.json."""

from __future__ import annotations

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


def open_store(url: str) -> Store:
    """Open the backend that `url` names: memory://, sqlite:///path, postgresql://..."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from fleet_api.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from fleet_api.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from fleet_api.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use memory://, sqlite:///path or postgresql://...")
