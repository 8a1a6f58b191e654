"""Shared fixtures: a fresh app, its store and a logged-in client per test."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets

import falcon.testing
import pytest
from support.clock import FakeClock

from devtools.gunicorn import GunicornServer
from devtools.postgres import empty_database, running_postgres, table_layout
from fleet_api.app import create_app
from fleet_api.settings import Settings
from fleet_api.store import open_store

# Cheap scrypt in tests: the hashing itself is tested at full cost in test_passwords.
TEST_SCRYPT_N = 2**4
# A real server that dies before its test stops it leaves its log in the warning.
GunicornServer.keep_logs = True


BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL for the whole run, started on first use."""
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pg_layout(pg_server) -> frozenset:
    """The tables the PostgreSQL store makes, as table_layout sees them."""
    store = open_store(pg_server)
    try:
        store.create_schema()
    finally:
        store.close()
    return table_layout(pg_server)


@pytest.fixture
def pg_url(pg_server, pg_layout) -> str:
    """A database without rows per test: the store's tables emptied (a few
    ms), or dropped if a test left others."""
    empty_database(pg_server, pg_layout)
    return pg_server


def server_env(**env: str) -> dict[str, str]:
    """A real server's environment: a fresh secret key and cheap scrypt, then `env`."""
    return {"FLEET_SECRET_KEY": secrets.token_urlsafe(48), "FLEET_SCRYPT_N": "16", **env}


@pytest.fixture(scope="session")
def gunicorn_server():
    """`with gunicorn_server(workers=4, **env) as server:` a real gunicorn on a free
    loopback port (server_env() plus `env`), stopped by PID after."""

    def start(workers: int = 4, **env: str) -> GunicornServer:
        return GunicornServer(workers=workers, env=server_env(**env))

    return start


@pytest.fixture(scope="module")
def server(gunicorn_server):
    """One real 4-worker gunicorn per module with the default settings; a module
    that needs other settings defines its own `server`."""
    with gunicorn_server(workers=4) as server:
        yield server


@pytest.fixture(scope="session")
def two_hosts(pg_server, pg_layout):
    """`with two_hosts(**env) as (first_url, second_url):` two real gunicorns
    (2 workers each) on one emptied PostgreSQL database, stopped by PID after.

    Both start at once, as hosts behind a load balancer would: seeded once.
    """

    @contextlib.contextmanager
    def start(**env: str):
        empty_database(pg_server, pg_layout)
        env = server_env(FLEET_STORE=pg_server, **env)
        first, second = GunicornServer(workers=2, env=env), GunicornServer(workers=2, env=env)
        try:
            # Launched from this thread (see GunicornServer.launch), waited for after.
            first.launch()
            second.launch()
            first.wait_ready()
            second.wait_ready()
            yield first.url, second.url
        finally:
            try:
                first.stop()
            finally:
                second.stop()

    return start


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """The contract suite runs once per store backend, same assertions."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def settings(store_url) -> Settings:
    return Settings(secret_key=secrets.token_urlsafe(48), store_url=store_url, scrypt_n=TEST_SCRYPT_N)


@pytest.fixture
def store(settings):
    store = open_store(settings.store_url)
    yield store
    store.close()


@pytest.fixture
def app(settings, store):
    return create_app(settings, store=store)


@pytest.fixture
def client(app) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(app)


@pytest.fixture
def clock() -> FakeClock:
    """Now, standing still until the test moves it (a module may start it elsewhere)."""
    return FakeClock()


@pytest.fixture
def make_client(settings, store, clock):
    """`make_client(**changes)`: a client of an app on this test's store and
    fake clock, with `changes` to the settings; several share the store."""

    def make(**changes) -> falcon.testing.TestClient:
        config = dataclasses.replace(settings, **changes)
        return falcon.testing.TestClient(create_app(config, store=store, clock=clock))

    return make


class Session:
    """Log in once and carry the tokens, like a real client would."""

    def __init__(self, client, username="user", password="password"):
        result = client.simulate_post("/auth/login", json={"username": username, "password": password})
        assert result.status_code == 200, result.text
        self.access_token = result.json["access_token"]
        self.refresh_token = result.json["refresh_token"]

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def refresh_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.refresh_token}"}


@pytest.fixture
def login(client):
    """`login()` for the seed user, `login(name, password)` for another."""
    return lambda *args: Session(client, *args)


@pytest.fixture
def auth(login) -> Session:
    return login()
