"""SQLite's durability with the fsync outside the write lock (store/walsync.py):
a write is answered after its fsync, the lock is free during it (another
process commits meanwhile, this one's next writes gather into one commit),
and a read that saw a commit whose fsync is still running is answered only
after it."""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
import threading

import falcon.testing
import pytest
from conftest import TEST_SCRYPT_N, Session
from support.bodies import STAR_DESTROYER

from devtools.processes import wait_for
from fleet_api.app import create_app
from fleet_api.settings import Settings
from fleet_api.store import open_store
from fleet_api.store.base import NameTaken
from fleet_api.store.walsync import BEGUN, DURABLE, WALSync

WAIT = 10.0  # upper bound on any one wait
STILL = 0.3  # how long a call that must wait is watched not returning


class Fsyncs:
    """os.fdatasync (what WALSync calls), counted; `hold()` keeps the next ones waiting until `release()`."""

    def __init__(self, real=os.fdatasync) -> None:
        self.real = real
        self.calls = 0
        self.entered = threading.Event()  # an fsync began while held
        self._open = threading.Event()
        self._open.set()
        self.lock_free: list[bool] = []  # was the write lock free, at each call
        self.lock_path: str | None = None

    def hold(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __call__(self, fd: int) -> None:
        if self.lock_path is not None:
            self.lock_free.append(_lock_is_free(self.lock_path))
        if not self._open.is_set():
            self.entered.set()
            assert self._open.wait(WAIT)
        self.calls += 1
        self.real(fd)


def _lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@pytest.fixture
def fsyncs(monkeypatch) -> Fsyncs:
    counted = Fsyncs()
    monkeypatch.setattr(os, "fdatasync", counted)
    return counted


@pytest.fixture
def store(tmp_path, fsyncs):
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    store.create_ship(STAR_DESTROYER)
    yield store
    fsyncs.release()
    store.close()


class Call(threading.Thread):
    """`fn()` in a thread of its own; `.result` / `.error` once joined."""

    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def finish(self):
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def crew_on_disk(store) -> int:
    """What a separate connection (any other process) reads now."""
    with sqlite3.connect(store.path) as db:
        return db.execute("SELECT crew FROM ships WHERE id = 1").fetchone()[0]


def test_the_write_lock_is_free_while_a_commit_is_fsynced(store, fsyncs):
    fsyncs.lock_path = f"{store.path}.lock"
    store.update_ship(1, {**STAR_DESTROYER, "crew": 2})
    assert fsyncs.lock_free == [True]


def test_a_write_returns_only_after_its_fsync(store, fsyncs):
    fsyncs.hold()
    write = Call(lambda: store.update_ship(1, {**STAR_DESTROYER, "crew": 2}))
    assert fsyncs.entered.wait(WAIT)
    write.join(STILL)
    assert write.is_alive()
    assert crew_on_disk(store) == 2  # committed, visible, not yet answered
    fsyncs.release()
    assert write.finish()["crew"] == 2


def test_another_process_commits_while_this_ones_fsync_runs(store, fsyncs):
    other = open_store(f"sqlite:///{store.path}")  # another worker: its own connections, flock and group
    try:
        fsyncs.hold()
        first = Call(lambda: store.update_ship(1, {**STAR_DESTROYER, "crew": 2}))
        assert fsyncs.entered.wait(WAIT)
        second = Call(lambda: other.update_ship(1, {**STAR_DESTROYER, "crew": 3}))
        # Its commit is made (the lock was free), but it is not answered before an fsync covers it.
        assert wait_for(lambda: crew_on_disk(store) == 3, WAIT)
        assert first.is_alive() and second.is_alive()
        fsyncs.release()
        assert first.finish()["crew"] == 2
        assert second.finish()["crew"] == 3
    finally:
        fsyncs.release()
        other.close()


def test_writes_that_queue_during_this_process_fsync_share_the_next_commit(store, fsyncs):
    fsyncs.hold()
    first = Call(lambda: store.update_ship(1, {**STAR_DESTROYER, "crew": 2}))
    assert fsyncs.entered.wait(WAIT)
    before = fsyncs.calls
    queued = [
        Call(lambda crew=crew: store.update_ship(1, {**STAR_DESTROYER, "crew": crew})) for crew in (3, 4, 5)
    ]
    queued[-1].join(STILL)
    # they wait for the fsync, not yet committed: no new leader commits the first of them alone
    assert all(call.is_alive() for call in [first, *queued])
    assert crew_on_disk(store) == 2
    fsyncs.release()
    assert first.finish()["crew"] == 2
    assert sorted(call.finish()["crew"] for call in queued) == [3, 4, 5]
    assert fsyncs.calls == before + 2  # the first's, then one for the three's shared commit


def test_a_read_that_saw_a_commit_still_being_fsynced_waits_for_it_before_settling(store, fsyncs):
    fsyncs.hold()
    write = Call(lambda: store.update_ship(1, {**STAR_DESTROYER, "crew": 2}))
    assert fsyncs.entered.wait(WAIT)

    def read_and_settle():
        ship = store.get_ship(1)
        store.settle()
        return ship

    read = Call(read_and_settle)
    read.join(STILL)
    assert read.is_alive()
    fsyncs.release()
    assert read.finish()["crew"] == 2
    write.finish()


def test_an_error_that_a_commit_still_being_fsynced_caused_waits_for_it(store, fsyncs):
    fsyncs.hold()
    first = Call(lambda: store.create_user("taken", "hash"))
    assert fsyncs.entered.wait(WAIT)
    second = Call(lambda: store.create_user("taken", "hash"))  # refused because of the first
    second.join(STILL)
    assert second.is_alive()
    fsyncs.release()
    first.finish()
    with pytest.raises(NameTaken):
        second.finish()


def test_reads_of_commits_already_fsynced_cost_no_fsync(store, fsyncs):
    store.update_ship(1, {**STAR_DESTROYER, "crew": 2})
    before = fsyncs.calls
    for _ in range(20):
        assert store.get_ship(1)["crew"] == 2
        store.ships_version()
        store.settle()
    assert fsyncs.calls == before


def test_a_page_left_behind_never_makes_a_new_commit_look_fsynced(store, fsyncs):
    # As after a power loss: words older than each other, durable ahead of begun.
    left = WALSync(f"{store.path}.sync", f"{store.path}-wal")
    left._words[BEGUN], left._words[DURABLE] = 3, 100
    before = fsyncs.calls
    store.update_ship(1, {**STAR_DESTROYER, "crew": 2})
    assert fsyncs.calls == before + 1
    left.close()


def test_a_get_that_read_a_put_still_being_fsynced_is_answered_after_it(tmp_path, fsyncs):
    settings = Settings(
        secret_key=secrets.token_urlsafe(48),
        store_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        scrypt_n=TEST_SCRYPT_N,
        metrics=False,
    )
    client = falcon.testing.TestClient(create_app(settings))
    headers = Session(client).headers
    fsyncs.hold()
    put = Call(
        lambda: client.simulate_put("/api/ships/1", json={**STAR_DESTROYER, "crew": 2}, headers=headers)
    )
    assert fsyncs.entered.wait(WAIT)
    get = Call(lambda: client.simulate_get("/api/ships/1"))
    get.join(STILL)
    assert get.is_alive()
    fsyncs.release()
    assert put.finish().status_code == 200
    answer = get.finish()
    assert answer.status_code == 200 and answer.json["crew"] == 2
