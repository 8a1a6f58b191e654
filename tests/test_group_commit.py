"""Group commit (fleet_api/store/groupcommit.py) on a real SQLite file.

The writes of one process that arrive while a commit is running share the
next transaction, each in its own savepoint: one write's failure fails that
write only, every caller returns only after its group's COMMIT, and a failed
COMMIT fails them all. To make a group deterministic, a first job holds the
leader on an Event while the other writers queue behind it.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from support.bodies import STAR_DESTROYER
from support.groups import (
    WAIT,
    Recording,
    add_user,
    connect,
    make_db,
    make_group,
    read,
    set_crew,
    ships_counter,
)
from support.race import race

from fleet_api.store import NameTaken, PreconditionFailed, open_store
from fleet_api.store.groupcommit import GroupCommit
from fleet_api.store.sharedversion import SharedVersion
from fleet_api.store.writestats import WriteStats


@pytest.fixture
def path(tmp_path):
    return make_db(tmp_path)


@pytest.fixture
def group(path):
    group = make_group(path)
    yield group
    group.close()


class Queued:
    """Hold the leader inside a first job while `calls` (each calls
    group.run itself) queue up behind it, in order, then let go: they run as
    one group. Results are (ok, value|error)."""

    def __init__(self, group: GroupCommit, calls: dict):
        self.group = group
        self.calls = calls
        self.results: dict[str, tuple[bool, object]] = {}
        self.release = threading.Event()
        self.leading = threading.Event()

    def _hold(self, db):
        self.leading.set()
        assert self.release.wait(WAIT)
        return "held"

    def run(self) -> int:
        """Run them; the number of groups committed meanwhile."""
        groups_before = self.group.groups
        holder = threading.Thread(target=self._one, args=("(holder)", lambda: self.group.run(self._hold)))
        holder.start()
        assert self.leading.wait(WAIT)
        threads = []
        for item in self.calls.items():
            threads.append(threading.Thread(target=self._one, args=item))
            threads[-1].start()
            self._until_queued(len(threads))
        self.release.set()
        for thread in [holder, *threads]:
            thread.join(WAIT)
            assert not thread.is_alive()
        return self.group.groups - groups_before

    def _until_queued(self, count: int) -> None:
        for _ in range(1000):  # bounded: ~10 s
            with self.group._mutex:
                if len(self.group._queue) == count:
                    return
            threading.Event().wait(0.01)
        pytest.fail(f"{count} writers never queued")

    def _one(self, name, call):
        try:
            self.results[name] = (True, call())
        except BaseException as exc:  # the outcome is what we test
            self.results[name] = (False, exc)


def jobs(group: GroupCommit, **named) -> dict:
    """Calls that each run one job through `group`."""
    return {name: (lambda job=job: group.run(job)) for name, job in named.items()}


def test_a_lone_write_commits_at_once_in_a_group_of_its_own(group, path):
    assert group.run(set_crew(1, 11)) == 11
    assert (group.groups, group.jobs) == (1, 1)
    assert read(path, "SELECT crew FROM ships WHERE id = 1") == [(11,)]


def test_writes_that_queue_during_a_commit_share_the_next_one(group, path):
    queued = Queued(group, jobs(group, **{f"put{i}": set_crew(1 + i % 3, 100 + i) for i in range(6)}))
    assert queued.run() == 2  # the holder's group, then one for all six
    assert group.jobs == 7
    assert all(ok for ok, _ in queued.results.values()), queued.results
    assert dict(read(path, "SELECT id, crew FROM ships")) == {1: 103, 2: 104, 3: 105}


def test_one_failing_write_in_a_group_fails_only_that_write(group, path):
    group.run(add_user("taken"))

    def half_then_fail(db):
        db.execute("INSERT INTO users (name) VALUES ('ghost')")
        raise RuntimeError("boom")

    queued = Queued(
        group,
        jobs(
            group,
            put=set_crew(1, 1),
            name_taken=add_user("taken"),
            new_user=add_user("fresh"),
            error=half_then_fail,
            put_too=set_crew(3, 3),
        ),
    )
    assert queued.run() == 2
    r = queued.results
    assert r["put"] == (True, 1) and r["put_too"] == (True, 3)
    assert not r["name_taken"][0] and isinstance(r["name_taken"][1], sqlite3.IntegrityError)
    assert r["new_user"][0]
    assert not r["error"][0] and str(r["error"][1]) == "boom"
    assert dict(read(path, "SELECT id, crew FROM ships")) == {1: 1, 2: 20, 3: 3}
    # no 'ghost': the failed job's own insert was rolled back with it
    assert {name for (name,) in read(path, "SELECT name FROM users")} == {"taken", "fresh"}


def test_a_lone_failing_write_is_rolled_back_and_its_error_is_raised(group, path):
    def half_then_fail(db):
        db.execute("UPDATE ships SET crew = 0 WHERE id = 1")
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        group.run(half_then_fail)
    assert read(path, "SELECT crew FROM ships WHERE id = 1") == [(10,)]
    assert group.run(set_crew(1, 12)) == 12  # and the next write goes on


def test_an_error_that_rolls_back_the_whole_transaction_fails_the_jobs_before_it(group, path):
    """SQLite undoes the whole transaction on some errors (SQLITE_FULL, IOERR):
    the jobs before it lost their writes, so they fail too; the rest commit."""

    def lose_the_transaction(db):
        db.execute("ROLLBACK")  # what SQLite itself does on such an error
        raise sqlite3.OperationalError("database or disk is full")

    queued = Queued(
        group, jobs(group, before=set_crew(1, 1), full=lose_the_transaction, after=set_crew(2, 2))
    )
    assert queued.run() == 2
    r = queued.results
    assert not r["before"][0] and "disk is full" in str(r["before"][1])
    assert not r["full"][0] and "disk is full" in str(r["full"][1])
    assert r["after"] == (True, 2)
    assert dict(read(path, "SELECT id, crew FROM ships")) == {1: 10, 2: 2, 3: 30}


def test_when_the_commit_fails_every_write_of_the_group_fails_and_none_is_kept(path):
    group = make_group(path, lambda: Recording(connect(path), [], fail_commit=True))
    try:
        queued = Queued(
            group, jobs(group, **{f"put{i}": set_crew(1, 7 + i) for i in range(3)}, new=add_user("x"))
        )
        queued.run()
        assert set(queued.results) == {"(holder)", "put0", "put1", "put2", "new"}
        assert all(not ok and "disk is full" in str(err) for ok, err in queued.results.values())
        assert read(path, "SELECT crew FROM ships WHERE id = 1") == [(10,)]
        assert read(path, "SELECT count(*) FROM users") == [(0,)]
        # The version is stable again, at what is on disk.
        assert group._version.read() == read(path, "SELECT value FROM counters WHERE name = 'ships'")[0][0]
    finally:
        group.close()


def test_every_writer_returns_only_after_its_groups_commit(path):
    events: list[str] = []
    group = make_group(path, lambda: Recording(connect(path), events))
    seen = {}

    def put(i):
        group.run(set_crew(1 + i, 1000 + i))
        events.append(f"returned {i}")
        # What any other process would read the moment we answer.
        seen[i] = read(path, "SELECT crew FROM ships WHERE id = ?", (1 + i,))[0][0]

    try:
        Queued(group, {f"put{i}": (lambda i=i: put(i)) for i in range(3)}).run()
        assert seen == {0: 1000, 1: 1001, 2: 1002}
        assert events[:4] == ["commit", "committed", "commit", "committed"]  # the holder's, then theirs
        assert sorted(events[4:]) == ["returned 0", "returned 1", "returned 2"]
        # synchronous=FULL on the writer: its COMMIT returns after the WAL's fsync.
        assert group._db.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        group.close()


def test_many_threads_writing_at_once_lose_nothing(group, path):
    def writer(t):
        for i in range(25):
            group.run(add_user(f"t{t}-{i}"))
            group.run(set_crew(1 + t % 3, t * 100 + i))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert read(path, "SELECT count(*) FROM users") == [(200,)]
    assert group.jobs == 400 and 1 <= group.groups <= 400
    seeded = 3  # the fixture's inserts
    assert read(path, "SELECT value FROM counters WHERE name = 'ships'") == [(seeded + 200,)]
    assert group._version.read() == seeded + 200


def test_a_job_that_writes_again_runs_inside_its_own_transaction(group, path):
    def outer(db):
        db.execute("INSERT INTO users (name) VALUES ('outer')")
        group.run(add_user("inner"))  # through the store again, from the leader's thread
        raise RuntimeError("undo both")

    with pytest.raises(RuntimeError):
        group.run(outer)
    assert read(path, "SELECT count(*) FROM users") == [(0,)]
    group.run(lambda db: (db.execute("INSERT INTO users (name) VALUES ('a')"), group.run(add_user("b"))))
    assert read(path, "SELECT name FROM users ORDER BY name") == [("a",), ("b",)]
    assert group.groups == 1


def test_an_interrupt_in_a_job_fails_its_group_and_reaches_its_own_caller(group, path):
    def interrupted(db):
        db.execute("UPDATE ships SET crew = 0")
        raise KeyboardInterrupt

    queued = Queued(group, jobs(group, put=set_crew(2, 2), interrupted=interrupted))
    queued.run()
    r = queued.results
    assert not r["interrupted"][0] and isinstance(r["interrupted"][1], KeyboardInterrupt)
    assert not r["put"][0] and isinstance(r["put"][1], KeyboardInterrupt)
    assert dict(read(path, "SELECT id, crew FROM ships")) == {1: 10, 2: 20, 3: 30}
    assert group.run(set_crew(2, 22)) == 22  # the next group runs


def _write_from_a_process(path, name, count):
    group = make_group(path)

    def writer(t):
        for i in range(count):
            group.run(add_user(f"{name}-{t}-{i}"))
            group.run(set_crew(1, i))

    results = race(writer, count=4)  # a hung or failed writer is this process's failure
    group.close()
    os._exit(0 if not any(isinstance(result, Exception) for result in results) else 1)


def test_processes_commit_their_groups_in_turn_and_lose_nothing(path):
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_write_from_a_process, args=(path, f"p{n}", 30)) for n in range(3)]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join(120)
            assert child.exitcode == 0
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join(WAIT)
    assert read(path, "SELECT count(*) FROM users") == [(3 * 4 * 30,)]
    seeded = 3  # the fixture's inserts
    assert read(path, "SELECT value FROM counters WHERE name = 'ships'") == [(seeded + 3 * 4 * 30,)]
    assert read(path, "PRAGMA integrity_check") == [("ok",)]
    version = SharedVersion(f"{path}.version")
    assert version.read() == seeded + 3 * 4 * 30
    version.close()


# --- through the SQLite store: every write is a job of the group commit -------


@pytest.fixture
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    store.seed([], [{"id": i, **STAR_DESTROYER} for i in (1, 2, 3)])
    yield store
    store.close()


def test_the_stores_writes_share_groups_and_each_gets_its_own_answer(store):
    store.create_user("taken", "hash")

    def half_then_fail(db):
        db.execute("INSERT INTO users (name, password_hash) VALUES ('ghost', 'h')")
        raise RuntimeError("boom")

    calls = {
        "put": lambda: store.update_ship(1, {**STAR_DESTROYER, "crew": 1}),
        "if_match_fails": lambda: store.update_ship(2, {**STAR_DESTROYER, "crew": 2}, lambda current: False),
        "if_match_holds": lambda: store.update_ship(3, {**STAR_DESTROYER, "crew": 3}, lambda current: True),
        "name_taken": lambda: store.create_user("taken", "hash"),
        "new_user": lambda: store.create_user("fresh", "hash"),
        "error": lambda: store._write(half_then_fail),
        "missing": lambda: store.update_ship(99, {**STAR_DESTROYER, "crew": 4}),
        "delete": lambda: store.delete_ship(2, lambda current: current["crew"] == STAR_DESTROYER["crew"]),
    }
    queued = Queued(store._group, calls)
    assert queued.run() == 2  # the holder's group, then one for all eight
    r = queued.results
    assert r["put"][0] and r["put"][1]["crew"] == 1
    assert not r["if_match_fails"][0] and isinstance(r["if_match_fails"][1], PreconditionFailed)
    assert r["if_match_holds"][0] and r["if_match_holds"][1]["crew"] == 3
    assert not r["name_taken"][0] and isinstance(r["name_taken"][1], NameTaken)
    assert r["new_user"][0] and r["new_user"][1].name == "fresh"
    assert not r["error"][0] and str(r["error"][1]) == "boom"
    assert r["missing"] == (True, None)
    assert r["delete"] == (True, True)  # after the failed If-Match on ship 2: it saw the ship unchanged
    crews = dict(read(store.path, "SELECT id, crew FROM ships"))
    assert crews == {1: 1, 3: 3}
    assert {name for (name,) in read(store.path, "SELECT name FROM users")} == {"taken", "fresh"}
    assert store.ships_version() == read(store.path, "SELECT value FROM counters WHERE name = 'ships'")[0][0]


def test_the_stores_writer_connection_leaves_the_fsync_to_the_group(tmp_path):
    full = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    normal = open_store(f"sqlite:///{tmp_path / 'b.db'}?synchronous=normal")
    try:
        # SQLite's NORMAL in both: no fsync inside COMMIT (under the lock); with
        # the default the group fsyncs the WAL after it (tests/test_walsync.py).
        assert full._group._db.execute("PRAGMA synchronous").fetchone() == (1,)
        assert full._group._sync is not None
        assert normal._group._db.execute("PRAGMA synchronous").fetchone() == (1,)
        assert normal._group._sync is None
        assert full._group._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        full.close()
        normal.close()


def test_the_store_used_after_close_writes_again(store):
    store.close()
    assert store.update_ship(1, {**STAR_DESTROYER, "crew": 5})["crew"] == 5
    assert store.ships_version() == read(store.path, "SELECT value FROM counters WHERE name = 'ships'")[0][0]


# Each child writes crews no other write uses, so every update changes the
# row (one that changes nothing writes nothing, and moves no counter).
WRITE_IN_A_CHILD = """
import sys
from fleet_api.store import open_store
store = open_store(sys.argv[1])
for crew in range(int(sys.argv[2])):
    store.update_ship(1, {**eval(sys.argv[3]), "crew": int(sys.argv[4]) + crew})
