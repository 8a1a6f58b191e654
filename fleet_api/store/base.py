"""The store interface every backend implements.

Resources and the auth middleware hold a `Store` and never know which backend
it is. Each method is one atomic operation: backends make it so with a lock
(memory) or a transaction (SQLite, PostgreSQL).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

SHIP_FIELDS = (
    "affiliation",
    "category",
    "crew",
    "length",
    "manufacturer",
    "model",
    "roles",
    "ship_class",
)


class NameTaken(Exception):
    """A user with this name already exists."""


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    # Bumped on every password change: tokens carry the version they were
    # issued under, so older ones stop working on every worker at once ...
    token_version: int = 0
    # ... except the one access token that made the change.
    kept_jti: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


Ship = dict[str, Any]


class Store(abc.ABC):
    """Users, ships and revoked token ids, shared by everything in one app."""

    # --- users -------------------------------------------------------------
    @abc.abstractmethod
    def list_users(self) -> list[User]: ...

    @abc.abstractmethod
    def get_user(self, user_id: int) -> User | None: ...

    @abc.abstractmethod
    def get_user_by_name(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def create_user(self, name: str, password_hash: str) -> User:
        """Raise NameTaken when the name is in use."""

    @abc.abstractmethod
    def update_user(
        self,
        user_id: int,
        name: str,
        password_hash: str | None = None,
        kept_jti: str | None = None,
    ) -> User | None:
        """Rename, and when `password_hash` is given change the password.

        A password change bumps `token_version` and records `kept_jti`.
        Returns None when the user does not exist; raises NameTaken.
        """

    @abc.abstractmethod
    def delete_user(self, user_id: int) -> bool: ...

    # --- ships -------------------------------------------------------------
    @abc.abstractmethod
    def list_ships(self) -> list[Ship]: ...

    @abc.abstractmethod
    def get_ship(self, ship_id: int) -> Ship | None: ...

    @abc.abstractmethod
    def create_ship(self, fields: Ship) -> Ship: ...

    @abc.abstractmethod
    def update_ship(self, ship_id: int, fields: Ship) -> Ship | None: ...

    @abc.abstractmethod
    def delete_ship(self, ship_id: int) -> bool: ...

    # --- token blocklist ---------------------------------------------------
    @abc.abstractmethod
    def revoke_token(self, jti: str, expires_at: int) -> None:
        """Block `jti` until `expires_at` (epoch seconds), when it dies anyway."""

    @abc.abstractmethod
    def is_token_revoked(self, jti: str) -> bool: ...

    @abc.abstractmethod
    def purge_expired_tokens(self, now: int) -> int:
        """Forget revocations whose tokens have expired; return how many."""

    # --- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def is_empty(self) -> bool:
        """True when the store has never been seeded."""

    @abc.abstractmethod
    def seed(self, users: list[User], ships: list[Ship]) -> bool:
        """Load start-up data once, keeping its ids.

        Returns False without writing when the store was seeded before (even
        if every row has since been deleted), so many workers starting at
        once seed it exactly once, and a restart never resurrects deletions.
        """

    def close(self) -> None:  # pragma: no cover - backends with resources override
        pass


def ship_record(ship_id: int, fields: Ship) -> Ship:
    """A ship as the API shows it: the example's alphabetical key order."""
    record = {name: fields[name] for name in SHIP_FIELDS}
    record["id"] = ship_id
    return dict(sorted(record.items()))
