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
