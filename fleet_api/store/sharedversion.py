"""The ships and auth versions in shared memory: every worker of a host
reads them without a query.

`<db>.version` is one page that every process of the host maps. Its first
word is the database's ships counter (`counters.ships`, moved by triggers
inside every ship write), its second the auth counter (`counters.auth`,
moved by every write the token check reads), each shifted left by one,
with the low bit set while a commit that changes it is in flight (seqlock
style): a reader that sees the bit gets None and caches nothing; one that
sees it clear gets the counter as of the last commit, so the same number
the SQL query used to give. A word is written only under the host-wide
write lock: the bit right before COMMIT, the new counter right after.

A writer killed between the two steps leaves the bit set: readers read the
database until the next commit clears it (every commit compares the
transaction's counter with the word, and a store that opens does too).

A read is one aligned 8-byte load (native `Q` through a memoryview: a single
load instruction, never torn): no syscall, no SQL, and the GIL is kept,
which matters more than the CPU under load.
"""

from __future__ import annotations

import mmap
import os

SIZE = mmap.PAGESIZE
_IN_FLIGHT = 1


def map_words(path: str) -> tuple[mmap.mmap, memoryview]:
    """The page at `path`, mapped by every process that opens it, as 8-byte
    words (native `Q`: each one a single aligned load or store)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # A new file grown to a page reads as zeros; processes racing here
        # truncate to the same size, which changes nothing.
        if os.fstat(fd).st_size < SIZE:
            os.ftruncate(fd, SIZE)
        page = mmap.mmap(fd, SIZE)
    finally:
        os.close(fd)  # the mapping keeps the file
    return page, memoryview(page).cast("Q")


SHIPS, AUTH = 0, 1  # the words: which counter each publishes


class SharedVersion:
    """One counter's word of the page (SHIPS unless told)."""

    def __init__(self, path: str, word: int = SHIPS) -> None:
        self._map, self._words = map_words(path)
        self._at = word

    def read(self) -> int | None:
        """The counter, or None while a commit may be moving it."""
        word = self._words[self._at]
        return None if word & _IN_FLIGHT else word >> 1

    # --- writers: with the host-wide write lock held ------------------------
    def begin(self, counter: int) -> bool:
        """Right before COMMIT, with the transaction's counter: True (and
        readers get None from now on) when the word must move; then call
        `end` with what is committed."""
        if self._words[self._at] == counter << 1:
            return False
        self._words[self._at] |= _IN_FLIGHT
        return True

    def end(self, counter: int) -> None:
        """Right after COMMIT (or its failure) with the counter now on disk."""
        self._words[self._at] = counter << 1

    def close(self) -> None:
        if not self._map.closed:
            self._words.release()
            self._map.close()


class SharedVersions:
    """Several versions moved around one COMMIT, as one SharedVersion is:
    `begin` and `end` take one counter for each, in order."""

    def __init__(self, *versions: SharedVersion) -> None:
        self._versions = versions

    def begin(self, counters: tuple[int, ...]) -> bool:
        # Every word is checked (no short cut): each one that must move is marked.
        moving = [version.begin(counter) for version, counter in zip(self._versions, counters, strict=True)]
        return any(moving)

    def end(self, counters: tuple[int, ...]) -> None:
        for version, counter in zip(self._versions, counters, strict=True):
            version.end(counter)


class VersionedEntries:
    """Values that all hold for one version (of the ships or auth counter):
    what the caches keep. Keeping under a newer version starts afresh;
    under an older one (built before a write that is now published) keeps
    nothing. At most `limit` entries: one more starts afresh too, since a
    version can hold for as long as nothing is written, and the entries kept
    first (or, for the token check, ones long past their hold) must not shut
    out every later one. Lock-free: the (version, entries) pair is replaced
    as one, so a reader never sees entries of one version labelled with
    another."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: tuple[int | None, dict] = (None, {})

    def find(self, key):
        """(the version the kept entries hold for, the value for `key` or None)."""
        version, entries = self._kept
        return version, entries.get(key)

    def keep(self, version: int, key, value) -> None:
        kept_version, entries = self._kept
        if kept_version is not None and version < kept_version:
            return
        if version != kept_version or len(entries) >= self._limit:
            entries = {}
            self._kept = (version, entries)
        entries[key] = value

    def clear(self) -> None:
        self._kept = (None, {})
