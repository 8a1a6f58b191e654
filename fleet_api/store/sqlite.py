"""SQLite store: one database file shared by every worker process of a host.

WAL lets readers run while one writer commits; `synchronous=FULL` makes a
commit durable before we answer. Every write takes the write lock up front
(`BEGIN IMMEDIATE`), so concurrent writers queue instead of deadlocking on a
lock upgrade, and each public method is one transaction (or, when writes
of several threads meet, one savepoint of their shared transaction).

Writers first queue on an flock of `<db>.lock`: SQLite's own busy handler
polls with sleeps of up to 100 ms, so under contention a writer could sleep
long after the lock came free; the kernel wakes an flock waiter at once.

Writes go through a group commit (groupcommit.py): the concurrent writes of
one process share one transaction and one fsync, each in its own savepoint,
and each caller returns after that COMMIT. Around a COMMIT that moves the
ships counter the group moves a word in shared memory (sharedversion.py),
which is what `ships_version()` reads: no SQL per cached read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import orjson

from fleet_api.store import sql
from fleet_api.store.base import (
    SHIP_FIELDS,
    SHIP_TEXT_FIELDS,
    USER_TEXT_FIELDS,
    IdempotencyLost,
    IdempotencyRecord,
    IdempotentAnswer,
    ListQuery,
    NameTaken,
    Page,
    SessionRecord,
    Ship,
    Store,
    TokenId,
    User,
    require,
    rotation_step,
    ship_record,
)
from fleet_api.store.groupcommit import GroupCommit
from fleet_api.store.sharedversion import SharedVersion

BUSY_TIMEOUT_MS = 30_000
# FULL: a commit is on disk before we answer. NORMAL (an explicit choice in
# the URL): it survives a crash of the process, not of the machine.
SYNCHRONOUS_MODES = ("full", "normal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 0,
    kept_jti TEXT
);
CREATE TABLE IF NOT EXISTS ships (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    affiliation TEXT NOT NULL,
    category TEXT NOT NULL,
    crew INTEGER NOT NULL,
    length INTEGER NOT NULL,
    manufacturer TEXT NOT NULL,
    model TEXT NOT NULL,
    roles TEXT NOT NULL,
    ship_class TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('ships', 0);
CREATE TRIGGER IF NOT EXISTS ships_inserted AFTER INSERT ON ships
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'ships'; END;
CREATE TRIGGER IF NOT EXISTS ships_updated AFTER UPDATE ON ships
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'ships'; END;
CREATE TRIGGER IF NOT EXISTS ships_deleted AFTER DELETE ON ships
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'ships'; END;
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    window_end INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_expiry ON login_failures (window_end);
"""

# Idempotency keys (draft-ietf-httpapi-idempotency-key-header): a reservation
# (status NULL) until the create's own transaction stores the answer.
IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    token TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status INTEGER,
    location TEXT,
    body BLOB,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);
"""

# Sessions (fleet_api/sessions.py): one row per login, deleted when it ends.
# WITHOUT ROWID: the row lives in the primary key's B-tree, so the per-request
# check by id is a single index lookup.
SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT,
    ip TEXT NOT NULL,
    refresh_jti TEXT NOT NULL,
    refresh_iat INTEGER NOT NULL,
    refresh_exp INTEGER NOT NULL,
    previous_jti TEXT,
    rotated_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, created_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
"""

_SESSION_UPDATE, _session_update_params = sql.session_update(sql.SQLITE)

_USER_COLUMNS = "id, name, password_hash, token_version, kept_jti"
_SHIP_COLUMNS = ", ".join(("id",) + SHIP_FIELDS)
_INSERT_SHIP = (
    f"INSERT INTO ships ({', '.join(SHIP_FIELDS)}) VALUES ({', '.join('?' * len(SHIP_FIELDS))})"
    f" RETURNING {_SHIP_COLUMNS}"
)
_INSERT_USER = f"INSERT INTO users (name, password_hash) VALUES (?, ?) RETURNING {_USER_COLUMNS}"
_SHIP_ASSIGNMENTS = ", ".join(f"{name} = ?" for name in SHIP_FIELDS)


