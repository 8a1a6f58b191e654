"""Start-up data from data.json, with passwords hashed before they are stored."""

from __future__ import annotations

from pathlib import Path

import orjson

from fleet_api.passwords import PasswordHasher
from fleet_api.schemas import ShipIn, UserIn, validate
from fleet_api.store import Store, User


def seed_store(store: Store, path: Path, hasher: PasswordHasher) -> bool:
    """Seed an empty store once; a store that holds data is left alone."""
    if not store.is_empty():
        return False
    data = orjson.loads(Path(path).read_bytes())
    users = []
    for raw in data.get("users", []):
        body = validate(UserIn, {"name": raw["name"], "password": raw["password"]})
        users.append(User(int(raw["id"]), body.name, hasher.hash(body.password)))
    ships = []
    for raw in data.get("ships", []):
        fields = {k: v for k, v in raw.items() if k != "id"}
        ships.append({"id": int(raw["id"]), **validate(ShipIn, fields).model_dump()})
    return store.seed(users, ships)
