"""ListQuery and preconditions, once per store backend (memory, SQLite,
PostgreSQL): every backend must give exactly the `Page` the memory reference
(`base.page`) gives, and each table row also names the ids it expects, so the
reference itself is checked and the memory run is not a tautology.

The data is data.json (seeded through `seed_store`) plus a few records made
to catch what SQL gets wrong: LIKE wildcards and a backslash in text, case
variants that only ASCII folding treats as equal, non-ASCII letters (which
nobody folds) and upper/lower case that code-point order sorts apart.
"""

from __future__ import annotations

import psycopg
import pytest

from fleet_api.passwords import PasswordHasher
from fleet_api.seed import seed_store
from fleet_api.store import User
from fleet_api.store.base import ALL, ListQuery, Page, PreconditionFailed
from fleet_api.store.memory import MemoryStore
from fleet_api.store.postgres import PostgresStore

SEED_SHIPS = 15  # in data.json


def ship(affiliation, category, crew, length, manufacturer, model, ship_class, roles=()):
    return {
        "affiliation": affiliation,
        "category": category,
        "crew": crew,
        "length": length,
        "manufacturer": manufacturer,
        "model": model,
        "roles": list(roles),
        "ship_class": ship_class,
    }


EXTRA_SHIPS = [
    # 16: a literal %, _ and backslash
    ship("Independent", "Freighters", 3, 40, "Kuat\\Works", "50% Special", "Cargo_Hauler", ["Freighter"]),
    # 17: what the LIKE patterns of 16's text would also match; affiliation differs only in case
    ship("independent", "freighters", 3, 40, "KuatXWorks", "50X Special", "CargoXHauler"),
    # 18: non-ASCII, which no backend folds
    ship("ÉCOLE", "Starfighters", 0, 5, "école", "Straße", "Ωmega", ["Scout"]),
]
EXTRA_USERS = ["Alice", "bob_", "100%", "Élodie"]  # ids 3..6 after data.json's user, guest


@pytest.fixture(scope="module")
def records():
    """data.json hashed once, so every backend holds the very same users."""
    reference = MemoryStore()
    assert seed_store(reference, _data_path(), PasswordHasher(16))
    return reference.list_users(), reference.list_ships()


def _data_path():
    from fleet_api.settings import Settings

    return Settings(secret_key="x" * 64).data_path


def fill(store, records):
    users, ships = records
    assert store.seed(users, ships)
    for fields in EXTRA_SHIPS:
        store.create_ship(fields)
    for name in EXTRA_USERS:
        store.create_user(name, "hash")
    return store


@pytest.fixture
def reference(records) -> MemoryStore:
    return fill(MemoryStore(), records)


@pytest.fixture
def seeded(store, records):
    return fill(store, records)


def test_fill_gives_every_backend_the_same_ids(seeded, reference):
    assert seeded.list_ships() == reference.list_ships()
    assert [s["id"] for s in seeded.list_ships()] == list(range(1, SEED_SHIPS + 4))
    assert seeded.list_users() == reference.list_users()
    assert [u.id for u in seeded.list_users()] == [1, 2, 3, 4, 5, 6]


def check(subtests, find, reference_find, table):
    for query, ids, total in table:
        with subtests.test(query=query):
            got, expected = find(query), reference_find(query)
            assert got == expected
            assert [list(_keys(r)) for r in got.items] == [list(_keys(r)) for r in expected.items]
            assert ([_id(r) for r in expected.items], expected.total) == (ids, total)


def _id(record):
    return record.id if isinstance(record, User) else record["id"]


def _keys(record):
    return record if isinstance(record, dict) else ()