def parse_url(url: str) -> tuple[Path, str]:
    """sqlite:///relative/path.db or sqlite:////absolute/path.db, optionally
    `?synchronous=normal` (default `full`: fsync on every commit)."""
    prefix = "sqlite:///"
    location, _, options = url.partition("?")
    if not location.startswith(prefix) or len(location) == len(prefix):
        raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///path/to/fleet.db")
    params = urllib.parse.parse_qs(options, strict_parsing=bool(options))
    synchronous = params.pop("synchronous", ["full"])[-1].lower()
    if params or synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"bad SQLite URL {url!r}: the only option is synchronous=full|normal")
    return Path(location[len(prefix) :]), synchronous


class SQLiteStore(Store):
    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.path, self._synchronous = parse_url(url)
        self._clock = clock  # epoch seconds, for what no caller dates
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._group: GroupCommit | None = None
        self._group_pid: int | None = None
        self._version = SharedVersion(f"{self.path}.version")
        self._write(_create_schema)  # its commit also publishes the counter of this database

    # --- connections -------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        """One connection per thread, made anew in a forked child."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = self._connect()
            self._local.db, self._local.pid = db, os.getpid()
            with self._connections_lock:
                self._connections.append(db)
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        return db

    def _write(self, job, *args):
        """Run `job(db, *args)` in one write transaction and return its result.

        A job is a function of the connection (it fetches what it needs before
        returning), so several jobs can share one transaction; if it raises,
        its effects are rolled back and the exception propagates unchanged.
        It runs in this process's next group commit, possibly in another
        thread (the leader's), and returns after that group's COMMIT, so
        after its fsync with `synchronous=FULL`.
        """
        group = self._group
        if group is None or self._group_pid != os.getpid():
            with self._connections_lock:
                if self._group is None or self._group_pid != os.getpid():
                    # A forked child makes its own: its own writer connection and flock.
                    self._group = GroupCommit(
                        self._connect, f"{self.path}.lock", self._version, _ships_counter
                    )
                    self._group_pid = os.getpid()
                group = self._group
        return group.run((lambda db: job(db, *args)) if args else job)

    def _query(self, sql: str, params=()) -> list[tuple]:
        return self._db().execute(sql, params).fetchall()

    # --- users -------------------------------------------------------------
    def _find(self, table: str, columns: str, query: ListQuery, text_fields) -> tuple[list, int]:
        where, params = sql.where(query, text_fields, sql.SQLITE)
        tail, tail_params = sql.order_and_page(query, sql.SQLITE, text_fields)
        db = self._db()
        # One read transaction, so the page and its total agree.
        db.execute("BEGIN")
        try:
            rows = db.execute(f"SELECT {columns} FROM {table}{where}{tail}", params + tail_params).fetchall()
            if query.limit is None and not query.offset:
                total = len(rows)
            else:
                total = db.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
        finally:
            db.execute("COMMIT")
        return rows, total

    def find_users(self, query: ListQuery) -> Page:
        rows, total = self._find("users", _USER_COLUMNS, query, USER_TEXT_FIELDS)
        return Page([User(*row) for row in rows], total)

    def get_user(self, user_id: int) -> User | None:
        rows = self._query(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return User(*rows[0]) if rows else None

    def get_user_by_name(self, name: str) -> User | None:
        rows = self._query(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return User(*rows[0]) if rows else None

    def create_user(self, name: str, password_hash: str) -> User:
        try:
            row = self._write(lambda db: db.execute(_INSERT_USER, (name, password_hash)).fetchone())
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None
        return User(*row)

    def update_user(
        self,
        user_id,
        name,
        password_hash=None,
        kept_jti=None,
        precondition=None,
        kept_sid=None,
        kept_until=None,
    ):
        def job(db):
            if precondition is not None and not _guard(db, "users", user_id, precondition):
                return None
            if password_hash is None:
                cursor = db.execute(
                    f"UPDATE users SET name = ? WHERE id = ? RETURNING {_USER_COLUMNS}",
                    (name, user_id),
                )
            else:
                cursor = db.execute(
                    "UPDATE users SET name = ?, password_hash = ?, "
                    "token_version = token_version + 1, kept_jti = ? "
                    f"WHERE id = ? RETURNING {_USER_COLUMNS}",
                    (name, password_hash, kept_jti, user_id),
                )
            row = cursor.fetchone()
            if row is not None and password_hash is not None:
                _end_sessions(db, user_id, kept_sid)
                if kept_sid is not None and kept_until is not None:
                    db.execute(
                        "UPDATE sessions SET expires_at = min(expires_at, ?) WHERE id = ? AND user_id = ?",
                        (kept_until, kept_sid, user_id),
                    )
            return row

        try:
            row = self._write(job)
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None
        return User(*row) if row else None

    def delete_user(self, user_id: int, precondition=None) -> bool:
        def job(db):
            if precondition is not None and not _guard(db, "users", user_id, precondition):
                return False
            if db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                return False
            _end_sessions(db, user_id, None)
            return True

        return self._write(job)

    # --- ships -------------------------------------------------------------
    def find_ships(self, query: ListQuery) -> Page:
        rows, total = self._find("ships", _SHIP_COLUMNS, query, SHIP_TEXT_FIELDS)
        return Page([_ship(row) for row in rows], total)

    def get_ship(self, ship_id: int) -> Ship | None:
        rows = self._query(f"SELECT {_SHIP_COLUMNS} FROM ships WHERE id = ?", (ship_id,))
        return _ship(rows[0]) if rows else None

    def create_ship(self, fields: Ship) -> Ship:
        rows = self._write(lambda db: db.execute(_INSERT_SHIP, _ship_values(fields)).fetchall())
        return _ship(rows[0])

    def update_ship(self, ship_id: int, fields: Ship, precondition=None) -> Ship | None:
        sql = f"UPDATE ships SET {_SHIP_ASSIGNMENTS} WHERE id = ? RETURNING {_SHIP_COLUMNS}"
        params = (*_ship_values(fields), ship_id)

        def job(db):
            if precondition is not None and not _guard(db, "ships", ship_id, precondition):
                return []
            return db.execute(sql, params).fetchall()

        rows = self._write(job)
        return _ship(rows[0]) if rows else None

    def delete_ship(self, ship_id: int, precondition=None) -> bool:
        if precondition is None:
            return bool(
                self._write(
                    lambda db: db.execute(
                        "DELETE FROM ships WHERE id = ? RETURNING id", (ship_id,)
                    ).fetchall()
                )
            )

        def job(db):
            if not _guard(db, "ships", ship_id, precondition):
                return False
            return db.execute("DELETE FROM ships WHERE id = ?", (ship_id,)).rowcount > 0

        return self._write(job)

    def ships_version(self) -> int | None:
        # The counter the triggers bump inside each ship write, as the group
        # commit publishes it in shared memory around the COMMIT; None while
        # one is in flight (see sharedversion.py).
        return self._version.read()

    # --- token blocklist ---------------------------------------------------
    def revoke_token(self, jti: str, expires_at: int) -> None:
        # The purge rides along with each revocation: one indexed range delete,
        # so the table never holds much more than the tokens still alive.
        def job(db):
            db.execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (jti, expires_at),
            )
            db.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (int(self._clock()),))

        self._write(job)

    def is_token_revoked(self, jti: str) -> bool:
        return bool(self._query("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)))

    def token_subject(self, user_id: int, jti: str, sid: str | None, now: float):
        # The session's last use comes back from the same statement (NULL
        # when the session has ended or expired): a primary-key lookup more.
        row = self._query(
            "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?),"
            " (SELECT last_used_at FROM sessions WHERE id = ? AND user_id = ? AND expires_at > ?),"
            f" {_USER_COLUMNS} FROM (SELECT 1) LEFT JOIN users ON users.id = ?",
            (jti, sid, user_id, now, user_id),
        )[0]
        user = User(*row[2:]) if row[2] is not None else None
        return user, self._session_verdict(user, bool(row[0]), sid, row[1], now)

    def purge_expired_tokens(self, now: int) -> int:
        return self._write(
            lambda db: db.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now,)).rowcount
        )

    # --- sessions ----------------------------------------------------------
    def create_session(self, session: SessionRecord) -> None:
        # Expired sessions are swept with each login, as revocations are with
        # each logout: one indexed range delete keeps the table bounded.
        def job(db):
            db.execute(
                f"INSERT INTO sessions ({sql.SESSION_COLUMNS}) VALUES ({', '.join('?' * sql.SESSION_COLUMN_COUNT)})",
                sql.session_values(session),
            )
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (session.created_at,))

        self._write(job)

    def get_session(self, sid: str) -> SessionRecord | None:
        rows = self._query(f"SELECT {sql.SESSION_COLUMNS} FROM sessions WHERE id = ?", (sid,))
        return sql.session_record(rows[0]) if rows else None

    def list_sessions(self, user_id: int, now: float) -> list[SessionRecord]:
        rows = self._query(
            f"SELECT {sql.SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND expires_at > ?"
            " ORDER BY created_at DESC, id",
            (user_id, now),
        )
        return [sql.session_record(row) for row in rows]

    def touch_session(self, sid: str, now: float) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE sessions SET last_used_at = ? WHERE id = ? AND last_used_at < ?", (now, sid, now)
            ).fetchall()
        )

    def end_session(self, sid: str, user_id: int) -> bool:
        return bool(
            self._write(
                lambda db: db.execute(
                    "DELETE FROM sessions WHERE id = ? AND user_id = ? RETURNING id", (sid, user_id)
                ).fetchall()
            )
        )

    def end_other_sessions(self, user_id: int, keep_sid: str | None) -> int:
        return self._write(_end_sessions, user_id, keep_sid)

    def rotate_refresh(self, sid, jti, successor: TokenId | None, now, grace):
        if successor is None:
            # Rotation off: the live token is the common case and needs no write.
            session = self.get_session(sid)
            if session is not None and session.refresh.jti == jti and session.expires_at > now:
                return rotation_step(session, jti, None, now, grace)[:2]

        # BEGIN IMMEDIATE: the row is read and written under the write lock,
        # so of racing workers exactly one sees the live token.
        def job(db):
            row = db.execute(f"SELECT {sql.SESSION_COLUMNS} FROM sessions WHERE id = ?", (sid,)).fetchone()
            before = sql.session_record(row) if row else None
            outcome, token, after = rotation_step(before, jti, successor, now, grace)
            if after is None:
                db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            elif after != before:
                db.execute(_SESSION_UPDATE, _session_update_params(after))
            return outcome, token

        return self._write(job)

    def purge_expired_sessions(self, now: float) -> int:
        return self._write(
            lambda db: db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
        )

    # --- failed-login counters ---------------------------------------------
    def count_failure(self, key: str, window: int, now: int) -> tuple[int, int]:
        def job(db):
            db.execute("DELETE FROM login_failures WHERE window_end <= ?", (now,))
            return db.execute(
                "INSERT INTO login_failures (key, count, window_end) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET count = count + 1 RETURNING count, window_end",
                (key, now + window),
            ).fetchone()

        return self._write(job)

    def failures(self, key: str, now: int) -> tuple[int, int]:
        rows = self._query(
            "SELECT count, window_end FROM login_failures WHERE key = ? AND window_end > ?", (key, now)
        )
        return tuple(rows[0]) if rows else (0, now)

    def clear_failures(self, key: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM login_failures WHERE key = ?", (key,)))

    # --- idempotency keys -------------------------------------------------
    def reserve_idempotency(self, claim, fingerprint, now, lease_until, expires_at):
        def job(db):
            # The sweep rides along, like revocations': one indexed range delete.
            db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
            row = db.execute(
                "SELECT fingerprint, status, location, body, lease_until FROM idempotency_keys"
                " WHERE scope = ? AND key = ?",
                (claim.scope, claim.key),
            ).fetchone()
            if row and (row[1] is not None or row[4] > now):
                answer = IdempotentAnswer(row[1], row[2], bytes(row[3])) if row[1] is not None else None
                return IdempotencyRecord(row[0], answer)
            db.execute(
                "INSERT INTO idempotency_keys (scope, key, token, fingerprint, lease_until, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET"
                " token = excluded.token, fingerprint = excluded.fingerprint, status = NULL,"
                " location = NULL, body = NULL, lease_until = excluded.lease_until,"
                " expires_at = excluded.expires_at",
                (claim.scope, claim.key, claim.token, fingerprint, lease_until, expires_at),
            )
            return None

        return self._write(job)

    def create_ship_once(self, fields, claim, answer):
        def job(db):
            _claimed(db, claim)
            row = db.execute(
                _INSERT_SHIP,
                _ship_values(fields),
            ).fetchone()
            return _answered(db, claim, answer(_ship(row)))

        return self._write(job)

    def create_user_once(self, name, password_hash, claim, answer):
        def job(db):
            _claimed(db, claim)
            row = db.execute(
                _INSERT_USER,
                (name, password_hash),
            ).fetchone()
            return _answered(db, claim, answer(User(*row)))

        try:
            return self._write(job)
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None

    def release_idempotency(self, claim) -> None:
        self._write(
            lambda db: db.execute(
                "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND token = ? AND status IS NULL",
                (claim.scope, claim.key, claim.token),
            )
        )

    def purge_expired_idempotency(self, now: int) -> int:
        return self._write(
            lambda db: db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,)).rowcount
        )

    # --- lifecycle ---------------------------------------------------------
    def ping(self) -> None:
        self._query("SELECT 1")

    def is_empty(self) -> bool:
        return not self._query("SELECT 1 FROM meta WHERE key = 'seeded'")

    def seed(self, users, ships) -> bool:
        def job(db):
            if db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
                return False
            db.executemany(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [(u.id, u.name, u.password_hash, u.token_version, u.kept_jti) for u in users],
            )
            db.executemany(
                f"INSERT INTO ships ({_SHIP_COLUMNS}) VALUES ({', '.join('?' * (len(SHIP_FIELDS) + 1))})",
                [(s["id"], *_ship_values(s)) for s in ships],
            )
            db.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (str(int(self._clock())),))
            return True

        return self._write(job)

    def close(self) -> None:
        # The version stays mapped (no descriptor; freed with the store), so a
        # store used again after close() reads it as before.
        with self._connections_lock:
            connections, self._connections = self._connections, []
            group, self._group = self._group, None
        if group is not None and self._group_pid == os.getpid():
            group.close()
        for db in connections:
            db.close()
        self._local = threading.local()


