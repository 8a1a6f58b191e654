"""The token check's answers kept under the auth version (SQLite store).

Every authenticated request asks `token_subject`. On SQLite a live answer
is kept per process under the auth version in shared memory and given
again with no SQL while that version holds; every write the check reads
(a revocation, a user changed or deleted, a session ended or moved) moves
the version before it is answered, so the next check anywhere on the host
reads the database again. These tests hold it to exactly today's answers.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from fleet_api.store import SessionRecord, TokenId, User, open_store
from fleet_api.store.base import SESSION_TOUCH_INTERVAL
from fleet_api.store.sharedversion import AUTH, SharedVersion
from fleet_api.store.sqlite import SUBJECT_HOLD_SECONDS

NOW = 1_900_000_000.0
SID = "s" * 22


def session(sid=SID, user_id=1, exp=int(NOW) + 3600, jti="r0") -> SessionRecord:
    return SessionRecord(sid, user_id, NOW, NOW, exp, "agent", "192.0.2.1", TokenId(jti, int(NOW), exp))


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.fixture
def store(url):
    store = open_store(url)
    store.seed([User(1, "user", "h"), User(2, "guest", "h")], [])
    store.create_session(session())
    yield store
    store.close()


@pytest.fixture
def other_worker(url, store):
    """Another worker's store on the same file: its own connections and cache."""
    other = open_store(url)
    yield other
    other.close()


def checks_run(store) -> list[str]:
    """The token checks this thread's read connection runs from now on."""
    seen: list[str] = []
    store._db().set_trace_callback(lambda sql: seen.append(sql) if "revoked_tokens" in sql else None)
    return seen


def test_a_repeated_check_of_a_live_token_runs_no_sql(store):
    first = store.token_subject(1, "a", SID, NOW)
    seen = checks_run(store)
    for step in range(50):  # within the hold
        assert store.token_subject(1, "a", SID, NOW + step * SUBJECT_HOLD_SECONDS / 100) == first
    assert seen == []
    assert first[0].name == "user" and first[1] is False


def test_another_token_or_session_is_checked_on_its_own(store):
    store.token_subject(1, "a", SID, NOW)
    seen = checks_run(store)
    store.token_subject(1, "b", SID, NOW)
    store.token_subject(1, "a", None, NOW)
    assert len(seen) == 2


def test_tokens_past_the_cap_are_still_kept_while_the_version_holds(url, monkeypatch):
    """More distinct tokens than a worker keeps, and no auth write for a
    long time (logins move no version): the newest are still kept, not
    shut out by the first ones, long past their hold."""
    monkeypatch.setattr("fleet_api.store.sqlite.SUBJECTS_KEPT", 4)
    store = open_store(url)
    try:
        store.seed([User(1, "user", "h")], [])
        store.create_session(session())
        for n in range(10):
            store.token_subject(1, f"j{n}", SID, NOW + n)
        seen = checks_run(store)
        assert store.token_subject(1, "j9", SID, NOW + 9.5)[0].name == "user"
        assert seen == []
    finally:
        store.close()


