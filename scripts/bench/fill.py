"""Bulk data for `BENCH_SCALE=N make bench`: N ships, many revoked token ids
and ~100 sessions per user, before any server starts.

The store object is made once through the app's own code, which creates its
schema (and whatever indexes it has by then), and seeds it with data.json's
users and ships (on SQLite plus the generated ones) in one `Store.seed` call.
The rest then goes in behind the store's back in one transaction each:
SQLite with executemany over generators, PostgreSQL with COPY (the generated
ships too, then its id sequence is moved past them). Revocations expire a
day from now and sessions in 30 days, so no sweep removes them during the
bench. The seed's ships 1..15 stay as they are; the new ones take 16..N.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from fleet_api.passwords import PasswordHasher
from fleet_api.seed import seed_store
from fleet_api.store import SessionRecord, Store, TokenId, open_store
from fleet_api.store.sql import SESSION_COLUMN_COUNT, SESSION_COLUMNS, session_values

SEED_SHIPS = 15
AFFILIATIONS = ("Empire", "Rebel Alliance", "Galactic Republic", "Separatists", "First Order", "Resistance")
CATEGORIES = ("Starfighters", "Capital Ships", "Transports", "Corvettes", "Shuttles")
MAKERS = (
    "Kuat Drive Yards",
    "Sienar Fleet Systems",
    "Incom Corporation",
    "Corellian Engineering Corporation",
)
ROLES = ("Space Superiority Starfighter", "Destroyer", "Carrier", "Transport", "Escort", "Patrol")
DAY = 86_400


@dataclasses.dataclass(frozen=True)
class Filled:
    ships: int
    revoked: int
    sessions: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.ships:,} ships, {self.revoked:,} revoked ids, {self.sessions:,} sessions "
            f"in {self.seconds:.1f} s"
        )


def ships(first: int, last: int, rng: random.Random) -> list[dict]:
    """Ships first..last, valid for ShipIn, in a mix of the seed's kinds."""
    return [
        {
            "id": ship_id,
            "affiliation": rng.choice(AFFILIATIONS),
            "category": rng.choice(CATEGORIES),
            "crew": rng.randint(1, 40_000),
            "length": rng.randint(5, 20_000),
            "manufacturer": rng.choice(MAKERS),
            "model": f"Model {ship_id:06d}",
            "roles": rng.sample(ROLES, rng.randint(1, 3)),
            "ship_class": f"Class {ship_id % 97}",
        }
        for ship_id in range(first, last + 1)
    ]


def jtis(count: int) -> list[str]:
    """Random uuid4-shaped ids, as the app makes them, sorted: appending to a
    B-tree in key order is far faster than inserting at random places, and
    the table ends up the same."""
    raw = os.urandom(16 * count)
    return sorted(str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, len(raw), 16))


class _WithShips:
    """Hands seed_store's own users and ships to the store with ours added,
    so the seed goes through the store's one seeding transaction."""

    def __init__(self, store: Store, extra: list[dict]) -> None:
        self._store, self._extra = store, extra

    def is_empty(self) -> bool:
        return self._store.is_empty()

    def seed(self, users, seed_ships) -> bool:
        self.users = users
        return self._store.seed(users, [*seed_ships, *self._extra])


def sessions(user_ids: list[int], per_user: int, now: float) -> Iterator[SessionRecord]:
    for user_id in user_ids:
        for i in range(per_user):
            created = now - DAY + i
            refresh = TokenId(str(uuid.uuid4()), int(created), int(created) + 30 * DAY)
            yield SessionRecord(
                id=secrets.token_urlsafe(16),  # what fleet_api.sessions makes
                user_id=user_id,
                created_at=created,
                last_used_at=created,
                expires_at=refresh.exp,
                user_agent="bench-fill/1.0",
                ip="127.0.0.1",
                refresh=refresh,
            )


def fill(
    url: str, ship_count: int, revoked: int, per_user: int, hasher: PasswordHasher, data: Path, seed: int = 12
) -> Filled:
    """Make the new store at `url` hold `ship_count` ships (the seed's
    included), `revoked` revocations and `per_user` sessions per user."""
    started = time.monotonic()
    now = time.time()
    extra = ships(SEED_SHIPS + 1, ship_count, random.Random(seed))
    sqlite = url.startswith("sqlite")
    store = open_store(url)
    try:
        # PostgreSQL's ships trigger fires per statement: 100,000 INSERTs would
        # each update the one counters row (and leave a dead version of it);
        # one COPY updates it once. SQLite's fires per row either way, cheaply.
        wrapper = _WithShips(store, extra if sqlite else [])
        if not seed_store(wrapper, data, hasher):
            raise RuntimeError(f"{url} is not a new store: the bench fills only its own")
        user_ids = [u.id for u in wrapper.users]
    finally:
        store.close()
    revocations = ((jti, int(now) + DAY) for jti in jtis(revoked))
    rows = (session_values(s) for s in sessions(user_ids, per_user, now))
    if sqlite:
        _fill_sqlite(url, revocations, rows)
    else:
        _fill_postgres(url, extra, revocations, rows)
    return Filled(ship_count, revoked, per_user * len(user_ids), time.monotonic() - started)


def _fill_sqlite(url: str, revocations, session_rows) -> None:
    from fleet_api.store.sqlite import parse_url

    path, _ = parse_url(url)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")  # one bulk load; the checkpoint below writes it out
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", revocations)
        marks = ", ".join("?" * SESSION_COLUMN_COUNT)
        db.executemany(f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks})", session_rows)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _fill_postgres(url: str, extra: list[dict], revocations, session_rows) -> None:
    import psycopg

    from fleet_api.store.base import SHIP_FIELDS
    from fleet_api.store.postgres import ADVANCE_SEQUENCE

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY ships (id, {', '.join(SHIP_FIELDS)}) FROM STDIN") as copy:
                for ship in extra:
                    copy.write_row([ship["id"], *(ship[name] for name in SHIP_FIELDS)])
            cur.execute(ADVANCE_SEQUENCE.format(table="ships"))  # new ships go on after N
            with cur.copy("COPY revoked_tokens (jti, expires_at) FROM STDIN") as copy:
                for row in revocations:
                    copy.write_row(row)
            with cur.copy(f"COPY sessions ({SESSION_COLUMNS}) FROM STDIN") as copy:
                for row in session_rows:
                    copy.write_row(row)
        # What autovacuum would do after a bulk load: fresh statistics for the planner.
        for table in ("ships", "revoked_tokens", "sessions"):
            conn.execute(f"VACUUM ANALYZE {table}")
