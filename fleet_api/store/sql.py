"""The SQL half of the stores, shared by SQLite and PostgreSQL.

`SQLStore` holds everything the two backends do alike: the tables, reads,
guarded writes, sessions, failed-login counters, idempotency keys, seeding
and the sweeps. Statements are written once, with `?` placeholders; what the
two databases spell differently is a `Dialect`. A backend supplies its
connections (`_query`, `_write`, `_run`) and the few steps that really differ
(the one-snapshot page and total, the locks that serialize seeding).

Field names only ever come from our own constants (the schemas reject any
other), and every value is a bound parameter.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import math
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from fleet_api.store import base
from fleet_api.store.base import SHIP_FIELDS, ListQuery, Page, SessionRecord, Ship, TokenId, User

MAX_ID = 2**63 - 1  # a 64-bit id column: a larger id can't exist, so don't ask the database
NAME_CONSTRAINT = "users_name_key"


def _sqlite_name_conflict(exc: Exception) -> bool:
    return str(exc) == "UNIQUE constraint failed: users.name"


@dataclasses.dataclass(frozen=True)
class Dialect:
    """What SQLite and PostgreSQL spell differently; everything else is one SQL.
    The defaults are SQLite's (the default store); PostgreSQL's are in postgres.py."""

    name: str = "sqlite"
    collate: str = ""  # makes text compare by code point and fold only ASCII
    # Text as a case-insensitive equality compares it, A-Z = a-z and nothing
    # else: NOCASE folds exactly that, and unlike lower() an index on it can
    # also hand over the row's other columns (a covering index).
    fold: str = "{} COLLATE NOCASE"
    find: str = "instr"  # substring position: unlike LIKE, no wildcard in the needle
    # A range filter's column. SQLite's planner, without statistics, would
    # take any index that narrows a range over one that spares the sort;
    # unary + keeps the term out of index choice (sqlite.org/optoverview.html,
    # "Disqualifying WHERE Clause Terms using Unary-+"), so the sort decides.
    ranged: str = "+{}"
    least: str = "min"  # the smaller of two values
    is_not: str = "IS NOT"  # NULL-safe "differs from"
    # Holds a row read in a write transaction until it commits (SQLite's
    # BEGIN IMMEDIATE already holds the whole database) ...
    for_update: str = ""
    skip_locked: str = ""  # ... and lets a sweep pass over rows another sweep holds
    no_offset_limit: str = " LIMIT -1"  # the LIMIT that means none, before an OFFSET
    serial: str = "INTEGER PRIMARY KEY AUTOINCREMENT"  # numbered by the database, never reused
    int: str = "INTEGER"
    bigint: str = "INTEGER"
    real: str = "REAL"
    blob: str = "BLOB"
    roles: str = "TEXT"  # the ships.roles column: a JSON array here
    # A table whose rows live in its primary key's B-tree, so a lookup by
    # id (the per-request session check) is one index search.
    without_rowid: str = " WITHOUT ROWID"
    unique_violation: type[Exception] = sqlite3.IntegrityError  # what a UNIQUE constraint raises ...
    is_name_conflict: Callable[[Exception], bool] = _sqlite_name_conflict  # ... when it is users.name's
    encode_roles: Callable[[list[str]], Any] = lambda roles: orjson.dumps(roles).decode()
    decode_roles: Callable[[Any], list[str]] = orjson.loads
    # Index names predate the shared schema; kept per backend so existing
    # databases don't grow a second copy of each index.
    index_names: dict[str, str] = dataclasses.field(default_factory=dict)

    # An index's key columns, then columns only read from it: INCLUDE where
    # the database has it, else more key columns.
    include: bool = False
    # An UPDATE rewrites the index entries of every column its SET names,
    # changed or not (SQLite), so it should name only the ones that change:
    # a PUT that changes a ship's crew alone then writes 3 pages, not 4, and
    # one that changes nothing writes none. PostgreSQL compares by itself
    # (a HOT update leaves the indexes alone), so there one UPDATE does.
    set_changed_only: bool = True

    def index(self, name: str) -> str:
        return self.index_names.get(name, name)

    def covering(self, keys: str, read: str) -> str:
        return f"({keys}) INCLUDE ({read})" if self.include else f"({keys}, {read})"


def schema(d: Dialect) -> list[str]:
    """The tables and indexes both backends hold (each adds its ships counter)."""
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS users (
            id {d.serial},
            name TEXT NOT NULL CONSTRAINT {NAME_CONSTRAINT} UNIQUE,
            password_hash TEXT NOT NULL,
            token_version {d.int} NOT NULL DEFAULT 0,
            kept_jti TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS ships (
            id {d.serial}, affiliation TEXT NOT NULL, category TEXT NOT NULL,
            crew {d.bigint} NOT NULL, length {d.bigint} NOT NULL, manufacturer TEXT NOT NULL,
            model TEXT NOT NULL, roles {d.roles} NOT NULL, ship_class TEXT NOT NULL
        )""",
        # The search by affiliation (folded, as where() compares it) in the
        # default order, id: a page walks it and stops after `limit` rows; the
        # range filters and the count read length and crew from the index.
        f"CREATE INDEX IF NOT EXISTS {d.index('ships_affiliation')} ON ships"
        f" {d.covering(d.fold.format('affiliation') + ', id', 'length, crew')}",
        # The same search sorted longest first, then by model (the bench's
        # search): a page walks it in order too instead of sorting every match.
        f"CREATE INDEX IF NOT EXISTS {d.index('ships_affiliation_length')} ON ships"
        f" ({d.fold.format('affiliation')}, length DESC, model{d.collate}, id)",
        f"""CREATE TABLE IF NOT EXISTS revoked_tokens (
            jti TEXT PRIMARY KEY, expires_at {d.bigint} NOT NULL
        ){d.without_rowid}""",
        f"CREATE INDEX IF NOT EXISTS {d.index('revoked_tokens_expiry')} ON revoked_tokens (expires_at)",
        f"""CREATE TABLE IF NOT EXISTS login_failures (
            key TEXT PRIMARY KEY, count {d.int} NOT NULL, window_end {d.bigint} NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {d.index('login_failures_expiry')} ON login_failures (window_end)",
        # Idempotency keys (draft-ietf-httpapi-idempotency-key-header): a
        # reservation (status NULL) until the create's own transaction stores the answer.
        f"""CREATE TABLE IF NOT EXISTS idempotency_keys (
            scope TEXT NOT NULL, key TEXT NOT NULL, token TEXT NOT NULL, fingerprint TEXT NOT NULL,
            lease_until {d.bigint} NOT NULL, expires_at {d.bigint} NOT NULL,
            status {d.int}, location TEXT, body {d.blob},
            PRIMARY KEY (scope, key)
        )""",
        f"CREATE INDEX IF NOT EXISTS {d.index('idempotency_keys_expiry')} ON idempotency_keys (expires_at)",
        # Sessions (fleet_api/sessions.py): one row per login, deleted when it ends.
        f"""CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY, user_id {d.bigint} NOT NULL,
            created_at {d.real} NOT NULL, last_used_at {d.real} NOT NULL, expires_at {d.bigint} NOT NULL,
            user_agent TEXT, ip TEXT NOT NULL,
            refresh_jti TEXT NOT NULL, refresh_iat {d.bigint} NOT NULL, refresh_exp {d.bigint} NOT NULL,
            previous_jti TEXT, rotated_at {d.real}
        ){d.without_rowid}""",
        # A user's sessions in the order they are listed (newest first, ties
        # by id), so the list needs no sort; it replaces (user_id, created_at).
        f"DROP INDEX IF EXISTS {d.index('sessions_user')}",
        f"CREATE INDEX IF NOT EXISTS {d.index('sessions_user_newest')}"
        f" ON sessions (user_id, created_at DESC, id{d.collate})",
        f"CREATE INDEX IF NOT EXISTS {d.index('sessions_expiry')} ON sessions (expires_at)",
    ]


# --- ListQuery -> SQL ----------------------------------------------------------
def where(query: ListQuery, text_fields: tuple[str, ...], dialect: Dialect) -> tuple[str, list]:
    clauses, params = [], []
    c = dialect.collate
    for field, value in query.equals:
        clauses.append(f"{dialect.fold.format(field)} = {dialect.fold.format('?')}")
        params.append(value)
    for field, low, high in query.ranges:
        column = dialect.ranged.format(field)
        if low is not None:
            clauses.append(f"{column} >= ?")
            params.append(low)
        if high is not None:
            clauses.append(f"{column} <= ?")
            params.append(high)
    if query.text is not None:
        clauses.append(
            "(" + " OR ".join(f"{dialect.find}(lower({f}{c}), lower(?{c})) > 0" for f in text_fields) + ")"
        )
        params.extend([query.text] * len(text_fields))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def order_and_page(query: ListQuery, dialect: Dialect, text_fields: tuple[str, ...]) -> tuple[str, list]:
    keys = [
        f"{field}{dialect.collate if field in text_fields else ''} {'DESC' if desc else 'ASC'}"
        for field, desc in query.sort
    ]
    keys.append("id ASC")
    statement = " ORDER BY " + ", ".join(keys)
    params: list = []
    if query.limit is not None:
        statement += " LIMIT ? OFFSET ?"
        params += [query.limit, query.offset]
    elif query.offset:
        statement += f"{dialect.no_offset_limit} OFFSET ?"
        params.append(query.offset)
    return statement, params


# --- rows <-> records -----------------------------------------------------------
USER_COLUMNS = "id, name, password_hash, token_version, kept_jti"
SHIP_COLUMNS = ", ".join(("id",) + SHIP_FIELDS)
SESSION_COLUMNS = (
    "id, user_id, created_at, last_used_at, expires_at, user_agent, ip,"
    " refresh_jti, refresh_iat, refresh_exp, previous_jti, rotated_at"
)
SESSION_COLUMN_COUNT = SESSION_COLUMNS.count(",") + 1


def session_values(s: SessionRecord) -> tuple:
    """The row of a session, in SESSION_COLUMNS order."""
    return (
        s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.user_agent, s.ip,
        s.refresh.jti, s.refresh.iat, s.refresh.exp, s.previous_jti, s.rotated_at,
    )  # fmt: skip


def session_record(row: tuple) -> SessionRecord:
    """The session of a row read with SESSION_COLUMNS."""
    sid, user_id, created_at, last_used_at, expires_at, user_agent, ip, jti, iat, exp, previous, rotated = row
    return SessionRecord(
        sid, user_id, created_at, last_used_at, expires_at, user_agent, ip,
        TokenId(jti, iat, exp), previous, rotated,
    )  # fmt: skip


_COLUMNS = {"users": USER_COLUMNS, "ships": SHIP_COLUMNS}
_INSERT_SHIP = (
    f"INSERT INTO ships ({', '.join(SHIP_FIELDS)}) VALUES ({', '.join('?' * len(SHIP_FIELDS))})"
    f" RETURNING {SHIP_COLUMNS}"
)
_INSERT_USER = f"INSERT INTO users (name, password_hash) VALUES (?, ?) RETURNING {USER_COLUMNS}"


@functools.cache
def _update_ship_columns(changed: tuple[int, ...]) -> str:
    """The UPDATE that sets the SHIP_FIELDS at these positions (at most 255 texts)."""
    assignments = ", ".join(f"{SHIP_FIELDS[i]} = ?" for i in changed)
    return f"UPDATE ships SET {assignments} WHERE id = ? RETURNING {SHIP_COLUMNS}"


_ALL_SHIP_FIELDS = tuple(range(len(SHIP_FIELDS)))
_UPDATE_SHIP = _update_ship_columns(_ALL_SHIP_FIELDS)

_RENAME_USER = f"UPDATE users SET name = ? WHERE id = ? RETURNING {USER_COLUMNS}"
_CHANGE_PASSWORD = (
    "UPDATE users SET name = ?, password_hash = ?, token_version = token_version + 1, kept_jti = ?"
    f" WHERE id = ? RETURNING {USER_COLUMNS}"
)
_INSERT_SESSION = f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({', '.join('?' * SESSION_COLUMN_COUNT)})"
_UPDATE_SESSION = f"UPDATE sessions SET {', '.join(f'{c.strip()} = ?' for c in SESSION_COLUMNS.split(',')[1:])} WHERE id = ?"
# What every authenticated request asks, in one round trip: revoked?, the
# user's session (last use and expiry, NULLs when it has ended or is not
# this user's), and the user (NULLs if none).
_TOKEN_SUBJECT = (
    "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?), s.last_used_at, s.expires_at, "
    + ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
    + " FROM (SELECT 1) AS one LEFT JOIN sessions AS s ON s.id = ? AND s.user_id = ?"
    " LEFT JOIN users AS u ON u.id = ?"
)
# One atomic upsert: a window that has ended starts over at 1.
_COUNT_FAILURE = (
    "INSERT INTO login_failures AS f (key, count, window_end) VALUES (?, 1, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN f.window_end <= ? THEN 1 ELSE f.count + 1 END,"
    " window_end = CASE WHEN f.window_end <= ? THEN excluded.window_end ELSE f.window_end END"
    " RETURNING count, window_end"
)
# Takes the key only when it is free, expired or abandoned (RETURNING says so).
_RESERVE = (
    "INSERT INTO idempotency_keys AS i (scope, key, token, fingerprint, lease_until, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET"
    " token = excluded.token, fingerprint = excluded.fingerprint, status = NULL,"
    " location = NULL, body = NULL, lease_until = excluded.lease_until,"
    " expires_at = excluded.expires_at"
    " WHERE i.expires_at <= ? OR (i.status IS NULL AND i.lease_until <= ?) RETURNING 1"
)
# kind (as in base.Store.purge_expired) -> table, its key, what "expired by ?" means
EXPIRY = {
    "revoked tokens": ("revoked_tokens", "jti", "expires_at < ?"),
    "sessions": ("sessions", "id", "expires_at <= ?"),
    "login failures": ("login_failures", "key", "window_end <= ?"),
    "idempotency keys": ("idempotency_keys", "scope, key", "expires_at <= ?"),
}


def _valid_id(value: int) -> bool:
    return 0 < value <= MAX_ID


def _statement(db, statement: str, params) -> tuple[list[tuple], int]:
    """A job of one statement: (the rows it returned, the rows it changed)."""
    cursor = db.execute(statement, params)
    return (cursor.fetchall() if cursor.description else []), cursor.rowcount


class SQLStore(base.Store):
    """A store on a SQL database; subclasses give the connections and a Dialect."""

    dialect: Dialect

    # --- what a backend supplies ---------------------------------------------
    @abc.abstractmethod
    def _query(self, statement: str, params=()) -> list[tuple]:
        """Every row of one read."""

    @abc.abstractmethod
    def _write(self, job, *args):
        """`job(db, *args)` in one write transaction: its result, or its
        exception after a rollback. `db.execute(statement, params)` as sqlite3."""

    def _run(self, statement: str, params=()) -> tuple[list[tuple], int]:
        """One write statement, its own transaction: (rows returned, rows changed)."""
        return self._write(_statement, statement, params)

    @abc.abstractmethod
    def _page(self, table: str, columns: str, query: ListQuery, text_fields) -> tuple[list[tuple], int]:
        """One page of `query`'s rows and the count of all its matches, from one snapshot."""

    def _lock_seeding(self, db) -> None:
        """Inside the seeding transaction: make concurrent seeders queue."""

    def _after_seeding(self, db) -> None:
        """Inside the seeding transaction: new ids must follow the seeded ones."""

    # --- users -----------------------------------------------------------------
    def find_users(self, query: ListQuery) -> Page:
        rows, total = self._page("users", USER_COLUMNS, query, base.USER_TEXT_FIELDS)
        return Page([User(*row) for row in rows], total)

    def get_user(self, user_id: int) -> User | None:
        if not _valid_id(user_id):
            return None
        rows = self._query(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return User(*rows[0]) if rows else None

    def get_user_by_name(self, name: str) -> User | None:
        rows = self._query(f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return User(*rows[0]) if rows else None

    def create_user(self, name: str, password_hash: str) -> User:
        """The UNIQUE constraint decides races between workers: exactly one wins."""
        with self._name_taken(name):
            rows, _ = self._run(_INSERT_USER, (name, password_hash))
        return User(*rows[0])

    def update_user(self, user_id: int, name: str, password_hash=None, kept_jti=None,
                    precondition=None, kept_sid=None, kept_until=None) -> User | None:  # fmt: skip
        """One UPDATE, so the version bump can't race another password change;
        a precondition is checked on the row held in the same transaction."""
        if not _valid_id(user_id):
            return None
        if password_hash is None:
            statement, params = _RENAME_USER, (name, user_id)
        else:
            statement, params = _CHANGE_PASSWORD, (name, password_hash, kept_jti, user_id)

        def job(db):
            if precondition is not None and not self._guard(db, "users", user_id, precondition):
                return []
            rows = db.execute(statement, params).fetchall()
            if rows and password_hash is not None:
                self._end_sessions(db, user_id, kept_sid)
                if kept_sid is not None and kept_until is not None:
                    db.execute(
                        f"UPDATE sessions SET expires_at = {self.dialect.least}(expires_at, ?)"
                        " WHERE id = ? AND user_id = ?",
                        (kept_until, kept_sid, user_id),
                    )
            return rows

        with self._name_taken(name):
            if precondition is None and password_hash is None:
                rows, _ = self._run(statement, params)
            else:
                rows = self._write(job)
        return User(*rows[0]) if rows else None

    def delete_user(self, user_id: int, precondition=None) -> bool:
        """The user and, in the same transaction, all its sessions."""

        def job(db):
            if precondition is not None and not self._guard(db, "users", user_id, precondition):
                return False
            if db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                return False
            self._end_sessions(db, user_id, None)
            return True

        return _valid_id(user_id) and self._write(job)

    @contextlib.contextmanager
    def _name_taken(self, name: str) -> Iterator[None]:
        """The unique violation on users.name as NameTaken: the database, not
        a check-then-insert, decides which of two racing requests wins."""
        try:
            yield
        except self.dialect.unique_violation as exc:
            if not self.dialect.is_name_conflict(exc):
                raise
            raise base.NameTaken(name) from None

    def _guard(self, db, table: str, row_id: int, precondition) -> tuple | None:
        """Inside a write transaction: the row, None when it is gone, or
        PreconditionFailed when `precondition` (if any) rejects the row as the
        API shows it; the row stays held (FOR UPDATE where the database locks
        rows) until the commit."""
        row = db.execute(
            f"SELECT {_COLUMNS[table]} FROM {table} WHERE id = ?{self.dialect.for_update}", (row_id,)
        ).fetchone()
        if row is not None and precondition is not None:
            base.require(precondition, User(*row) if table == "users" else self._ship(row))
        return row

    # --- ships -----------------------------------------------------------------
    def find_ships(self, query: ListQuery) -> Page:
        rows, total = self._page("ships", SHIP_COLUMNS, query, base.SHIP_TEXT_FIELDS)
        return Page([self._ship(row) for row in rows], total)

    def get_ship(self, ship_id: int) -> Ship | None:
        """None for an id no row can have, without asking the database."""
        if not _valid_id(ship_id):
            return None
        rows = self._query(f"SELECT {SHIP_COLUMNS} FROM ships WHERE id = ?", (ship_id,))
        return self._ship(rows[0]) if rows else None

    def create_ship(self, fields: Ship) -> Ship:
        rows, _ = self._run(_INSERT_SHIP, self._ship_values(fields))
        return self._ship(rows[0])

    def update_ship(self, ship_id: int, fields: Ship, precondition=None) -> Ship | None:
        if not _valid_id(ship_id):
            return None
        values = self._ship_values(fields)
        if precondition is None and not self.dialect.set_changed_only:
            rows, _ = self._run(_UPDATE_SHIP, (*values, ship_id))
            return self._ship(rows[0]) if rows else None

        def job(db):
            row = self._guard(db, "ships", ship_id, precondition)
            if row is None:
                return None
            changed = _ALL_SHIP_FIELDS
            if self.dialect.set_changed_only:
                changed = tuple(i for i in changed if values[i] != row[i + 1])  # row[0] is the id
                if not changed:
                    return row
            return db.execute(
                _update_ship_columns(changed), (*(values[i] for i in changed), ship_id)
            ).fetchall()[0]

        row = self._write(job)
        return self._ship(row) if row else None

    def delete_ship(self, ship_id: int, precondition=None) -> bool:
        if not _valid_id(ship_id):
            return False
        if precondition is None:
            return self._run("DELETE FROM ships WHERE id = ?", (ship_id,))[1] > 0

        def job(db):
            if not self._guard(db, "ships", ship_id, precondition):
                return False
            return db.execute("DELETE FROM ships WHERE id = ?", (ship_id,)).rowcount > 0

        return self._write(job)

    def _ship_values(self, fields: Ship) -> tuple:
        encode = self.dialect.encode_roles
        return tuple(encode(fields[name]) if name == "roles" else fields[name] for name in SHIP_FIELDS)

    def _ship(self, row: tuple) -> Ship:
        ship = dict(zip(("id",) + SHIP_FIELDS, row, strict=True))
        ship["roles"] = self.dialect.decode_roles(ship["roles"])
        return base.ship_record(ship["id"], ship)

    # --- token blocklist -------------------------------------------------------
    def revoke_token(self, jti: str, expires_at: int) -> None:
        """A jti names one token with one expiry, so a repeat is a no-op."""
        self._run(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (jti, expires_at),
        )
        self._sweep("revoked tokens", int(self._clock()))

    def is_token_revoked(self, jti: str) -> bool:
        return bool(self._query("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)))

    def token_subject(self, user_id: int, jti: str, sid: str | None, now: float):
        return self._token_subject(user_id, jti, sid, now)[:2]

    def _token_subject(self, user_id: int, jti: str, sid: str | None, now: float):
        """(user, revoked, until): `until` is the moment (by the store's clock)
        up to which a live answer stays the same unless something is written:
        the session's expiry, or its next touch, whichever comes first."""
        if not _valid_id(user_id):
            return None, self.is_token_revoked(jti), now
        # The session comes back from the same statement: a primary-key lookup more.
        row = self._query(_TOKEN_SUBJECT, (jti, sid, user_id, user_id))[0]
        last_used, expires_at = row[1], row[2]
        live = expires_at is not None and expires_at > now
        user = User(*row[3:]) if row[3] is not None else None
        revoked = self._session_verdict(user, bool(row[0]), sid, last_used if live else None, now)
        if sid is None:  # a token from before sessions: only the user and the blocklist count
            until = math.inf
        else:
            until = min(expires_at, last_used + base.SESSION_TOUCH_INTERVAL) if live else now
        return user, revoked, until

    # --- sessions --------------------------------------------------------------
    def create_session(self, session: SessionRecord) -> None:
        self._run(_INSERT_SESSION, session_values(session))
        self._sweep("sessions", session.created_at)

    def get_session(self, sid: str) -> SessionRecord | None:
        rows = self._query(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (sid,))
        return session_record(rows[0]) if rows else None

    def list_sessions(self, user_id: int, now: float) -> list[SessionRecord]:
        rows = self._query(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND expires_at > ?"
            f" ORDER BY created_at DESC, id{self.dialect.collate}",
            (user_id, now),
        )
        return [session_record(row) for row in rows]

    def touch_session(self, sid: str, now: float) -> None:
        self._run("UPDATE sessions SET last_used_at = ? WHERE id = ? AND last_used_at < ?", (now, sid, now))

    def end_session(self, sid: str, user_id: int) -> bool:
        return self._run("DELETE FROM sessions WHERE id = ? AND user_id = ?", (sid, user_id))[1] > 0

    def end_other_sessions(self, user_id: int, keep_sid: str | None) -> int:
        return self._write(self._end_sessions, user_id, keep_sid)

    def _end_sessions(self, db, user_id: int, keep_sid: str | None) -> int:
        """Inside a write transaction: end the user's sessions but `keep_sid`."""
        return db.execute(
            f"DELETE FROM sessions WHERE user_id = ? AND id {self.dialect.is_not} ?", (user_id, keep_sid)
        ).rowcount

    def rotate_refresh(self, sid, jti, successor: TokenId | None, now, grace):
        if successor is None:
            # Rotation off: the live token is the common case and needs no write.
            session = self.get_session(sid)
            if session is not None and session.refresh.jti == jti and session.expires_at > now:
                return base.rotation_step(session, jti, None, now, grace)[:2]

        # The session's row is held from the read to the commit, so of racing
        # workers on any host exactly one sees the live token.
        def job(db):
            row = db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?{self.dialect.for_update}", (sid,)
            ).fetchone()
            before = session_record(row) if row else None
            outcome, token, after = base.rotation_step(before, jti, successor, now, grace)
            if after is None:
                db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            elif after != before:
                db.execute(_UPDATE_SESSION, (*session_values(after)[1:], after.id))
            return outcome, token

        return self._write(job)

    # --- failed-login counters -------------------------------------------------
    def count_failure(self, key: str, window: int, now: int) -> tuple[int, int]:
        rows, _ = self._run(_COUNT_FAILURE, (key, now + window, now, now))
        self._sweep("login failures", now)
        return rows[0][0], rows[0][1]

    def failures(self, key: str, now: int) -> tuple[int, int]:
        rows = self._query(
            "SELECT count, window_end FROM login_failures WHERE key = ? AND window_end > ?", (key, now)
        )
        return (rows[0][0], rows[0][1]) if rows else (0, now)

    def clear_failures(self, key: str) -> None:
        self._run("DELETE FROM login_failures WHERE key = ?", (key,))

    # --- idempotency keys ------------------------------------------------------
    def reserve_idempotency(self, claim, fingerprint, now, lease_until, expires_at):
        """One upsert that takes the key only when it is free, expired or
        abandoned; otherwise the row (held by the upsert, so an answer being
        committed is waited for) is read in the same transaction."""

        def job(db):
            params = (claim.scope, claim.key, claim.token, fingerprint, lease_until, expires_at, now, now)
            if db.execute(_RESERVE, params).fetchall():
                return True, None
            return False, db.execute(
                "SELECT fingerprint, status, location, body FROM idempotency_keys WHERE scope = ? AND key = ?",
                (claim.scope, claim.key),
            ).fetchone()

        try:
            for _ in range(3):  # a row swept between the two statements had expired: try again
                taken, row = self._write(job)
                if taken:
                    return None
                if row is not None:
                    answer = (
                        base.IdempotentAnswer(row[1], row[2], bytes(row[3])) if row[1] is not None else None
                    )
                    return base.IdempotencyRecord(row[0], answer)
            return base.IdempotencyRecord(fingerprint, None)  # still contended: the caller answers 409
        finally:
            self._sweep("idempotency keys", now)

    def _claimed(self, db, claim) -> None:
        """Inside the create's transaction: the reservation is still ours and
        unanswered, and stays held until the commit."""
        if not db.execute(
            "SELECT 1 FROM idempotency_keys WHERE scope = ? AND key = ? AND token = ? AND status IS NULL"
            + self.dialect.for_update,
            (claim.scope, claim.key, claim.token),
        ).fetchone():
            raise base.IdempotencyLost(claim.key)

    @staticmethod
    def _answered(db, claim, result: base.IdempotentAnswer) -> base.IdempotentAnswer:
        db.execute(
            "UPDATE idempotency_keys SET status = ?, location = ?, body = ? WHERE scope = ? AND key = ?",
            (result.status, result.location, result.body, claim.scope, claim.key),
        )
        return result

    def create_ship_once(self, fields, claim, answer):
        def job(db):
            self._claimed(db, claim)
            row = db.execute(_INSERT_SHIP, self._ship_values(fields)).fetchone()
            return self._answered(db, claim, answer(self._ship(row)))

        return self._write(job)

    def create_user_once(self, name, password_hash, claim, answer):
        def job(db):
            self._claimed(db, claim)
            row = db.execute(_INSERT_USER, (name, password_hash)).fetchone()
            return self._answered(db, claim, answer(User(*row)))

        with self._name_taken(name):
            return self._write(job)

    def release_idempotency(self, claim) -> None:
        self._run(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND token = ? AND status IS NULL",
            (claim.scope, claim.key, claim.token),
        )

    # --- expiry ----------------------------------------------------------------
    def _delete_expired(self, kind: str, now: float) -> int:
        table, key, expired = EXPIRY[kind]
        if self.dialect.skip_locked:
            # Rows another sweep holds are left to it: sweepers never queue.
            statement = (
                f"DELETE FROM {table} WHERE ({key}) IN"
                f" (SELECT {key} FROM {table} WHERE {expired}{self.dialect.skip_locked})"
            )
        else:
            statement = f"DELETE FROM {table} WHERE {expired}"
        # Expiries are whole seconds: compare with a whole second the same way
        # (e <= 5.5 is e <= 5, e < 5.5 is e < 6), since a fractional bound makes
        # PostgreSQL cast the column, and a cast column can't use its index.
        bound = math.floor(now) if "<=" in expired else math.ceil(now)
        return self._run(statement, (bound,))[1]

    # --- lifecycle -------------------------------------------------------------
    def ping(self) -> None:
        self._query("SELECT 1")

    def is_empty(self) -> bool:
        return not self._query("SELECT 1 FROM meta WHERE key = 'seeded'")

    def seed(self, users, ships) -> bool:
        """Checked and written in one serialized transaction, so of many
        workers starting at once exactly one seeds; the rest see the 'seeded'
        mark and return False, as does every later start, even once all rows
        are gone."""

        def job(db):
            self._lock_seeding(db)
            if db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
                return False
            db.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (str(int(self._clock())),))
            db.executemany(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [(u.id, u.name, u.password_hash, u.token_version, u.kept_jti) for u in users],
            )
            db.executemany(
                f"INSERT INTO ships ({SHIP_COLUMNS}) VALUES ({', '.join('?' * (len(SHIP_FIELDS) + 1))})",
                [(s["id"], *self._ship_values(s)) for s in ships],
            )
            self._after_seeding(db)
            return True

        return self._write(job)