WRITES = {
    "its jti revoked": lambda s: s.revoke_token("a", int(NOW) + 60),
    "its session ended": lambda s: s.end_session(SID, 1),
    "all other sessions ended": lambda s: s.end_other_sessions(1, None),
    "its session ended by a reused refresh token": lambda s: s.rotate_refresh(
        SID, "not-the-live-one", TokenId("r1", int(NOW), int(NOW) + 60), NOW, 0
    ),
    "its user deleted": lambda s: s.delete_user(1),
    "its user's password changed": lambda s: s.update_user(1, "user", password_hash="h2"),
    "its user renamed": lambda s: s.update_user(1, "renamed"),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_write_on_another_worker_is_seen_by_the_next_check(store, other_worker, write):
    """The kept answer, then the write elsewhere, then exactly what the database says."""
    kept = store.token_subject(1, "a", SID, NOW)
    assert store.token_subject(1, "a", SID, NOW) == kept  # kept now
    write(other_worker)
    fresh = open_store(f"sqlite:///{store.path}")  # a store with nothing kept
    try:
        expected = fresh.token_subject(1, "a", SID, NOW)
    finally:
        fresh.close()
    assert expected != kept
    assert store.token_subject(1, "a", SID, NOW) == expected


def test_a_session_moved_to_another_expiry_is_seen_by_the_next_check(store, other_worker):
    assert store.token_subject(1, "a", SID, NOW)[1] is False  # kept, for up to the hold
    other_worker.rotate_refresh(SID, "r0", TokenId("r1", int(NOW), int(NOW)), NOW, 0)  # now it ends at NOW
    assert store.token_subject(1, "a", SID, NOW + SUBJECT_HOLD_SECONDS / 2)[1] is True


def test_a_kept_answer_ends_with_its_session(store):
    assert store.token_subject(1, "a", SID, NOW + 3599)[1] is False
    assert store.token_subject(1, "a", SID, NOW + 3600)[1] is True


def test_the_last_use_is_still_touched_once_a_minute_and_touching_moves_no_version(store):
    due = NOW + SESSION_TOUCH_INTERVAL
    version = SharedVersion(f"{store.path}.version", AUTH)
    try:
        before = version.read()
        seen = checks_run(store)
        store.token_subject(1, "a", SID, due - 0.5)  # read, and kept until the touch is due
        store.token_subject(1, "a", SID, due - 0.1)
        assert len(seen) == 1 and store.get_session(SID).last_used_at == NOW
        store.token_subject(1, "a", SID, due)  # due: the database, and a touch
        assert len(seen) == 2 and store.get_session(SID).last_used_at == due
        assert version.read() == before
        store.token_subject(1, "a", SID, due + 0.5)  # read again (the touch kept nothing), then kept
        store.token_subject(1, "a", SID, due + 0.6)
        assert len(seen) == 3
    finally:
        version.close()


def test_revoked_and_unknown_user_answers_are_never_kept(store):
    store.revoke_token("gone", int(NOW) + 60)
    seen = checks_run(store)
    for _ in range(3):
        assert store.token_subject(1, "gone", SID, NOW)[1] is True
        assert store.token_subject(9, "a", None, NOW) == (None, False)
    assert len(seen) == 6


def test_while_an_auth_commit_is_in_flight_checks_read_the_database(store):
    store.token_subject(1, "a", SID, NOW)
    other = SharedVersion(f"{store.path}.version", AUTH)  # another process, about to COMMIT
    counter = other.read()
    assert other.begin(counter + 1)
    with sqlite3.connect(store.path) as db:  # its commit is visible before it publishes
        db.execute("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('a', ?)", (int(NOW) + 60,))
    assert store.token_subject(1, "a", SID, NOW)[1] is True
    other.end(counter + 2)  # the trigger counted once more
    other.close()
    assert store.token_subject(1, "a", SID, NOW)[1] is True


def test_a_write_that_bypasses_the_store_counts_within_the_hold(store):
    """The sqlite3 shell publishes no version: a kept answer lasts this long at most."""
    assert store.token_subject(1, "a", SID, NOW)[1] is False
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM sessions")
    assert store.token_subject(1, "a", SID, NOW + SUBJECT_HOLD_SECONDS - 0.01)[1] is False
    assert store.token_subject(1, "a", SID, NOW + SUBJECT_HOLD_SECONDS)[1] is True


def test_no_check_is_older_than_a_revocation_acknowledged_before_it_started(store, other_worker):
    """One worker revokes tokens one by one; four threads of another check the
    last acknowledged one (it must be refused) and the next ones (so they are
    kept, and must stop being kept the moment they are revoked)."""
    count = 150
    acknowledged = [-1]
    stale: list[int] = []
    done = threading.Event()

    def revoker():
        try:
            for i in range(count):
                other_worker.revoke_token(f"t{i}", int(NOW) + 600)
                acknowledged[0] = i
        finally:
            done.set()

    def checker():
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            last = acknowledged[0]
            if last >= 0 and store.token_subject(1, f"t{last}", None, NOW)[1] is not True:
                stale.append(last)
            for ahead in (1, 2):
                store.token_subject(1, f"t{last + ahead}", None, NOW)

    threads = [threading.Thread(target=checker) for _ in range(4)] + [threading.Thread(target=revoker)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert done.is_set() and acknowledged[0] == count - 1
    assert stale == []
