"""The stores' clock and their purge policy, on every backend: time is what
the injected clock says (never the wall clock), and expired rows of every
kind are swept the same way everywhere."""

from __future__ import annotations

import secrets
import sqlite3

import pytest

from fleet_api.app import create_app
from fleet_api.settings import Settings
from fleet_api.store import open_store

T0 = 4_000_000_000  # year 2096: anything dated by the wall clock is long before it


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(store_url, clock):
    """A store of each backend that reads the fake clock."""
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
