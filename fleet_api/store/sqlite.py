"""SQLite store: one database file shared by every worker process of a host.

WAL lets readers run while one writer commits; with `synchronous=full` (the
default) a commit is fsynced before we answer, and so is any commit a read
may have seen before the reader is answered (walsync.py). Every write takes the write lock up front
(`BEGIN IMMEDIATE`), so concurrent writers queue instead of deadlocking on a
lock upgrade, and each public method is one transaction (or, when writes
of several threads meet, one savepoint of their shared transaction). The SQL
itself is shared with PostgreSQL (fleet_api/store/sql.py); this module holds
the connections, the write path and the ships counter.

Writers first queue on an flock of `<db>.lock`: SQLite's own busy handler
polls with sleeps of up to 100 ms, so under contention a writer could sleep
long after the lock came free; the kernel wakes an flock waiter at once.

Writes go through a group commit (groupcommit.py): the concurrent writes of
one process share one transaction and one fsync, each in its own savepoint,
and each caller returns after that commit's fsync, made outside the lock.
Around a COMMIT that moves the ships counter or the auth counter the group
moves its word in shared memory (sharedversion.py): `ships_version()` reads
the first, so a cached read runs no SQL, and `token_subject` the second, so
a token checked a moment ago is not asked of the database again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from fleet_api.store import sql
from fleet_api.store.base import ListQuery
from fleet_api.store.groupcommit import GroupCommit
from fleet_api.store.sharedversion import AUTH, SHIPS, SharedVersion, SharedVersions, VersionedEntries
from fleet_api.store.walsync import WALSync
from fleet_api.store.writestats import WriteStats

BUSY_TIMEOUT_MS = 30_000
# full: a commit is on disk before we answer (an fsync of the WAL after the
# lock, see walsync.py; SQLite's own FULL would fsync inside COMMIT, under
# the lock). normal (an explicit choice in the URL): it survives a crash of
# the process, not of the machine. SQLite itself runs with NORMAL in both.
SYNCHRONOUS_MODES = ("full", "normal")

# The counters, in the order of the shared words that publish them
# (sharedversion.SHIPS, AUTH): the ships counter (ships_version) and the
# auth counter (what keeps the token check's answers, see token_subject).
# Triggers move them by one per row, inside each write's own transaction;
# the tables themselves are sql.schema's.
COUNTERS = ("ships", "auth")
# trigger -> (what fires it, the counter it moves). The auth counter moves
# with every write to what the token check reads: a revocation, any change
# to a user, a session ended or moved to another expiry. Not with the touch
# of a session's last use (the check's answers hold only until the next
# touch is due, see sql._token_subject), nor with a new session, which no
# kept answer can name.
COUNTER_TRIGGERS = {
    "ships_inserted": ("INSERT ON ships", "ships"),
    "ships_updated": ("UPDATE ON ships", "ships"),
    "ships_deleted": ("DELETE ON ships", "ships"),
    "revoked_tokens_inserted": ("INSERT ON revoked_tokens", "auth"),
    "users_inserted": ("INSERT ON users", "auth"),
    "users_updated": ("UPDATE ON users", "auth"),
    "users_deleted": ("DELETE ON users", "auth"),
    "sessions_deleted": ("DELETE ON sessions", "auth"),
    "sessions_moved": ("UPDATE OF id, user_id, expires_at ON sessions", "auth"),
}
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    *(f"INSERT OR IGNORE INTO counters (name, value) VALUES ('{name}', 0)" for name in COUNTERS),
    *(
        f"CREATE TRIGGER IF NOT EXISTS {trigger} AFTER {event}"
        f" BEGIN UPDATE counters SET value = value + 1 WHERE name = '{counter}'; END"
        for trigger, (event, counter) in COUNTER_TRIGGERS.items()
    ),
]
_READ_COUNTERS = "SELECT " + ", ".join(f"(SELECT value FROM counters WHERE name = '{n}')" for n in COUNTERS)
# Kept token-check answers per process and auth version: how many, and for
# how long at most (so a write that bypasses the store, e.g. in the sqlite3
# shell, which publishes no version, still counts within this many seconds).
SUBJECTS_KEPT = 4096
SUBJECT_HOLD_SECONDS = 1.0

SQLITE = sql.Dialect()

# The table's B-tree holds whole rows, so skipping a deep page's offset over it
# reads every row before the page. ships_ids holds the ids alone, many times
# narrower: _page skips the offset over it, then fetches the page's rows by id
# (tests/test_query_plans.py shows both plans). A PUT never changes an id, so
# it costs no write there.
INDEXES = ("CREATE INDEX IF NOT EXISTS ships_ids ON ships (id)",)
DEFERRED_OFFSET = 200  # from this offset on, a page is found through its ids first


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


class SQLiteStore(sql.SQLStore):
    dialect = SQLITE

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.path, self._synchronous = parse_url(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._group: GroupCommit | None = None
        self._group_pid: int | None = None
        self._version = SharedVersion(f"{self.path}.version", SHIPS)
        self._auth = SharedVersion(f"{self.path}.version", AUTH)
        self._subjects = VersionedEntries(SUBJECTS_KEPT)  # token_subject's live answers: (user, until)
        self._sync = WALSync(f"{self.path}.sync", f"{self.path}-wal") if self._synchronous == "full" else None
        self._stats = WriteStats(f"{self.path}.stats")  # stays mapped after close(), as the version
        self._write(_create_schema)  # its commit also publishes the counter of this database

    @property
    def _lock_path(self) -> str:
        """The host-wide write lock, an flock of this file."""
        return f"{self.path}.lock"

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
        # Two processes turning a new database to WAL at once: one gets
        # "database is locked" at once, busy_timeout or not (two workers
        # booting on a new file: the worker fails to boot, and gunicorn then
        # stops the whole server). One connection at a time, under the lock
        # writers take (never called while this process holds it).
        lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db.execute("PRAGMA journal_mode = WAL")
        finally:
            os.close(lock)  # and so the flock
        # WAL + NORMAL: no fsync inside COMMIT; with `full` ours follows it.
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _write(self, job, *args):
        """Run `job(db, *args)` in one write transaction and return its result.

        A job is a function of the connection (it fetches what it needs before
        returning), so several jobs can share one transaction; if it raises,
        its effects are rolled back and the exception propagates unchanged.
        It runs in this process's next group commit, possibly in another
        thread (the leader's), and returns after that group's COMMIT, and
        after its fsync with `synchronous=full`.
        """
        group = self._group
        if group is None or self._group_pid != os.getpid():
            with self._connections_lock:
                if self._group is None or self._group_pid != os.getpid():
                    # A forked child makes its own: its own writer connection and flock.
                    self._group = GroupCommit(
                        self._connect,
                        self._lock_path,
                        SharedVersions(self._version, self._auth),
                        _counters,
                        self._sync,
                        self._stats,
                    )
                    self._group_pid = os.getpid()
                group = self._group
        return group.run((lambda db: job(db, *args)) if args else job)

    def _query(self, statement: str, params=()) -> list[tuple]:
        rows = self._db().execute(statement, params).fetchall()
        if self._sync is not None:
            self._sync.saw()
        return rows

    def _page(self, table: str, columns: str, query: ListQuery, text_fields) -> tuple[list, int]:
        where, params = sql.where(query, text_fields, SQLITE)
        tail, tail_params = sql.order_and_page(query, SQLITE, text_fields)
        statement = f"SELECT {columns} FROM {table}{where}{tail}"
        if query.offset >= DEFERRED_OFFSET:
            order, _ = sql.order_and_page(
                dataclasses.replace(query, limit=None, offset=0), SQLITE, text_fields
            )
            statement = (
                f"SELECT {columns} FROM {table} WHERE id IN (SELECT id FROM {table}{where}{tail}){order}"
            )
        db = self._db()
        # One read transaction, so the page and its total agree.
        db.execute("BEGIN")
        try:
            rows = db.execute(statement, params + tail_params).fetchall()
            if query.limit is None and not query.offset:
                total = len(rows)
            else:
                total = db.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
        finally:
            db.execute("COMMIT")
        if self._sync is not None:
            self._sync.saw()
        return rows, total

    # --- ships counter ---------------------------------------------------
    def ships_version(self) -> int | None:
        # The counter the triggers bump inside each ship write, as the group
        # commit publishes it in shared memory around the COMMIT; None while
        # one is in flight (see sharedversion.py).
        version = self._version.read()
        if version is not None and self._sync is not None:
            self._sync.saw_finished()  # a page cached for it answers on its commit
        return version

    def write_stats(self) -> dict[str, float]:
        # The host's, from shared memory (writestats.py).
        return self._stats.read()

    # --- the token check ------------------------------------------------------
    def token_subject(self, user_id: int, jti: str, sid: str | None, now: float):
        # Every authenticated request asks this. A live answer (the user,
        # not revoked) is kept under the auth version it was read at, and
        # given again while that version holds and until its session's
        # expiry or next touch: what a write on any worker of the host
        # changes moves the version before that write is answered (the
        # same seqlock as the ships version), so the next request reads the
        # database again. Revoked and unknown-user answers are never kept.
        version = self._auth.read()
        key = (user_id, jti, sid)
        if version is not None:
            kept_version, kept = self._subjects.find(key)
            if kept is not None and kept_version == version and now < kept[1]:
                if self._sync is not None:
                    self._sync.saw_finished()  # as ships_version: it is as new as `finished`
                return kept[0], False
        user, revoked, until = self._token_subject(user_id, jti, sid, now)
        if version is not None and user is not None and not revoked and until > now:
            self._subjects.keep(version, key, (user, min(until, now + SUBJECT_HOLD_SECONDS)))
        return user, revoked

    def settle(self) -> None:
        # Every commit this thread's reads may have seen is fsynced (walsync.py).
        if self._sync is not None:
            self._sync.settle()

    # --- lifecycle ---------------------------------------------------------
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
        if self._sync is not None:
            self._sync.close()
        self._local = threading.local()
        self._subjects.clear()


def _counters(db: sqlite3.Connection) -> tuple[int, ...]:
    """The COUNTERS, in order: what the versions publish."""
    return db.execute(_READ_COUNTERS).fetchone()


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in sql.schema(SQLITE):
        db.execute(statement)
    for statement in SCHEMA:
        db.execute(statement)
    for statement in INDEXES:
        db.execute(statement)
