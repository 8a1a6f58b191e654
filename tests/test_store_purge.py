"""The stores' clock and their purge policy, on every backend: time is what
the injected clock says (never the wall clock), and expired rows of every
kind are swept the same way everywhere."""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3

import pytest
from support.bodies import TIE_FIGHTER

from fleet_api.app import create_app
from fleet_api.settings import Settings
from fleet_api.store import SessionRecord, TokenId, open_store
from fleet_api.store.base import (
    EXPIRING,
    SWEEP_INTERVAL,
    IdempotencyClaim,
    IdempotencyRecord,
    IdempotentAnswer,
)

T0 = 4_000_000_000  # year 2096: anything dated by the wall clock is long before it


@dataclasses.dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    """Starts at T0; a test moves it by setting `now`."""
    return Clock()


@pytest.fixture
def clocked(store_url, clock):
    """A store of each backend reading the fake clock."""
    store = open_store(store_url, clock=clock)
    yield store
    store.close()


def test_a_revocation_expires_by_the_stores_clock(clocked):
    clocked.revoke_token("old", T0 - 1)  # live by the wall clock, expired by the store's
    assert not clocked.is_token_revoked("old")


def test_the_app_hands_its_clock_to_the_store_it_builds(tmp_path, clock):
    path = tmp_path / "fleet.db"
    settings = Settings(secret_key=secrets.token_urlsafe(48), store_url=f"sqlite:///{path}", scrypt_n=16)
    create_app(settings, clock=clock)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'seeded'").fetchone() == (str(T0),)


# --- the purge policy: the same on every backend ------------------------------
def _revoke(store, t, name, exp):
    store.revoke_token(name, exp)  # at the store's clock, which the test has set to t


def _login(store, t, name, exp):
    refresh = TokenId(name, int(t), exp)
    store.create_session(SessionRecord(name, 1, t, t, exp, None, "192.0.2.1", refresh))


def _fail(store, t, name, exp):
    store.count_failure(name, exp - t, t)


def _reserve(store, t, name, exp):
    store.reserve_idempotency(IdempotencyClaim("scope", name, "token"), "fp", t, t + 1, exp)


WRITES = {
    "revoked tokens": _revoke,
    "sessions": _login,
    "login failures": _fail,
    "idempotency keys": _reserve,
}


@pytest.mark.parametrize("kind", WRITES)
def test_a_write_sweeps_its_kind_at_most_once_per_interval(clocked, clock, kind):
    def write(store, t, name, exp):
        clock.now = t
        WRITES[kind](store, t, name, exp)

    write(clocked, T0, "a", T0 + 10)  # the first write sweeps (nothing has expired yet)
    write(clocked, T0 + SWEEP_INTERVAL - 1, "b", T0 + 5000)  # too soon for another sweep
    assert clocked.purge_expired(T0 + SWEEP_INTERVAL - 1)[kind] == 1  # "a" was still there

    write(clocked, T0 + SWEEP_INTERVAL, "c", T0 + SWEEP_INTERVAL + 10)  # the purge was the last sweep
    write(clocked, T0 + 2 * SWEEP_INTERVAL - 1, "d", T0 + 5000)  # an interval after it: sweeps "c"
    assert clocked.purge_expired(T0 + 2 * SWEEP_INTERVAL - 1) == {k: 0 for k in EXPIRING}


def test_a_failed_sweep_is_logged_and_the_write_stands(clocked, monkeypatch, caplog):
    def refuse(kind, now):
        raise RuntimeError("the database is busy")

    monkeypatch.setattr(clocked, "_delete_expired", refuse)
    clocked.revoke_token("jti", T0 + 900)
    assert clocked.is_token_revoked("jti")
    assert "sweep of expired revoked tokens failed" in caplog.text


def test_an_ended_login_window_starts_over_before_any_sweep(clocked):
    assert clocked.count_failure("k", 10, T0) == (1, T0 + 10)
    assert clocked.count_failure("k", 10, T0 + 1) == (2, T0 + 10)
    assert clocked.count_failure("k", 10, T0 + 30) == (1, T0 + 40)  # no sweep within the minute
    assert clocked.failures("k", T0 + 30) == (1, T0 + 40)


def test_an_expired_idempotency_record_is_gone_before_any_sweep(clocked):
    claim = IdempotencyClaim("scope", "k", "first")
    assert clocked.reserve_idempotency(claim, "fp", T0, T0 + 5, T0 + 10) is None
    answer = IdempotentAnswer(201, "/api/ships/1", b"{}")
    clocked.create_ship_once(TIE_FIGHTER, claim, lambda ship: answer)
    retry = IdempotencyClaim("scope", "k", "retry")
    assert clocked.reserve_idempotency(retry, "fp", T0 + 9, T0 + 14, T0 + 19) == IdempotencyRecord(
        "fp", answer
    )
    assert (
        clocked.reserve_idempotency(retry, "other", T0 + 30, T0 + 35, T0 + 40) is None
    )  # expired: taken anew
