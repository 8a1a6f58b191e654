"""What only the SQLite backend has: its URL, its durability mode, its write queue."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from support.bodies import STAR_DESTROYER

from fleet_api.store import open_store
from fleet_api.store.sqlite import SQLiteStore, parse_url

WAIT = 30.0
TRIALS = 30  # rounds of two processes opening a new database at once


def test_a_relative_and_an_absolute_path_are_both_understood():
    assert str(parse_url("sqlite:///var/fleet.db")[0]) == "var/fleet.db"
    assert str(parse_url("sqlite:////tmp/fleet.db")[0]) == "/tmp/fleet.db"


def test_commits_are_fsynced_unless_the_url_says_otherwise(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    full = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    normal = open_store(f"sqlite:///{tmp_path / 'b.db'}?synchronous=normal")
    try:
        synced.clear()
        full.create_ship(STAR_DESTROYER)
        assert synced == [str(tmp_path / "a.db-wal")]  # once, before create_ship returned
        normal.create_ship(STAR_DESTROYER)
        assert synced == [str(tmp_path / "a.db-wal")]
        assert full._db().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        full.close()
        normal.close()


@pytest.mark.parametrize(
    "url", ["sqlite:///", "sqlite:///x.db?synchronous=off", "sqlite:///x.db?cache=1", "sqlite:/x.db"]
)
def test_a_bad_url_is_refused_at_start(url):
    with pytest.raises(ValueError):
        parse_url(url)


def test_writers_from_many_threads_queue_and_none_is_lost(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    ship = {
        "affiliation": "a",
        "category": "c",
        "crew": 1,
        "length": 1,
        "manufacturer": "m",
        "model": "x",
        "roles": [],
        "ship_class": "s",
    }
    ids: list[int] = []

    def create_ten():
        for _ in range(10):
            ids.append(store.create_ship(ship)["id"])

    threads = [threading.Thread(target=create_ten) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(set(ids)) == 80
        assert store.ships_version() == 80  # one bump per committed write
    finally:
        store.close()


@pytest.fixture
def traced_store(tmp_path):
    """A SQLite store and the list of statements its writer connection runs."""
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    statements: list[str] = []
    store._group._connection().set_trace_callback(statements.append)
    yield store, statements
    store.close()


def _updates(statements: list[str]) -> list[str]:
    # SQLite traces a statement again at each trigger it runs: each one once.
    return list(dict.fromkeys(statement for statement in statements if statement.startswith("UPDATE ships")))


def test_an_update_sets_only_the_columns_that_change(traced_store):
    # SQLite rewrites the index entries of every column a SET names, so a
    # crew-only change must not name affiliation or length (both indexed).
    store, statements = traced_store
    ship = store.create_ship(STAR_DESTROYER)
    fields = {**STAR_DESTROYER, "crew": 40000, "roles": ["Destroyer"]}
    statements.clear()
    assert store.update_ship(ship["id"], fields) == {**fields, "id": ship["id"]}
    assert _updates(statements) == [
        f"UPDATE ships SET crew = 40000, roles = '[\"Destroyer\"]' WHERE id = {ship['id']}"
        " RETURNING id, affiliation, category, crew, length, manufacturer, model, roles, ship_class"
    ]
    assert store.get_ship(ship["id"]) == {**fields, "id": ship["id"]}


def test_an_update_that_changes_nothing_writes_nothing(traced_store):
    store, statements = traced_store
    ship = store.create_ship(STAR_DESTROYER)
    version = store.ships_version()
    statements.clear()
    assert store.update_ship(ship["id"], dict(STAR_DESTROYER)) == ship
    assert _updates(statements) == []
    assert store.ships_version() == version  # so no cached page of the ships goes stale


def test_an_update_of_every_column_stores_every_column(traced_store):
    store, _ = traced_store
    ship = store.create_ship(STAR_DESTROYER)
    fields = {
        "ship_class": "c", "model": "m", "affiliation": "a", "category": "k",
        "crew": 1, "length": 2, "manufacturer": "f", "roles": [],
    }  # fmt: skip
    assert store.update_ship(ship["id"], fields) == {**fields, "id": ship["id"]}
    assert store.get_ship(ship["id"]) == {**fields, "id": ship["id"]}


def _first_connection(path: str, barrier, answers) -> None:
    """A worker's first connection to a new database, all of them at once."""
    store = SQLiteStore.__new__(SQLiteStore)  # only the connection, not the schema
    store.path = Path(path)
    barrier.wait(WAIT)
    try:
        db = store._connect()
        answers.put(db.execute("PRAGMA journal_mode").fetchone()[0])
    except Exception as exc:  # the outcome is what we test
        answers.put(repr(exc))


def test_workers_opening_a_new_database_at_once_all_get_wal(tmp_path):
    """SQLite refuses one of two processes turning a new file to WAL at once
    ("database is locked", busy_timeout or not), which stopped a booting
    server; most of these rounds hit that race without the lock around it."""
    context = multiprocessing.get_context("fork")
    for trial in range(TRIALS):
        path = str(tmp_path / f"new-{trial}.db")
        barrier, answers = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_first_connection, args=(path, barrier, answers)) for _ in range(2)]
        for worker in workers:
            worker.start()
        got = [answers.get(timeout=WAIT) for _ in workers]
        for worker in workers:
            worker.join(WAIT)
        assert got == ["wal", "wal"], f"round {trial}: {got}"
