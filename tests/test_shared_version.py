"""The ships version in shared memory (fleet_api/store/sharedversion.py).

Every process of a host maps `<db>.version`; a writer marks it in flight
before a COMMIT that moves the ships counter and publishes the counter
after, so a reader anywhere either gets the counter of the last commit or
None (read the store, cache nothing).
"""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
import subprocess
import sys

import falcon.testing
import pytest
from support.groups import WAIT, Recording, add_user, connect, make_db, make_group, read, set_crew

from fleet_api.app import create_app
from fleet_api.cache import VersionedCache
from fleet_api.settings import Settings
from fleet_api.store import open_store
from fleet_api.store.sharedversion import SharedVersion, VersionedEntries


@pytest.fixture
def two(tmp_path):
    """Two mappings of one file, as two processes hold them."""
    a, b = SharedVersion(str(tmp_path / "v")), SharedVersion(str(tmp_path / "v"))
    yield a, b
    a.close()
    b.close()


def test_a_new_file_reads_zero_and_a_commit_in_flight_reads_none(two):
    a, b = two
    assert a.read() == b.read() == 0
    assert a.begin(5)
    assert a.read() is None and b.read() is None
    a.end(5)
    assert a.read() == b.read() == 5


def test_an_unchanged_counter_moves_nothing(two):
    a, b = two
    a.begin(7)
    a.end(7)
    assert not b.begin(7)  # e.g. a commit that wrote users only
    assert a.read() == 7


def test_a_writer_killed_in_flight_leaves_readers_on_the_store_until_the_next_commit(two):
    a, b = two
    a.begin(3)  # ... and killed before end()
    assert b.read() is None
    assert b.begin(3)  # the next writer finds the bit set even though the counter is the same
    b.end(3)
    assert a.read() == 3


def _publish_in_a_child(path, steps, done):
    version = SharedVersion(path)
    version.begin(41)
    steps.put("in flight")
    assert done.wait(WAIT)
    version.end(42)
    steps.put("ended")
    version.close()


def test_another_process_sees_the_bit_and_the_new_version_at_once(tmp_path):
    path = str(tmp_path / "v")
    mine = SharedVersion(path)
    ctx = multiprocessing.get_context("fork")
    steps, done = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_publish_in_a_child, args=(path, steps, done))
    child.start()
    try:
        assert steps.get(timeout=WAIT) == "in flight"
        assert mine.read() is None
        done.set()
        assert steps.get(timeout=WAIT) == "ended"
        assert mine.read() == 42
        child.join(WAIT)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(WAIT)
        mine.close()


def test_the_cache_keeps_nothing_while_the_version_is_none():
    versions = iter([None, None, 1, 1, 2])
    cache = VersionedCache(lambda: next(versions))
    built = []

    def build():
        built.append(len(built))
        return len(built)

    assert [cache.get("k", build) for _ in range(5)] == [1, 2, 3, 3, 4]
    assert built == [0, 1, 2, 3]


def test_kept_entries_hold_for_one_version_a_newer_starts_afresh_an_older_keeps_nothing():
    entries = VersionedEntries(limit=2)
    entries.keep(1, "a", "a1")
    assert entries.find("a") == (1, "a1")
    entries.keep(2, "b", "b2")
    assert entries.find("a") == (2, None) and entries.find("b") == (2, "b2")
    entries.keep(1, "a", "stale")  # built before the write that moved the version to 2
    assert entries.find("a") == (2, None)
    entries.keep(2, "c", "c2")
    entries.keep(2, "d", "d2")  # over the limit: starts afresh, so later entries are still kept
    assert [entries.find(k)[1] for k in "bcd"] == [None, None, "d2"]


@pytest.fixture
def path(tmp_path):
    return make_db(tmp_path)


