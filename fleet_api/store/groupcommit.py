"""Group commit: the concurrent writes of one process share one SQLite
transaction, one COMMIT and so one fsync.

A write is a job, a function of the connection. The first writer that finds
no leader leads: it takes the host-wide flock, then every job queued by then
(so writes that arrive while another process holds the lock join this
group), and runs them in one `BEGIN IMMEDIATE ... COMMIT`, each inside its
own SAVEPOINT, so a job that raises (a failed If-Match, a taken name, any
error) is rolled back alone and its error goes to its own caller only. The
others wait meanwhile; the next group is whatever queued during this one, so
nobody waits for a timer and a lone writer commits at once.

Durability: with a `WALSync` (the default, `synchronous=full`) the writer
commits without an fsync, the leader releases the lock, then fsyncs the WAL
(walsync.py) and only then answers its group, so answered means on disk and
the lock is held for the statements and the COMMIT alone: other processes
commit during this fsync. Within this process the lead passes on only once
the fsync has returned, so the writes that queued during it share the next
commit, instead of a new leader committing the first one or two of them at
once and waiting for the same fsync anyway (fsyncs are one at a time per
process): fewer, fuller commits, measured +7 % and +22 % on the durable PUT
with pinned workers (README, Benchmarks, "Sixteenth pass"). Without one
(`synchronous=normal`) nothing is fsynced per commit. A failed COMMIT or
fsync fails every job of the group.

The leader runs all the jobs itself, without handing the connection between
threads, so the lock is held for the statements and the commit, not for
other threads' turns at the GIL. Across processes, leaders queue on the
flock: the kernel wakes a waiter at once, where SQLite's own busy handler
sleeps in steps of up to 100 ms.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from fleet_api.store.sharedversion import SharedVersion, SharedVersions
from fleet_api.store.walsync import WALSync
from fleet_api.store.writestats import WriteStats

Job = Callable[[sqlite3.Connection], Any]


class _Slot:
    __slots__ = ("job", "wake", "lead", "done", "result", "error")

    def __init__(self, job: Job) -> None:
        self.job = job
        # Released exactly once, for its own thread alone: it leads now, or it
        # is done. So a commit wakes the writers it answers and the one next
        # leader, not every waiting thread of the process.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lead = False  # its thread leads the next group
        self.done = False  # committed or failed: its caller may answer
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """One per process (a forked child makes its own): `run(job)` is the
    job's result, or raises its error, after its group's COMMIT."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        lock_path: str,
        version: SharedVersion | SharedVersions | None = None,
        counter: Callable[[sqlite3.Connection], Any] | None = None,
        sync: WALSync | None = None,
        stats: WriteStats | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        """`version` and `counter` (read through the given connection) go
        together: the version is moved around each COMMIT that moves the
        counter (see sharedversion.py); a SharedVersions and a tuple of
        counters move several at once. `sync`: fsync each group's commit
        after the lock (see walsync.py). `stats`: count each hold of the
        lock, its wait and each commit (writestats.py), timed by `clock` (ns)."""
        self._connect = connect
        self._lock_path = lock_path
        self._version = version
        self._counter = counter
        self._sync = sync
        self._stats = stats
        self._clock = clock
        self._mutex = threading.Lock()  # guards the queue and who leads
        self._queue: list[_Slot] = []
        self._leading = False
        self._inside = threading.local()  # set in the leader's thread while its jobs run
        self._db: sqlite3.Connection | None = None
        self._fd: int | None = None
        # Committed groups and the jobs in them: how much sharing happened.
        self.groups = 0
        self.jobs = 0

    def run(self, job: Job) -> Any:
        db = getattr(self._inside, "db", None)
        if db is not None:  # a job that writes through the store again: part of its own job
            return _nested(db, job)
        slot = _Slot(job)
        with self._mutex:
            self._queue.append(slot)
            if not self._leading:
                self._leading = slot.lead = True
        if not slot.lead:
            slot.wake.acquire()  # until it is done, or handed the lead
        if slot.lead:
            self._lead()  # its group holds this slot: done when it returns
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self) -> None:
        """The lock first, then every job queued by then; the fsync after
        the lock; answer them all."""
        group: list[_Slot] = []
        fatal: BaseException | None = None
        try:
            db = self._connection()
            asked = self._clock()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            taken = self._clock()
            try:
                group = self._take()
                number = self._commit(db, group)
                if number is None and self._sync is not None:
                    # Nothing committed, but the jobs read (and their errors
                    # may tell) what the commits before did.
                    number = self._sync.last_finished()
            finally:
                try:
                    if self._stats is not None:  # still under the lock: the sums stay exact
                        self._stats.held(taken - asked, self._clock() - taken)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)  # whatever happened: never left held
            if self._sync is not None:
                # The lock is free: other processes commit meanwhile. This
                # process's next group gathers until the fsync returns.
                self._sync.make_durable(number)
        except BaseException as exc:  # the whole group failed: none of it is (surely) written
            fatal = exc
            group = group or self._take()  # failed before taking it (no connection, no lock)
            for slot in group:
                slot.result, slot.error = None, exc
        finally:
            self._hand_over()
            for slot in group:
                slot.done = True
                if not slot.lead:  # the leader's own thread is not waiting
                    slot.wake.release()
        if fatal is not None and not isinstance(fatal, Exception):
            raise fatal  # KeyboardInterrupt, SystemExit: the leader's own thread stops too

    def _take(self) -> list[_Slot]:
        with self._mutex:
            group, self._queue = self._queue, []
        return group

    def _hand_over(self) -> None:
        """The first writer that queued meanwhile leads next, or nobody does."""
        with self._mutex:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.wake.release()
            else:
                self._leading = False

    def _commit(self, db: sqlite3.Connection, group: list[_Slot]) -> int | None:
        """The group in one transaction; a job's error stays in its slot, a
        failure of the transaction itself is raised (and fails them all).
        The commit's number (walsync.py) if it committed with a WALSync."""
        db.execute("BEGIN IMMEDIATE")
        try:
            self._inside.db = db
            try:
                if len(group) == 1:  # alone: no savepoint, its error rolls back the transaction
                    _call(group[0], db)
                else:
                    self._each_in_a_savepoint(db, group)
            finally:
                self._inside.db = None
            if all(slot.error is not None for slot in group):
                if db.in_transaction:  # not if an error rolled it back already
                    db.execute("ROLLBACK")
                return None
            counter = None
            if self._version is not None:
                counter = self._counter(db)  # the transaction's: what COMMIT makes visible
                if not self._version.begin(counter):
                    counter = None  # ships unchanged: nothing to move
            number = self._sync.begin() if self._sync is not None else None
            try:
                db.execute("COMMIT")
            except BaseException:
                if number is not None:
                    self._sync.finish(number)
                if counter is not None:
                    self._republish(db)
                raise
            if number is not None:
                self._sync.finish(number)  # before the version moves: see WALSync.saw_finished
            if counter is not None:
                self._version.end(counter)
            if self._stats is not None:
                self._stats.committed(sum(1 for slot in group if slot.error is None))
            self.groups += 1
            self.jobs += len(group)
            return number
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _republish(self, db: sqlite3.Connection) -> None:
        """After a failed COMMIT, still under the lock: publish what is on
        disk; if even that can't be read, readers keep reading the database."""
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._version.end(self._counter(db))
        except Exception:
            pass

    def _each_in_a_savepoint(self, db: sqlite3.Connection, group: list[_Slot]) -> None:
        written: list[_Slot] = []  # jobs whose statements are in the transaction
        for slot in group:
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute("SAVEPOINT job")
            if _call(slot, db):
                db.execute("RELEASE job")
                written.append(slot)
            elif db.in_transaction:
                db.execute("ROLLBACK TO job")
                db.execute("RELEASE job")
            else:
                # Some errors (SQLITE_FULL, IOERR, NOMEM) make SQLite roll back
                # the whole transaction: the jobs before this one lost their
                # statements too, so they fail with the cause. The rest go on
                # in a new transaction.
                for lost in written:
                    lost.result, lost.error = None, slot.error
                written = []

    def _connection(self) -> sqlite3.Connection:
        # Only the leader of the moment uses them: one of each per process.
        if self._db is None:
            self._db = self._connect()
        if self._fd is None:
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _call(slot: _Slot, db: sqlite3.Connection) -> bool:
    try:
        slot.result = slot.job(db)
        return True
    except Exception as exc:  # handed to the job's own caller
        slot.error = exc
        return False


def _nested(db: sqlite3.Connection, job: Job) -> Any:
    db.execute("SAVEPOINT nested")
    try:
        result = job(db)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK TO nested")
            db.execute("RELEASE nested")
        raise
    db.execute("RELEASE nested")
    return result
