"""A small SQLite schema and write jobs for the group-commit and
shared-version tests: ships with the store's counter trigger, users with a
unique name."""

from __future__ import annotations

import contextlib
import sqlite3

from fleet_api.store.groupcommit import GroupCommit
from fleet_api.store.sharedversion import SharedVersion

WAIT = 10.0  # upper bound on any one wait

SCHEMA = """
CREATE TABLE IF NOT EXISTS ships (id INTEGER PRIMARY KEY, crew INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('ships', 0);
CREATE TRIGGER IF NOT EXISTS ships_inserted AFTER INSERT ON ships
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'ships'; END;
CREATE TRIGGER IF NOT EXISTS ships_updated AFTER UPDATE ON ships
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'ships'; END;
"""


def make_db(folder):
    """A database with three ships (so the counter starts at 3) and no users."""
    path = folder / "fleet.db"
    # Closed: a process that forks with a connection to the file open makes
    # SQLite's per-process lock bookkeeping wrong in the child.
    with contextlib.closing(connect(path)) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO ships (id, crew) VALUES (?, ?)", [(1, 10), (2, 20), (3, 30)])
    return path


def connect(path, synchronous="full") -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=WAIT)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db


def ships_counter(db: sqlite3.Connection) -> int:
    return db.execute("SELECT value FROM counters WHERE name = 'ships'").fetchone()[0]


def make_group(path, connection=None) -> GroupCommit:
    return GroupCommit(
        connection or (lambda: connect(path)),
        f"{path}.lock",
        SharedVersion(f"{path}.version"),
        ships_counter,
    )


def read(path, sql, params=()):
    """What any other process would read now."""
    db = sqlite3.connect(path, timeout=WAIT)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def set_crew(ship_id, crew):
    return lambda db: db.execute(
        "UPDATE ships SET crew = ? WHERE id = ? RETURNING crew", (crew, ship_id)
    ).fetchone()[0]


def add_user(name):
    return lambda db: db.execute("INSERT INTO users (name) VALUES (?) RETURNING id", (name,)).fetchone()[0]


class Recording:
    """A writer connection that logs its COMMITs, and can be made to fail
    them as a full disk would."""

    def __init__(self, db, events, fail_commit=False):
        self._db, self._events, self._fail_commit = db, events, fail_commit

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._events.append("commit")
            if self._fail_commit:
                raise sqlite3.OperationalError("database or disk is full")
            result = self._db.execute(sql, *args)
            self._events.append("committed")
            return result
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)