store.close()
"""


def test_worker_processes_writing_at_once_through_their_stores_lose_nothing(store):
    """Like gunicorn's workers: separate processes (none forked with the
    database open), each with its own group commit, on one file."""
    before = store.ships_version()
    url = f"sqlite:///{store.path}"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE_IN_A_CHILD, url, "40", repr(STAR_DESTROYER), str(1000 * n)]
        )
        for n in range(1, 4)
    ]
    try:
        assert [child.wait(120) for child in children] == [0, 0, 0]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(WAIT)
    assert store.ships_version() == before + 120  # seen here without a query
    assert read(store.path, "SELECT value FROM counters WHERE name = 'ships'") == [(before + 120,)]
    assert read(store.path, "PRAGMA integrity_check") == [("ok",)]


class StepClock:
    """perf_counter_ns standing in: each reading is `step` ns after the last."""

    def __init__(self, step: int) -> None:
        self.now, self.step = 0, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def counted_group(path, clock=None) -> GroupCommit:
    return GroupCommit(
        lambda: connect(path),
        f"{path}.lock",
        SharedVersion(f"{path}.version"),
        ships_counter,
        stats=WriteStats(f"{path}.stats"),
        clock=clock or StepClock(1_000),
    )


def _fail_with_integrity_error(db):
    db.execute("INSERT INTO ships (id, crew) VALUES (1, 0)")  # id 1 exists


def test_write_stats_count_each_hold_of_the_lock_its_wait_and_what_it_held(path):
    group = counted_group(path, StepClock(1_000))
    try:
        group.run(set_crew(1, 11))
        # asked, taken, released: 1 µs waited, 1 µs held
        assert WriteStats(f"{path}.stats").read() == {
            "lock_holds": 1,
            "commits": 1,
            "writes": 1,
            "lock_wait_seconds": 1e-6,
            "lock_held_seconds": 1e-6,
        }
    finally:
        group.close()


def test_write_stats_count_the_lock_but_no_commit_for_a_write_that_failed(path):
    group = counted_group(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            group.run(_fail_with_integrity_error)
        stats = WriteStats(f"{path}.stats").read()
        assert (stats["lock_holds"], stats["commits"], stats["writes"]) == (1, 0, 0)
    finally:
        group.close()


def test_write_stats_count_the_writes_a_commit_shared_and_not_the_failed_one(path):
    group = counted_group(path)
    try:
        queued = Queued(
            group,
            jobs(group, put=set_crew(1, 1), taken=_fail_with_integrity_error, put_too=set_crew(2, 2)),
        )
        assert queued.run() == 2  # the holder alone, then the three together
        stats = WriteStats(f"{path}.stats").read()
        assert (stats["lock_holds"], stats["commits"], stats["writes"]) == (2, 2, 3)
    finally:
        group.close()


def test_write_stats_are_the_hosts_summed_over_every_process(path):
    workers = [counted_group(path) for _ in range(2)]  # two processes' groups, one page
    try:
        workers[0].run(set_crew(1, 1))
        workers[1].run(set_crew(2, 2))
        workers[1].run(set_crew(3, 3))
        stats = WriteStats(f"{path}.stats").read()
        assert (stats["lock_holds"], stats["commits"], stats["writes"]) == (3, 3, 3)
        assert stats["lock_held_seconds"] == pytest.approx(3e-6)
    finally:
        for group in workers:
            group.close()


def test_write_stats_wrap_at_64_bits_instead_of_failing_the_write(path):
    stats = WriteStats(f"{path}.stats")
    stats.held(2**64 - 1, 0)
    stats.held(2, 0)
    assert stats.read()["lock_wait_seconds"] == 1e-9  # wrapped: (2**64 - 1 + 2) mod 2**64 ns
