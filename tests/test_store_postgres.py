"""PostgresStore against a real throwaway server: the memory backend's
semantics, plus what only a shared database can get wrong (races between
workers, ids across hosts, seeding once)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from devtools.postgres import empty_database, running_postgres
from fleet_api.store import NameTaken, User, open_store
from fleet_api.store.memory import MemoryStore
from fleet_api.store.postgres import PostgresStore

THREAD_TIMEOUT = 30  # seconds: no test may hang on a lock or a pool


def ship_fields(model="T-65 X-Wing", roles=("Escort", "Space Superiority Starfighter")):
    return {
        "affiliation": "Rebel Alliance",
        "category": "Starfighters",
        "crew": 1,
        "length": 13,
        "manufacturer": "Incom Corporation",
        "model": model,
        "roles": list(roles),
        "ship_class": "Starfighter",
    }


SEED_USERS = [User(5, "user", "hash-user"), User(9, "guest", "hash-guest")]
SEED_SHIPS = [{"id": 3, **ship_fields("A")}, {"id": 7, **ship_fields("B", ())}]


@pytest.fixture(scope="module")
def server():
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
def dsn(server):
    """A clean database per test: dropping the tables (and with them the
    identity sequences) takes milliseconds; the store recreates them."""
    empty_database(server)
    return server


@pytest.fixture
def stores(dsn):
    """`stores()` opens another PostgresStore on the test database, as another
    worker or host would; all are closed afterwards."""
    opened: list[PostgresStore] = []
    lock = threading.Lock()

    def open_one() -> PostgresStore:
        store = PostgresStore(dsn)
        with lock:
            opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(stores) -> PostgresStore:
    return stores()


def run_at_once(count: int, work):
    """Call `work(i)` in `count` threads released together; return each
    result or the exception it raised, in thread order."""
    barrier = threading.Barrier(count, timeout=THREAD_TIMEOUT)

    def task(i):
        barrier.wait()
        return work(i)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(task, i) for i in range(count)]
        done, pending = concurrent.futures.wait(futures, timeout=THREAD_TIMEOUT)
        assert not pending, "threads did not finish in time"
    return [f.exception() or f.result() for f in futures]


# --- wiring ----------------------------------------------------------------
def test_open_store_picks_postgres_for_both_schemes(dsn):
    for url in (dsn, dsn.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        try:
            assert isinstance(store, PostgresStore)
            assert store.is_empty()
        finally:
            store.close()


# --- seeding ---------------------------------------------------------------
def test_seed_keeps_ids(store):
    assert store.seed(SEED_USERS, SEED_SHIPS) is True
    assert store.list_users() == SEED_USERS
    assert [s["id"] for s in store.list_ships()] == [3, 7]
    assert store.get_ship(7) == {"id": 7, **ship_fields("B", ())}


def test_seed_happens_exactly_once_when_8_workers_start_at_once(stores):
    workers = [stores() for _ in range(8)]

    def start(i):
        workers[i].create_schema()
        return workers[i].seed(SEED_USERS, SEED_SHIPS)

    results = run_at_once(8, start)
    assert sorted(results, key=str) == [False] * 7 + [True], results
    assert workers[0].list_users() == SEED_USERS
    assert [s["id"] for s in workers[0].list_ships()] == [3, 7]


def test_seed_refuses_without_writing_once_seeded_even_after_every_row_is_deleted(store):
    assert store.seed(SEED_USERS, SEED_SHIPS) is True
    for user in store.list_users():
        store.delete_user(user.id)
    for ship in store.list_ships():
        store.delete_ship(ship["id"])
    assert store.seed(SEED_USERS, SEED_SHIPS) is False
    assert store.list_users() == []
    assert store.list_ships() == []


def test_new_ids_follow_the_highest_seeded_id(store):
    store.seed(SEED_USERS, SEED_SHIPS)
    assert store.create_user("new", "h").id == 10
    assert store.create_ship(ship_fields())["id"] == 8


def test_is_empty_until_seeded(store):
    assert store.is_empty()
    store.seed(SEED_USERS, [])
    assert not store.is_empty()


# --- ids -------------------------------------------------------------------
def test_ids_never_reused_after_delete(store):
    users = [store.create_user(f"u{i}", "h") for i in range(3)]
    ship = store.create_ship(ship_fields())
    for user in users:
        assert store.delete_user(user.id)
    assert store.delete_ship(ship["id"])
    assert store.create_user("u0", "h").id == 4
    assert store.create_ship(ship_fields())["id"] == 2


def test_ids_out_of_bigint_range_are_simply_missing(store):
    huge = 2**63
    assert store.get_user(huge) is None
    assert store.update_user(huge, "x") is None
    assert store.delete_user(huge) is False
    assert store.get_ship(huge) is None
    assert store.update_ship(huge, ship_fields()) is None
    assert store.delete_ship(huge) is False


# --- races -----------------------------------------------------------------
def test_one_of_16_concurrent_creates_of_one_name_wins(stores):
    workers = [stores() for _ in range(16)]
    results = run_at_once(16, lambda i: workers[i].create_user("same", f"hash{i}"))
    created = [r for r in results if isinstance(r, User)]
    assert len(created) == 1, results
    assert all(isinstance(r, NameTaken) for r in results if r is not created[0]), results
    assert workers[0].list_users() == created


def test_8_threads_creating_20_ships_each_get_160_distinct_ids(store):
    def create_20(i):
        return [store.create_ship(ship_fields(f"t{i}-{n}"))["id"] for n in range(20)]

    results = run_at_once(8, create_20)
    ids = [ship_id for batch in results for ship_id in batch]
    assert len(set(ids)) == 160, results
    assert [s["id"] for s in store.list_ships()] == sorted(ids)


# --- users -----------------------------------------------------------------
def test_update_user_with_password_bumps_token_version_and_sets_kept_jti(store):
    user = store.create_user("alice", "old")
    updated = store.update_user(user.id, "alice", password_hash="new", kept_jti="jti-1")
    assert updated == User(user.id, "alice", "new", token_version=1, kept_jti="jti-1")
    again = store.update_user(user.id, "alice", password_hash="newer", kept_jti="jti-2")
    assert (again.token_version, again.kept_jti) == (2, "jti-2")
    assert store.get_user(user.id) == again


def test_rename_alone_keeps_password_and_token_version(store):
    user = store.create_user("alice", "old")
    store.update_user(user.id, "alice", password_hash="new", kept_jti="jti-1")
    renamed = store.update_user(user.id, "alicia")
    assert renamed == User(user.id, "alicia", "new", token_version=1, kept_jti="jti-1")
    assert store.get_user_by_name("alice") is None
    assert store.get_user_by_name("alicia") == renamed


def test_rename_to_a_taken_name_raises_name_taken(store):
    store.create_user("alice", "h")
    bob = store.create_user("bob", "h")
    with pytest.raises(NameTaken):
        store.update_user(bob.id, "alice")
    assert store.update_user(bob.id, "bob") == bob  # keeping one's own name is fine
    assert store.update_user(999, "carol") is None


def test_create_user_with_a_taken_name_raises_name_taken(store):
    store.create_user("alice", "h")
    with pytest.raises(NameTaken):
        store.create_user("alice", "other")
    assert store.create_user("Alice", "h").name == "Alice"  # names are case-sensitive, like memory


# --- ships -----------------------------------------------------------------
def test_ship_operations_return_what_the_memory_backend_returns(store):
    memory = MemoryStore()
    for backend in (memory, store):
        backend.create_ship(ship_fields("A"))
        backend.create_ship(ship_fields("B", ()))
        backend.update_ship(1, ship_fields("A2", ("Scout",)))
        backend.delete_ship(2)
        backend.create_ship(ship_fields("C"))
    assert store.list_ships() == memory.list_ships()
    assert [list(s) for s in store.list_ships()] == [list(s) for s in memory.list_ships()]
    assert store.get_ship(1) == memory.get_ship(1)
    assert type(store.get_ship(1)["roles"]) is list
    assert store.update_ship(2, ship_fields()) is None
    assert store.delete_ship(2) is False


def test_list_users_is_ordered_by_id(store):
    store.seed([User(7, "b", "h"), User(2, "a", "h")], [])
    store.create_user("c", "h")
    assert [u.id for u in store.list_users()] == [2, 7, 8]


# --- token blocklist -------------------------------------------------------
def test_revoked_token_is_revoked_and_others_are_not(store):
    store.revoke_token("jti-1", 2_000_000_000)
    store.revoke_token("jti-1", 2_000_000_000)  # a second logout is harmless
    assert store.is_token_revoked("jti-1")
    assert not store.is_token_revoked("jti-2")


def test_purge_forgets_only_expired_revocations_and_counts_them(store):
    now = int(time.time()) + 3600  # all still live now, so revoke's own sweep keeps them
    store.revoke_token("old-1", now - 100)
    store.revoke_token("old-2", now - 1)
    store.revoke_token("edge", now)
    store.revoke_token("live", now + 100)
    assert store.purge_expired_tokens(now) == 2
    assert [store.is_token_revoked(j) for j in ("old-1", "old-2", "edge", "live")] == [
        False,
        False,
        True,
        True,
    ]
    assert store.purge_expired_tokens(now) == 0


def test_revoke_sweeps_expired_revocations_at_most_once_a_minute(store):
    store.revoke_token("expired", 1)  # first revoke in this process sweeps at once ...
    store.revoke_token("expired-too", 1)  # ... the next within a minute doesn't
    assert not store.is_token_revoked("expired")
    assert store.is_token_revoked("expired-too")


# --- several workers and hosts ---------------------------------------------
def test_second_host_sees_writes_at_once(stores):
    first, second = stores(), stores()
    user = first.create_user("alice", "h")
    ship = first.create_ship(ship_fields())
    assert second.get_user(user.id) == user
    assert second.get_ship(ship["id"]) == ship
    first.update_user(user.id, "alice", password_hash="new", kept_jti="j")
    assert second.get_user(user.id).token_version == 1
    first.delete_ship(ship["id"])
    assert second.get_ship(ship["id"]) is None


def test_second_host_sees_revocations_at_once(stores):
    first, second = stores(), stores()
    assert not second.is_token_revoked("jti-1")
    first.revoke_token("jti-1", 2_000_000_000)
    assert second.is_token_revoked("jti-1")


def test_threads_racing_to_first_use_share_one_pool(store, monkeypatch):
    import fleet_api.store.postgres as backend

    opened = []

    class CountingPool(backend.ConnectionPool):
        def __init__(self, *args, **kwargs):
            opened.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(backend, "ConnectionPool", CountingPool)
    results = run_at_once(8, lambda i: store.is_empty())
    assert results == [True] * 8
    assert len(opened) == 1


def test_a_forked_process_opens_its_own_pool(store, monkeypatch):
    store.create_user("alice", "h")
    inherited = store._pool
    monkeypatch.setattr("fleet_api.store.postgres.os.getpid", lambda: -12345)
    try:
        assert store.get_user_by_name("alice") is not None
        assert store._pool is not inherited
    finally:
        monkeypatch.undo()
        inherited.close()  # in a real child this would be the parent's to close
