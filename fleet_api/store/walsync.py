"""Answered means on disk, with the WAL's fsync outside the write lock.

With `synchronous=full` (the default) the writer connection commits with
SQLite's NORMAL: COMMIT appends the group's frames to the WAL and makes
them visible, without an fsync. The leader then releases the host-wide
write lock and fsyncs the WAL itself, and only then answers its callers.
So the lock is held for the statements and the COMMIT alone, and the next
group (of this process or another) commits while this one's fsync runs;
an fsync that starts after several commits finished covers them all.

Readers can see a commit before its fsync has finished. So that no request
is answered on the strength of such a commit (issue 12, item 1), three
words of a page every process of the host maps, `<db>.sync`:

- begun: the number of the last commit started (under the lock, before COMMIT);
- finished: the number of the last commit whose COMMIT returned or failed;
- durable: a number up to which every commit is known to be fsynced.

A reader notes `begun` after each statement (`saw`): nothing it read can
come from a later commit. Before the request is answered, `settle` makes
sure `durable` has reached the highest number it noted, fsyncing the WAL
itself if no writer has yet. A claim written to `durable` is only ever
what its writer proved: `finished` as read before its own fsync started
(every commit up to it had written its frames by then). Claims race
between processes without a lock; a lost race can only lower `durable` to
a smaller claim that is just as true, which costs a spare fsync, never a
false answer.

A commit takes a number above both `begun` and `durable`, so that a page
left behind by a power loss (its words may be older than each other)
can never make a new commit look fsynced already.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from fleet_api.store.sharedversion import map_words

BEGUN, FINISHED, DURABLE = 0, 1, 2


class WALSync:
    """One per store and process. `wal_path` is SQLite's `<db>-wal`;
    `fsync` is os.fsync unless given (tests count or hold it)."""

    def __init__(self, path: str, wal_path: str, fsync: Callable[[int], None] | None = None) -> None:
        self._map, self._words = map_words(path)
        self._wal_path = wal_path
        self._fsync = fsync or os.fdatasync
        self._wal: tuple[int, int] | None = None  # (pid, descriptor of the WAL)
        self._sync_lock = threading.Lock()
        self._noted = threading.local()  # the highest commit number this thread's reads may have seen
        self.fsyncs = 0  # how many this process made, for tests and the curious

    # --- writers: begin and finish under the host-wide write lock ------------
    def begin(self) -> int:
        """Right before COMMIT: this commit's number."""
        words = self._words
        number = max(words[BEGUN], words[DURABLE]) + 1
        words[BEGUN] = number
        return number

    def finish(self, number: int) -> None:
        """Right after COMMIT returned (or failed: then there is nothing to sync)."""
        self._words[FINISHED] = number

    def last_finished(self) -> int:
        """Under the lock: the newest commit a transaction begun now can read."""
        return self._words[FINISHED]

    def make_durable(self, number: int) -> None:
        """After the lock is released: return once commit `number` is on disk."""
        if self._words[DURABLE] < number:
            self._sync(number)

    # --- readers ---------------------------------------------------------------
    def saw(self) -> None:
        """After a read statement: what it read may be as new as `begun`."""
        self._note(self._words[BEGUN])

    def saw_finished(self) -> None:
        """After reading something published once a COMMIT returned (the ships
        version): it is as new as `finished` at most."""
        self._note(self._words[FINISHED])

    def _note(self, number: int) -> None:
        if number > getattr(self._noted, "number", 0):
            self._noted.number = number

    def settle(self) -> None:
        """Before answering: every commit this thread's reads may have seen
        is on disk. Then the thread starts afresh."""
        number = getattr(self._noted, "number", 0)
        if number:
            self._noted.number = 0
            if self._words[DURABLE] < number:
                self._sync(number)

    # --- the fsync -------------------------------------------------------------
    def _sync(self, number: int) -> None:
        # One at a time per process: a thread that waited here finds its
        # number often covered by the fsync it waited for.
        with self._sync_lock:
            words = self._words
            if words[DURABLE] >= number:
                return
            proved = words[FINISHED]  # every commit up to it has written its frames
            self._fsync(self._wal_fd())
            self.fsyncs += 1
            if words[DURABLE] < proved:
                words[DURABLE] = proved

    def _wal_fd(self) -> int:
        # Under _sync_lock. Opened once per process, after a commit made the
        # file. SQLite keeps the WAL (the same inode: it is rewritten from the
        # start, never replaced) while any connection is open, and ours are.
        wal = self._wal
        if wal is None or wal[0] != os.getpid():
            wal = self._wal = (os.getpid(), os.open(self._wal_path, os.O_RDONLY))
        return wal[1]

    def close(self) -> None:
        wal, self._wal = self._wal, None
        if wal is not None and wal[0] == os.getpid():
            os.close(wal[1])
