"""Serialized responses kept until the data they came from changes.

The key is the store's `ships_version()`, which every committed ship write
moves, on every worker and host; so a write anywhere is seen by the next read
everywhere, and between writes a read costs one check of the version (a
load from shared memory on SQLite, a tiny query on PostgreSQL) instead of a
fetch, a serialization and a hash. A version of None (a commit in flight)
means: build from the store and keep nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

MAX_ENTRIES = 256  # distinct lists/items kept per version and per worker


class VersionedCache:
    def __init__(self, version: Callable[[], int | None]) -> None:
        self._version = version
        self._lock = threading.Lock()
        self._seen = None
        self._entries: dict[Hashable, object] = {}

    def get(self, key: Hashable, build: Callable[[], object]):
        """The cached value for `key`, or `build()` cached under the current version.

        The version is read *before* building, so a write racing the build
        can only make the entry newer than its version says: the next read
        sees the new version and rebuilds, never serves something older.
        """
        version = self._version()
        if version is None:  # a write may be becoming visible right now: the store's answer, not kept
            return build()
        with self._lock:
            if version != self._seen:
                self._seen, self._entries = version, {}
            elif key in self._entries:
                return self._entries[key]
        value = build()
        with self._lock:
            if version == self._seen and len(self._entries) < MAX_ENTRIES:
                self._entries[key] = value
        return value
