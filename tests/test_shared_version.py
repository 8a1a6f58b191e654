"""The ships version in shared memory (fleet_api/store/sharedversion.py).

Every process of a host maps `<db>.version`; a writer marks it in flight
before a COMMIT that moves the ships counter and publishes the counter
after, so a reader anywhere either gets the counter of the last commit or
None (read the store, cache nothing).
"""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from support.groups import WAIT, Recording, add_user, connect, make_db, make_group, set_crew

from fleet_api.cache import VersionedCache
from fleet_api.store.sharedversion import SharedVersion


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