def _ship_values(fields: Ship) -> tuple:
    return tuple(
        orjson.dumps(fields[name]).decode() if name == "roles" else fields[name] for name in SHIP_FIELDS
    )


def _ship(row: tuple) -> Ship:
    ship = dict(zip(("id",) + SHIP_FIELDS, row, strict=True))
    ship["roles"] = orjson.loads(ship["roles"])
    return ship_record(ship["id"], ship)


def _ships_counter(db: sqlite3.Connection) -> int:
    return db.execute("SELECT value FROM counters WHERE name = 'ships'").fetchone()[0]


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in (SCHEMA + IDEMPOTENCY_SCHEMA + SESSIONS_SCHEMA).split(";\n"):
        if statement.strip():
            db.execute(statement)


def _claimed(db: sqlite3.Connection, claim) -> None:
    """Inside the create's transaction: the reservation is still ours and unanswered."""
    if not db.execute(
        "SELECT 1 FROM idempotency_keys WHERE scope = ? AND key = ? AND token = ? AND status IS NULL",
        (claim.scope, claim.key, claim.token),
    ).fetchone():
        raise IdempotencyLost(claim.key)


def _answered(db: sqlite3.Connection, claim, result: IdempotentAnswer) -> IdempotentAnswer:
    db.execute(
        "UPDATE idempotency_keys SET status = ?, location = ?, body = ? WHERE scope = ? AND key = ?",
        (result.status, result.location, result.body, claim.scope, claim.key),
    )
    return result


def _end_sessions(db: sqlite3.Connection, user_id: int, keep_sid: str | None) -> int:
    """Inside a write transaction: end the user's sessions but `keep_sid`."""
    return db.execute("DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?", (user_id, keep_sid)).rowcount


def _guard(db: sqlite3.Connection, table: str, row_id: int, precondition) -> bool:
    """Inside a write transaction: False when the row is gone, PreconditionFailed
    when `precondition` rejects the row as the API shows it, else True."""
    columns, record = (_USER_COLUMNS, lambda row: User(*row)) if table == "users" else (_SHIP_COLUMNS, _ship)
    row = db.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        return False
    require(precondition, record(row))
    return True