def Q(**kwargs) -> ListQuery:
    for name in ("equals", "ranges", "sort"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return ListQuery(**kwargs)


ALL_SHIPS = list(range(1, 19))


# --- ships: filters --------------------------------------------------------
EQUALS = [
    (Q(equals=[("affiliation", "empire")]), [2, 3, 6, 7, 9, 10, 14], 7),
    (Q(equals=[("affiliation", "EMPIRE")]), [2, 3, 6, 7, 9, 10, 14], 7),
    (Q(equals=[("affiliation", "Empir")]), [], 0),  # whole value, not a prefix
    (Q(equals=[("affiliation", "INDEPENDENT")]), [16, 17], 2),
    (Q(equals=[("affiliation", "Empire"), ("category", "transports")]), [14], 1),
    (Q(equals=[("ship_class", "cargo_hauler")]), [16], 1),  # _ is no wildcard
    (Q(equals=[("affiliation", "ÉCOLE")]), [18], 1),
    (Q(equals=[("affiliation", "école")]), [], 0),  # É is not ASCII: not folded
    (Q(equals=[("manufacturer", "ÉCOLE")]), [], 0),
]


def test_equals_filters_fold_ascii_case_only(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, EQUALS)


RANGES = [
    (Q(ranges=[("crew", 1000, None)]), [8, 9, 10], 3),
    (Q(ranges=[("crew", None, 0)]), [18], 1),
    (Q(ranges=[("crew", 2, 7)]), [13, 14, 15, 16, 17], 5),
    (Q(ranges=[("length", 1600, 1600)]), [9, 10], 2),
    (Q(ranges=[("crew", 7, 2)]), [], 0),  # empty range
    (Q(ranges=[("crew", 1, 1), ("length", 9, 10)]), [5, 6, 7], 3),
    (Q(ranges=[("crew", None, None)]), ALL_SHIPS, 18),
    (Q(ranges=[("length", 100, None)], equals=[("affiliation", "rebel alliance")]), [8, 11, 12], 3),
]


def test_ranges_are_inclusive_and_combine(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, RANGES)


TEXT = [
    (Q(text="wing"), [1, 4, 5], 3),  # model
    (Q(text="SIENAR"), [2, 3, 6, 7, 14], 5),  # manufacturer
    (Q(text="capital"), [8, 9, 10], 3),  # category
    (Q(text="star destroyer"), [9, 10], 2),  # model and ship_class
    (Q(text="rebel"), [1, 4, 5, 8, 11, 12, 13, 15], 8),  # affiliation
    (Q(text="Hospital Ship"), [], 0),  # roles are not searched
    (Q(text=""), ALL_SHIPS, 18),
    (Q(text="ÉCOLE"), [18], 1),
    (Q(text="ß"), [18], 1),
    (Q(text="STRASSE"), [], 0),  # nor is ß to ss
    (Q(text="tie", equals=[("category", "starfighters")], ranges=[("length", 9, None)]), [6, 7], 2),
]


def test_text_search_is_a_case_insensitive_substring_of_any_text_field(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, TEXT)


WILDCARDS = [
    (Q(text="%"), [16], 1),
    (Q(text="50%"), [16], 1),
    (Q(text="_"), [16], 1),
    (Q(text="o_h"), [16], 1),
    (Q(text="\\"), [16], 1),
    (Q(text="kuat\\w"), [16], 1),
    (Q(text="\\%"), [], 0),
    (Q(text="%%"), [], 0),
    (Q(text="*"), [], 0),
    (Q(text="'"), [], 0),
]


def test_text_search_matches_like_wildcards_and_backslash_literally(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, WILDCARDS)


# --- ships: sorting and paging ---------------------------------------------
SORTS = [
    (Q(sort=[("crew", False)]), [18, 1, 2, 3, 4, 5, 6, 7, 13, 14, 16, 17, 15, 12, 11, 8, 10, 9], 18),
    (Q(sort=[("crew", True)]), [9, 10, 8, 11, 12, 15, 16, 17, 13, 14, 1, 2, 3, 4, 5, 6, 7, 18], 18),
    (Q(sort=[("length", True)], limit=4), [9, 10, 8, 11], 18),
    # code point order: upper case before lower case, non-ASCII last
    (Q(sort=[("affiliation", False)]), [2, 3, 6, 7, 9, 10, 14, 16, 1, 4, 5, 8, 11, 12, 13, 15, 17, 18], 18),
    (Q(sort=[("affiliation", True)]), [18, 17, 1, 4, 5, 8, 11, 12, 13, 15, 16, 2, 3, 6, 7, 9, 10, 14], 18),
    (
        Q(sort=[("category", False), ("length", True)]),
        [9, 10, 8, 11, 12, 16, 4, 1, 5, 7, 6, 3, 2, 18, 15, 13, 14, 17],
        18,
    ),
    (
        Q(sort=[("manufacturer", True), ("model", False)], equals=[("affiliation", "empire")]),
        [14, 6, 7, 2, 3, 9, 10],
        7,
    ),
    (Q(sort=[("ship_class", False)], text="star"), [4, 3, 8, 9, 10, 1, 2, 5, 6, 7, 18], 11),
]


def test_sorts_break_ties_by_id_ascending(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, SORTS)


PAGING = [
    (ALL, ALL_SHIPS, 18),
    (Q(limit=5), [1, 2, 3, 4, 5], 18),
    (Q(limit=5, offset=5), [6, 7, 8, 9, 10], 18),
    (Q(limit=5, offset=15), [16, 17, 18], 18),
    (Q(limit=5, offset=18), [], 18),
    (Q(limit=5, offset=1000), [], 18),
    (Q(limit=0), [], 18),
    (Q(offset=16), [17, 18], 18),
    (Q(offset=1000), [], 18),
    (Q(limit=2, offset=1, sort=[("crew", True)], equals=[("affiliation", "empire")]), [10, 14], 7),
    (Q(limit=2, offset=5, equals=[("affiliation", "empire")]), [10, 14], 7),
    (Q(limit=2, offset=7, equals=[("affiliation", "empire")]), [], 7),
    (Q(limit=3, equals=[("affiliation", "nobody")]), [], 0),
]


def test_limit_and_offset_page_the_sorted_matches_and_keep_the_total(seeded, reference, subtests):
    check(subtests, seeded.find_ships, reference.find_ships, PAGING)


# --- users -----------------------------------------------------------------
USERS = [
    (ALL, [1, 2, 3, 4, 5, 6], 6),
    (Q(text="U"), [1, 2], 2),
    (Q(text="ALICE"), [3], 1),
    (Q(text="_"), [4], 1),
    (Q(text="%"), [5], 1),
    (Q(text="élodie"), [], 0),
    (Q(equals=[("name", "USER")]), [1], 1),
    (Q(sort=[("name", False)]), [5, 3, 4, 2, 1, 6], 6),
    (Q(sort=[("name", True)], limit=2, offset=1), [1, 2], 6),
    (Q(limit=2, offset=6), [], 6),
]


def test_users_search_sort_and_page_by_name(seeded, reference, subtests):
    # user 1 "user", 2 "guest", 3 "Alice", 4 "bob_", 5 "100%", 6 "Élodie"
    check(subtests, seeded.find_users, reference.find_users, USERS)


@pytest.fixture
def icu_store(pg_server, records):
    """PostgreSQL in a database whose default collation is ICU en-US, where
    lower() folds É and text sorts ignore case: only COLLATE "C" in the SQL
    keeps the memory semantics (the test server itself is initdb --locale=C)."""
    with psycopg.connect(pg_server, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP DATABASE IF EXISTS fleet_icu")
        conn.execute(
            "CREATE DATABASE fleet_icu TEMPLATE template0 ENCODING 'UTF8'"
            " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    store = PostgresStore(psycopg.conninfo.make_conninfo(pg_server, dbname="fleet_icu"))
    yield fill(store, records)
    store.close()
    with psycopg.connect(pg_server, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP DATABASE fleet_icu")


def test_postgres_with_a_case_insensitive_default_collation_still_answers_like_the_reference(
    icu_store, reference, subtests
):
    for table in (EQUALS, RANGES, TEXT, WILDCARDS, SORTS, PAGING):
        check(subtests, icu_store.find_ships, reference.find_ships, table)
    check(subtests, icu_store.find_users, reference.find_users, USERS)


def test_list_users_and_list_ships_are_every_record_by_id(seeded, reference):
    assert seeded.list_users() == reference.list_users() == seeded.find_users(ALL).items
    assert seeded.list_ships() == reference.list_ships() == seeded.find_ships(ALL).items
    assert seeded.find_ships(ALL) == Page(reference.list_ships(), 18)


# --- preconditions ---------------------------------------------------------
class Recorder:
    """A precondition that answers `answer` and remembers what it was shown."""

    def __init__(self, answer: bool):
        self.answer, self.seen = answer, []

    def __call__(self, current) -> bool:
        self.seen.append(current)
        return self.answer


NEW_FIELDS = ship("Empire", "Starfighters", 2, 11, "Sienar Fleet Systems", "TIE Advanced x1", "Starfighter")


def test_update_ship_refused_by_its_precondition_raises_and_changes_nothing(seeded):
    before, ships = seeded.get_ship(2), seeded.list_ships()
    refuse = Recorder(False)
    with pytest.raises(PreconditionFailed):
        seeded.update_ship(2, NEW_FIELDS, precondition=refuse)
    assert refuse.seen == [before]
    assert type(refuse.seen[0]["roles"]) is list
    assert seeded.list_ships() == ships


def test_update_ship_allowed_by_its_precondition_applies(seeded):
    before = seeded.get_ship(2)
    allow = Recorder(True)
    updated = seeded.update_ship(2, NEW_FIELDS, precondition=allow)
    assert updated == {"id": 2, **NEW_FIELDS}
    assert allow.seen == [before]
    assert seeded.get_ship(2) == updated


@pytest.mark.parametrize(("kind", "item_id"), [("ship", 2), ("user", 3)])
def test_delete_refused_by_its_precondition_raises_and_keeps_it(seeded, kind, item_id):
    before, items = getattr(seeded, f"get_{kind}")(item_id), getattr(seeded, f"list_{kind}s")()
    refuse = Recorder(False)
    with pytest.raises(PreconditionFailed):
        getattr(seeded, f"delete_{kind}")(item_id, precondition=refuse)
    assert refuse.seen == [before]
    assert getattr(seeded, f"list_{kind}s")() == items


def test_delete_ship_allowed_by_its_precondition_deletes(seeded):
    before = seeded.get_ship(2)
    allow = Recorder(True)
    assert seeded.delete_ship(2, precondition=allow) is True
    assert allow.seen == [before]
    assert seeded.get_ship(2) is None


def test_precondition_on_a_missing_ship_is_not_asked_and_nothing_happens(seeded):
    ask = Recorder(False)
    assert seeded.update_ship(999, NEW_FIELDS, precondition=ask) is None
    assert seeded.delete_ship(999, precondition=ask) is False
    assert ask.seen == []
    assert seeded.find_ships(ALL).total == 18


def test_update_user_refused_by_its_precondition_raises_and_changes_nothing(seeded):
    before, users = seeded.get_user(3), seeded.list_users()
    refuse = Recorder(False)
    with pytest.raises(PreconditionFailed):
        seeded.update_user(3, "Alicia", password_hash="new", kept_jti="j", precondition=refuse)
    assert refuse.seen == [before]
    assert isinstance(refuse.seen[0], User)
    assert seeded.list_users() == users


def test_update_user_allowed_by_its_precondition_applies(seeded):
    before = seeded.get_user(3)
    allow = Recorder(True)
    updated = seeded.update_user(3, "Alicia", password_hash="new", kept_jti="j", precondition=allow)
    assert updated == User(3, "Alicia", "new", token_version=before.token_version + 1, kept_jti="j")
    assert allow.seen == [before]
    assert seeded.get_user(3) == updated


def test_delete_user_allowed_by_its_precondition_deletes(seeded):
    allow = Recorder(True)
    assert seeded.delete_user(3, precondition=allow) is True
    assert seeded.get_user(3) is None


def test_precondition_on_a_missing_user_is_not_asked_and_nothing_happens(seeded):
    ask = Recorder(False)
    assert seeded.update_user(999, "nobody", precondition=ask) is None
    assert seeded.delete_user(999, precondition=ask) is False
    assert ask.seen == []
    assert seeded.find_users(ALL).total == 6


def test_ping_answers(seeded):
    assert seeded.ping() is None
