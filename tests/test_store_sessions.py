"""The sessions part of the store, on every backend: the rotation rule, its
atomicity under racing workers (one store per thread, as workers and hosts
have), expiry and sweeping, and the per-request check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.race import race as race_threads

from fleet_api.purge import purge
from fleet_api.store import Rotation, SessionRecord, TokenId, User, open_store

NOW = 1_900_000_000.0
GRACE = 10.0


def session(sid="s" * 22, user_id=1, created_at=NOW, jti="r0", exp=int(NOW) + 3600) -> SessionRecord:
    return SessionRecord(
        sid, user_id, created_at, created_at, exp, "agent", "192.0.2.1", TokenId(jti, int(created_at), exp)
    )


@pytest.fixture
def seeded(store):
    store.seed([User(1, "user", "h"), User(2, "guest", "h")], [])
    return store


@pytest.fixture
def other_worker(store, store_url):
    """Another store on the same data, as another worker or host holds it."""
    if store_url.startswith("memory"):
        yield store
        return
    other = open_store(store_url)
    yield other
    other.close()


def successor(n: int, now: float = NOW) -> TokenId:
    return TokenId(f"r{n}", int(now), int(now) + 7200)


# --- the rule ----------------------------------------------------------------
def test_the_live_token_rotates_and_the_session_follows_its_successor(seeded):
    seeded.create_session(session())
    assert seeded.rotate_refresh("s" * 22, "r0", successor(1), NOW + 1, GRACE) == (
        Rotation.ROTATED,
        successor(1),
    )
    stored = seeded.get_session("s" * 22)
    assert stored.refresh == successor(1)
    assert (stored.previous_jti, stored.rotated_at, stored.expires_at) == ("r0", NOW + 1, successor(1).exp)


@pytest.mark.parametrize(
    "presented, after, outcome, token, alive",
    [
        ("r0", GRACE - 0.5, Rotation.GRACE, "r1", True),
        ("r0", GRACE, Rotation.REUSED, None, False),
        ("r0", 3000, Rotation.REUSED, None, False),
        ("older", 1, Rotation.REUSED, None, False),
        ("r1", 1, Rotation.ROTATED, "r2", True),
    ],
    ids=[
        "used-up within grace",
        "at the end of grace",
        "long after",
        "never this session's live one",
        "the live one",
    ],
)
def test_presenting_a_token_after_one_rotation(seeded, presented, after, outcome, token, alive):
    seeded.create_session(session())
    seeded.rotate_refresh("s" * 22, "r0", successor(1), NOW, GRACE)
    result = seeded.rotate_refresh("s" * 22, presented, successor(2), NOW + after, GRACE)
    assert result[0] is outcome
    assert (result[1].jti if result[1] else None) == token
    assert (seeded.get_session("s" * 22) is not None) == alive


def test_without_a_successor_the_live_token_stays_live(seeded):
    seeded.create_session(session())
    assert seeded.rotate_refresh("s" * 22, "r0", None, NOW, GRACE) == (Rotation.CURRENT, session().refresh)
    assert seeded.get_session("s" * 22) == session()
    assert seeded.rotate_refresh("s" * 22, "stale", None, NOW, GRACE) == (Rotation.REUSED, None)
    assert seeded.get_session("s" * 22) is None


def test_an_ended_or_expired_session_rotates_nothing(seeded):
    assert seeded.rotate_refresh("nope", "r0", successor(1), NOW, GRACE) == (Rotation.ENDED, None)
    seeded.create_session(session(exp=int(NOW) + 5))
    assert seeded.rotate_refresh("s" * 22, "r0", successor(1), NOW + 5, GRACE) == (Rotation.ENDED, None)


# --- racing workers ----------------------------------------------------------
def race(stores, work, count=8) -> list:
    """`work(store, i)` on `count` threads at once, the stores taken in turn."""
    return race_threads(lambda i: work(stores[i % len(stores)], i), count)


@pytest.mark.parametrize("grace", [GRACE, 0])
def test_racing_rotations_of_one_token_leave_one_chain(seeded, other_worker, grace):
    seeded.create_session(session())
    results = race(
        [seeded, other_worker],
        lambda store, i: store.rotate_refresh("s" * 22, "r0", successor(i + 1), NOW, grace),
    )
    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count(Rotation.ROTATED) == 1
    winner = next(token for outcome, token in results if outcome is Rotation.ROTATED)
    if grace:
        # Everyone else was within the grace window: each got the winner's successor.
        assert results.count((Rotation.GRACE, winner)) == 7
        assert seeded.get_session("s" * 22).refresh == winner
    else:
        # The first loser ended the session; the rest found it ended.
        assert outcomes.count(Rotation.REUSED) == 1
        assert outcomes.count(Rotation.ENDED) == 6
        assert other_worker.get_session("s" * 22) is None


def test_a_session_ended_by_one_worker_is_ended_for_another(seeded, other_worker):
    seeded.create_session(session())
    assert other_worker.token_subject(1, "a", "s" * 22, NOW)[1] is False
    assert seeded.end_session("s" * 22, 1)
    assert other_worker.token_subject(1, "a", "s" * 22, NOW)[1] is True


# --- the per-request check ---------------------------------------------------
def test_token_subject_sees_ended_expired_and_foreign_sessions(seeded):
    seeded.create_session(session())
    seeded.create_session(session("g" * 22, user_id=2))
    user, revoked = seeded.token_subject(1, "a", "s" * 22, NOW)
    assert (user.name, revoked) == ("user", False)
    assert seeded.token_subject(1, "a", "g" * 22, NOW)[1] is True  # not this user's
    assert seeded.token_subject(1, "a", "x" * 22, NOW)[1] is True  # never was
    assert seeded.token_subject(1, "a", "s" * 22, NOW + 3600)[1] is True  # expired
    assert seeded.token_subject(1, "a", None, NOW)[1] is False  # a token from before sessions
    seeded.revoke_token("a", int(NOW) + 60)
    assert seeded.token_subject(1, "a", "s" * 22, NOW)[1] is True
    assert seeded.token_subject(1, "b", "s" * 22, NOW)[1] is False


def test_a_deleted_users_session_token_finds_no_user(seeded):
    seeded.create_session(session())
    assert seeded.delete_user(1)
    assert seeded.token_subject(1, "a", "s" * 22, NOW) == (None, False)  # -> "Unknown user."
    assert seeded.get_session("s" * 22) is None


def test_last_use_is_written_at_most_once_a_minute(seeded):
    seeded.create_session(session())
    seeded.token_subject(1, "a", "s" * 22, NOW + 59)
    assert seeded.get_session("s" * 22).last_used_at == NOW
    seeded.token_subject(1, "a", "s" * 22, NOW + 60)
    assert seeded.get_session("s" * 22).last_used_at == NOW + 60
    seeded.touch_session("s" * 22, NOW + 30)  # an older use never moves it back
    assert seeded.get_session("s" * 22).last_used_at == NOW + 60


# --- listing, ending, expiry -------------------------------------------------
def test_listing_is_newest_first_and_only_live_ones(seeded):
    seeded.create_session(session("a" * 22, created_at=NOW))
    seeded.create_session(session("b" * 22, created_at=NOW + 1))
    seeded.create_session(session("c" * 22, created_at=NOW + 2, exp=int(NOW) + 100))
    seeded.create_session(session("d" * 22, user_id=2, created_at=NOW + 3))
    assert [s.id for s in seeded.list_sessions(1, NOW + 50)] == ["c" * 22, "b" * 22, "a" * 22]
    assert [s.id for s in seeded.list_sessions(1, NOW + 100)] == ["b" * 22, "a" * 22]
    assert seeded.list_sessions(1, NOW + 50)[-1] == session("a" * 22, created_at=NOW)


def test_ending_sessions(seeded):
    for sid in ("a", "b", "c"):
        seeded.create_session(session(sid * 22))
    seeded.create_session(session("g" * 22, user_id=2))
    assert not seeded.end_session("g" * 22, 1)  # not this user's
    assert seeded.end_session("a" * 22, 1)
    assert not seeded.end_session("a" * 22, 1)
    assert seeded.end_other_sessions(1, "b" * 22) == 1
    assert [s.id for s in seeded.list_sessions(1, NOW)] == ["b" * 22]
    assert seeded.end_other_sessions(1, None) == 1
    assert [s.id for s in seeded.list_sessions(2, NOW)] == ["g" * 22]


def test_a_password_change_ends_the_other_sessions_in_the_same_write(seeded):
    seeded.create_session(session("a" * 22))
    seeded.create_session(session("b" * 22))
    seeded.update_user(1, "user", "new hash", "jti", kept_sid="a" * 22, kept_until=int(NOW) + 900)
    assert [s.id for s in seeded.list_sessions(1, NOW)] == ["a" * 22]
    assert seeded.get_session("a" * 22).expires_at == int(NOW) + 900
    seeded.update_user(1, "renamed")  # no new password: nothing ends
    assert [s.id for s in seeded.list_sessions(1, NOW)] == ["a" * 22]


def test_expired_sessions_are_swept(seeded):
    seeded.create_session(session("a" * 22, exp=int(NOW) + 10))
    seeded.create_session(session("b" * 22, exp=int(NOW) + 20))
    seeded.create_session(session("c" * 22, exp=int(NOW) + 30))
    assert seeded.purge_expired_sessions(NOW + 20) == 2
    assert seeded.get_session("a" * 22) is None
    assert seeded.get_session("c" * 22) is not None
    assert seeded.purge_expired_sessions(NOW + 20) == 0


def test_a_login_sweeps_expired_sessions(seeded):
    seeded.create_session(session("a" * 22, created_at=NOW - 7200, exp=int(NOW) - 1))
    seeded.purge_expired_sessions(NOW - 7200)  # the backends' once-a-minute clocks start now
    seeded.create_session(session("b" * 22, created_at=NOW))
    assert seeded.get_session("a" * 22) is None


def test_without_grace_a_racer_whose_clock_read_precedes_the_rotation_is_reuse(seeded):
    """A worker reads its clock, then waits for the row lock while another
    rotates: its `now` is earlier than the rotation. With grace 0 that is
    still reuse, never a second winner."""
    seeded.create_session(session())
    assert seeded.rotate_refresh("s" * 22, "r0", successor(1), NOW + 5, 0.0)[0] is Rotation.ROTATED
    assert seeded.rotate_refresh("s" * 22, "r0", successor(2), NOW + 4, 0.0) == (Rotation.REUSED, None)
    assert seeded.get_session("s" * 22) is None


def test_a_failed_last_use_write_does_not_fail_the_request(seeded, monkeypatch):
    """last_used_at only feeds the sessions list: a store error writing it is
    logged, and the token check still answers."""
    seeded.create_session(session())

    def refuse(*args):
        raise RuntimeError("the store is busy")

    monkeypatch.setattr(seeded, "touch_session", refuse)
    user, revoked = seeded.token_subject(1, "a", "s" * 22, NOW + 3000)
    assert (user.id, revoked) == (1, False)


def test_the_purge_command_removes_only_what_has_expired(seeded, store_url):
    """`python -m fleet_api.purge`: simplejwt's flushexpiredtokens, for every kind."""
    seeded.create_session(session("a" * 22, exp=int(NOW) + 10))
    seeded.create_session(session("b" * 22, exp=int(NOW) + 3600))
    seeded.revoke_token("old", int(NOW) + 10)
    seeded.revoke_token("new", int(NOW) + 3600)
    seeded.count_failure("ended", 10, int(NOW))
    seeded.count_failure("running", 3600, int(NOW))

    assert purge(seeded, NOW + 60) == {
        "revoked tokens": 1,
        "sessions": 1,
        "idempotency keys": 0,
        "login failures": 1,
    }
    assert seeded.get_session("a" * 22) is None and seeded.get_session("b" * 22) is not None
    assert not seeded.is_token_revoked("old") and seeded.is_token_revoked("new")
    assert seeded.failures("running", int(NOW) + 60)[0] == 1


def test_the_purge_command_reads_the_servers_settings(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    open_store(url).close()
    result = subprocess.run(
        [sys.executable, "-m", "fleet_api.purge"],
        env={**os.environ, "FLEET_STORE": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "revoked tokens: 0 expired removed",
        "sessions: 0 expired removed",
        "idempotency keys: 0 expired removed",
        "login failures: 0 expired removed",
    ]
    assert "random key" not in result.stderr
