"""Every query behind the API's requests is served by an index (issue 12), on
SQLite and PostgreSQL.

Each case makes the store calls of one kind of request, on a store of a few
thousand ships, revoked ids and sessions, and records the statements the store
really ran; the database then explains each one: EXPLAIN QUERY PLAN on SQLite,
EXPLAIN on PostgreSQL with sequential scans priced out (on tables this small
the planner would rightly prefer one: the question is whether an index *can*
serve the query). What may scan a whole index is only what has to count or
skip every row: X-Total-Count and a deep page's offset, over the narrowest
index there is.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from support.bodies import TIE_FIGHTER

from fleet_api.store import SessionRecord, TokenId, User, open_store
from fleet_api.store.base import IdempotencyClaim, IdempotentAnswer, ListQuery
from fleet_api.store.sqlite import DEFERRED_OFFSET

SHIPS = 3_000
REVOKED = 1_000
SESSIONS = 100  # per user
NOW = 1_900_000_000.0
AFFILIATIONS = ("Empire", "Rebel Alliance", "Independent", "First Order", "Resistance")
SEARCH = ListQuery(equals=(("affiliation", "empire"),), ranges=(("length", 100, None),), limit=50)
SORTED_SEARCH = ListQuery(
    equals=(("affiliation", "empire"),),
    ranges=(("length", 100, None),),
    sort=(("length", True), ("model", False)),
    limit=5,
)
DEEP = ListQuery(limit=50, offset=SHIPS - 50)


def session(sid: str, user_id: int) -> SessionRecord:
    return SessionRecord(
        sid, user_id, NOW, NOW, int(NOW) + 3600, "agent", "192.0.2.1", TokenId(sid, int(NOW), 0)
    )


def fill(store) -> None:
    ships = [
        {**TIE_FIGHTER, "id": i, "affiliation": AFFILIATIONS[i % 5], "crew": i % 97, "length": i % 1000}
        for i in range(1, SHIPS + 1)
    ]
    assert store.seed([User(1, "user", "h"), User(2, "guest", "h")], ships)
    for i in range(REVOKED):
        store.revoke_token(f"jti-{i}", int(NOW) + i)
    for user_id in (1, 2):
        for i in range(SESSIONS):
            store.create_session(session(f"{user_id}-{i:03}".ljust(22, "s"), user_id))


def claim(key: str) -> IdempotencyClaim:
    return IdempotencyClaim("ships", key, "token")


# request -> the store calls it makes
REQUESTS = {
    "GET /api/ships?affiliation=empire&length_min=100&limit=50": lambda s: s.find_ships(SEARCH),
    "GET /api/ships?affiliation=empire&length_min=100&sort=-length,model&limit=5": lambda s: s.find_ships(
        SORTED_SEARCH
    ),
    f"GET /api/ships?limit=50&offset={DEEP.offset}": lambda s: s.find_ships(DEEP),
    "GET /api/ships/2": lambda s: s.get_ship(2),
    "PUT /api/ships/2": lambda s: s.update_ship(2, {**TIE_FIGHTER, "crew": 7}),
    "PUT /api/ships/2 If-Match": lambda s: s.update_ship(2, TIE_FIGHTER, precondition=lambda ship: True),
    "DELETE /api/ships/3 If-Match": lambda s: s.delete_ship(3, precondition=lambda ship: True),
    "the token check of every request": lambda s: s.token_subject(1, "jti-5", "1-005".ljust(22, "s"), NOW),
    "POST /auth/login": lambda s: (
        s.failures("user", int(NOW)),
        s.get_user_by_name("user"),
        s.count_failure("user", 60, int(NOW)),
        s.clear_failures("user"),
        s.create_session(session("new".ljust(22, "s"), 1)),
    ),
    "POST /auth/logout": lambda s: s.revoke_token("jti-new", int(NOW) + 900),
    "POST /auth/refresh": lambda s: s.rotate_refresh(
        "1-007".ljust(22, "s"), "1-007".ljust(22, "s"), TokenId("next", int(NOW), int(NOW) + 7200), NOW, 10.0
    ),
    "GET /auth/sessions": lambda s: s.list_sessions(1, NOW),
    "DELETE /auth/sessions/{sid}": lambda s: s.end_session("1-009".ljust(22, "s"), 1),
    "PUT /api/users/2 with a new password": lambda s: s.update_user(
        2, "guest", "h2", "kept", kept_sid="2-001".ljust(22, "s"), kept_until=int(NOW) + 900
    ),
    "python -m fleet_api.purge (and each sweep)": lambda s: s.purge_expired(NOW + 0.5),
    "POST /api/ships Idempotency-Key": lambda s: (
        s.reserve_idempotency(claim("k"), "fp", int(NOW), int(NOW) + 60, int(NOW) + 86400),
        s.create_ship_once(TIE_FIGHTER, claim("k"), lambda ship: IdempotentAnswer(201, "/x", b"{}")),
    ),
}
# What a request's plan must name: the index made for it.
EXPECTED = {
    "GET /api/ships?affiliation=empire&length_min=100&limit=50": {
        "sqlite": "ships_affiliation",
        # PostgreSQL's planner may count through either affiliation index (its
        # bitmap scan narrows the range too); the page then walks the ids.
        "postgres": "ships_affiliation",
    },
    "GET /api/ships?affiliation=empire&length_min=100&sort=-length,model&limit=5": {
        "sqlite": "ships_affiliation_length",
        "postgres": "ships_affiliation_length",
    },
    f"GET /api/ships?limit=50&offset={DEEP.offset}": {"sqlite": "ships_ids", "postgres": "ships_pkey"},
    "GET /auth/sessions": {"sqlite": "sessions_user_newest", "postgres": "sessions_user_newest_idx"},
}


# --- SQLite ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("plans") / "fleet.db"
    store = open_store(f"sqlite:///{path}?synchronous=normal")
    fill(store)
    yield store, path
    store.close()


def sqlite_plans(store, path, request: str) -> dict[str, list[str]]:
    """Each statement the request ran (values inlined by SQLite's trace) -> its plan."""
    ran: list[str] = []
    # Reads run on this thread's connection, writes on the group commit's.
    connections = (store._db(), store._group._db)
    for db in connections:
        db.set_trace_callback(ran.append)
    try:
        REQUESTS[request](store)
    finally:
        for db in connections:
            db.set_trace_callback(None)
    statements = [s for s in ran if s.split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    assert statements, ran
    with sqlite3.connect(path) as db:
        return {s: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {s}")] for s in statements}


@pytest.mark.parametrize("request_name", REQUESTS)
def test_sqlite_serves_every_query_from_an_index(sqlite_store, request_name):
    store, path = sqlite_store
    plans = sqlite_plans(store, path, request_name)
    for statement, plan in plans.items():
        for step in plan:
            # A whole-index scan only where every row must be counted or
            # skipped, and only over an index that covers the query.
            if step.startswith("SCAN") and step not in ("SCAN CONSTANT ROW", "SCAN one"):  # one row
                assert "USING COVERING INDEX" in step, (statement, plan)
            assert "TEMP B-TREE" not in step, (statement, plan)
    if request_name in EXPECTED:
        index = EXPECTED[request_name]["sqlite"]
        assert any(f"INDEX {index} " in f"{step} " for plan in plans.values() for step in plan), plans


def test_sqlite_skips_a_deep_offset_over_ids_alone(sqlite_store):
    store, path = sqlite_store
    plans = sqlite_plans(store, path, f"GET /api/ships?limit=50&offset={DEEP.offset}")
    page = next(plan for statement, plan in plans.items() if "count(*)" not in statement)
    assert "SCAN ships USING COVERING INDEX ships_ids" in page, page  # the offset: ids only
    assert any(step.startswith("SEARCH ships USING INTEGER PRIMARY KEY") for step in page), (
        page
    )  # the 50 rows


def test_sqlite_counts_a_search_from_its_index_alone(sqlite_store):
    """X-Total-Count reads every match: from the index, not from the rows."""
    store, path = sqlite_store
    plans = sqlite_plans(store, path, "GET /api/ships?affiliation=empire&length_min=100&limit=50")
    count = next(plan for statement, plan in plans.items() if "count(*)" in statement)
    assert count == ["SEARCH ships USING COVERING INDEX ships_affiliation (affiliation=?)"], count


@pytest.mark.parametrize(
    "query",
    [
        ListQuery(limit=50, offset=DEFERRED_OFFSET + 30),
        ListQuery(limit=7, offset=DEFERRED_OFFSET, sort=(("length", True), ("model", False))),
        ListQuery(offset=DEFERRED_OFFSET + 10, equals=(("affiliation", "EMPIRE"),)),
        ListQuery(limit=5, offset=SHIPS + 10),
    ],
    ids=["plain", "sorted", "filtered-no-limit", "past-the-end"],
)
def test_a_deep_page_found_through_its_ids_is_the_same_page(sqlite_store, query):
    """SQLite's deep pages (ids first) answer what the reference backend does."""
    store, _ = sqlite_store
    reference = open_store("memory://")
    reference.seed([], store.list_ships())
    assert store.find_ships(query) == reference.find_ships(query)


# --- PostgreSQL -----------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_plans_url(pg_server):
    """A database of its own, filled once for the module."""
    with psycopg.connect(pg_server, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP DATABASE IF EXISTS fleet_plans")
        conn.execute("CREATE DATABASE fleet_plans")
    url = pg_server.rsplit("/", 1)[0] + "/fleet_plans"  # the same server, this database
    store = open_store(url)
    fill(store)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")  # the planner's statistics, as autovacuum would gather them
    yield url, store
    store.close()
    with psycopg.connect(pg_server, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP DATABASE fleet_plans")


@pytest.mark.parametrize("request_name", REQUESTS)
def test_postgres_serves_every_query_from_an_index(pg_plans_url, request_name, monkeypatch):
    url, store = pg_plans_url
    ran: list[tuple] = []
    execute = psycopg.Connection.execute

    def recording(conn, query, params=None, **kwargs):
        ran.append((query, params))
        return execute(conn, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    REQUESTS[request_name](store)
    monkeypatch.undo()
    statements = [(q, p) for q, p in ran if q.split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    assert statements, ran
    plans = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        for query, params in statements:
            plans[query] = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}", params))
    for query, plan in plans.items():
        assert "Seq Scan" not in plan, (query, plan)
    if request_name in EXPECTED:
        index = EXPECTED[request_name]["postgres"]
        assert any(f" {index}" in plan for plan in plans.values()), plans