def test_a_commit_that_moves_ships_is_in_flight_for_other_processes_until_it_returned(path):
    """Another process reading during the COMMIT gets None; after it, the counter."""
    other = SharedVersion(f"{path}.version")
    during = []

    class Watching(Recording):
        def execute(self, sql, *args):
            if sql == "COMMIT":
                during.append(other.read())
            return super().execute(sql, *args)

    group = make_group(path, lambda: Watching(connect(path), []))
    try:
        group.run(set_crew(1, 11))
        assert during == [None]
        assert other.read() == 4  # three inserts, then this update
        group.run(add_user("only a user"))
        assert during == [None, 4]  # users only: the version never went in flight
        assert other.read() == 4
    finally:
        group.close()
        other.close()


def test_a_database_that_changed_behind_the_file_is_published_by_the_next_commit(path):
    """A version file left from an earlier database, or a write by another
    program (the sqlite3 shell): the next commit of any kind publishes it."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE ships SET crew = 99")  # three rows: counter 6 now, the file still says 0
    group = make_group(path)
    try:
        assert group._version.read() == 0
        group.run(add_user("any write"))
        assert group._version.read() == 6
    finally:
        group.close()


# --- the SQLite store and the app's cache ------------------------------------


@pytest.fixture
def app_store(tmp_path):
    """An app (one worker's) on a SQLite file, and its store."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = open_store(url)
    settings = Settings(secret_key=secrets.token_urlsafe(48), store_url=url, scrypt_n=16)
    client = falcon.testing.TestClient(create_app(settings, store=store))
    yield client, store
    store.close()


def statements(store) -> list[str]:
    """Every statement this thread's connections run from now on (reader and writer)."""
    seen: list[str] = []
    store._db().set_trace_callback(seen.append)
    store._group._db.set_trace_callback(seen.append)
    return seen


def test_reading_the_ships_version_runs_no_sql(app_store):
    client, store = app_store
    version = store.ships_version()
    assert version == read(store.path, "SELECT value FROM counters WHERE name = 'ships'")[0][0]
    client.simulate_get("/api/ships/2")  # now cached
    seen = statements(store)
    for _ in range(50):
        assert store.ships_version() == version
        assert client.simulate_get("/api/ships/2").status_code == 200
    assert seen == []


WRITE_IN_ANOTHER_PROCESS = """
import sys
from fleet_api.store import open_store
store = open_store(sys.argv[1])
ship = store.get_ship(2)
del ship["id"]
store.update_ship(2, {**ship, "crew": int(sys.argv[2])})
store.close()
"""


def test_a_write_in_another_process_is_seen_by_the_next_cached_read(app_store):
    client, store = app_store
    before = client.simulate_get("/api/ships/2").json
    listed = client.simulate_get("/api/ships").json
    assert client.simulate_get("/api/ships/2").json == before  # cached now
    other = subprocess.run(
        [sys.executable, "-c", WRITE_IN_ANOTHER_PROCESS, f"sqlite:///{store.path}", str(before["crew"] + 1)],
        timeout=60,
        check=True,
    )
    assert other.returncode == 0
    assert client.simulate_get("/api/ships/2").json == {**before, "crew": before["crew"] + 1}
    assert client.simulate_get("/api/ships").json != listed


def test_while_a_commit_is_in_flight_reads_come_from_the_store_and_nothing_is_kept(app_store):
    client, store = app_store
    client.simulate_get("/api/ships/2")
    other = SharedVersion(f"{store.path}.version")  # another process, about to COMMIT
    counter = store.ships_version()
    assert other.begin(counter + 1)
    with sqlite3.connect(store.path) as db:  # its commit becomes visible before it publishes
        db.execute("UPDATE ships SET crew = 4242 WHERE id = 2")
    seen = statements(store)
    assert store.ships_version() is None
    assert client.simulate_get("/api/ships/2").json["crew"] == 4242
    assert client.simulate_get("/api/ships/2").json["crew"] == 4242
    assert sum("FROM ships WHERE id" in sql for sql in seen) == 2  # both from the store
    other.end(counter + 1)
    other.close()
    assert store.ships_version() == counter + 1
    assert client.simulate_get("/api/ships/2").json["crew"] == 4242
