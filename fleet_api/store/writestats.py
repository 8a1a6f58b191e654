"""What the SQLite write path does, host-wide: how many writes shared each
commit, and how long writers waited for and held the host-wide write lock.

`<db>.stats` is one page that every process of the host maps
(sharedversion.map_words). Only a writer that holds the write lock adds to
its words, so the sums are exact without a lock of their own, and /metrics
on any worker reads the whole host's (metrics.StoreCollector). Each
addition is two or three 8-byte stores per group, no syscall.

The lock's held seconds include the time its holder waited for its own
process's GIL and for a core between statements: under load that, not the
statements, is most of the hold (README, Benchmarks, "Thirteenth pass").
The rate of `lock_held_seconds` is the share of time the lock is busy; near
1, writes queue on the lock whatever the threads and workers.
"""

from __future__ import annotations

from fleet_api.store.sharedversion import map_words

# The page's words, in order; durations in nanoseconds.
HOLDS, COMMITS, WRITES, WAIT_NS, HELD_NS = range(5)
# Sums wrap at 2**64 (584 years of nanoseconds) instead of raising: a count
# must never fail the write it counts. Prometheus reads a wrap as a reset.
_WORD = 2**64 - 1


class WriteStats:
    """One per store and process; the counts are the host's."""

    def __init__(self, path: str) -> None:
        self._map, self._words = map_words(path)

    # --- writers, with the host-wide write lock held ---------------------------
    def held(self, wait_ns: int, held_ns: int) -> None:
        """Right before the lock is released: it was waited for and held this long."""
        words = self._words
        words[HOLDS] = (words[HOLDS] + 1) & _WORD
        words[WAIT_NS] = (words[WAIT_NS] + max(wait_ns, 0)) & _WORD
        words[HELD_NS] = (words[HELD_NS] + max(held_ns, 0)) & _WORD

    def committed(self, writes: int) -> None:
        """Right after a COMMIT of `writes` writes (the jobs that did not fail)."""
        words = self._words
        words[COMMITS] = (words[COMMITS] + 1) & _WORD
        words[WRITES] = (words[WRITES] + writes) & _WORD

    # --- readers -----------------------------------------------------------------
    def read(self) -> dict[str, float]:
        words = self._words
        return {
            "lock_holds": words[HOLDS],
            "commits": words[COMMITS],
            "writes": words[WRITES],
            "lock_wait_seconds": words[WAIT_NS] / 1e9,
            "lock_held_seconds": words[HELD_NS] / 1e9,
        }
