"""Serialized responses kept until the data they came from changes.

The key is the store's `ships_version()`, which every committed ship write
moves, on every worker and host; so a write anywhere is seen by the next read
everywhere, and between writes a read costs one check of the version (a
load from shared memory on SQLite, a tiny query on PostgreSQL) instead of a
fetch, a serialization and a hash. A version of None (a commit in flight)
means: build from the store and keep nothing.

Two layers share that rule: VersionedCache keeps the serialized bodies the
responders send, and ReadReplay, in front of Falcon, keeps whole answers to
repeated public GETs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import falcon

from fleet_api.logs import ROUTE, for_the_access_line
from fleet_api.store.sharedversion import VersionedEntries

MAX_ENTRIES = 256  # distinct lists/items kept per version and per worker


class VersionedCache:
    def __init__(self, version: Callable[[], int | None]) -> None:
        self._version = version
        self._entries = VersionedEntries(MAX_ENTRIES)

    def get(self, key: Hashable, build: Callable[[], object], req=None):
        """The cached value for `key`, or `build()` cached under the current version.

        The version is read *before* building, so a write racing the build
        can only make the entry newer than its version says: the next read
        sees the new version and rebuilds, never serves something older.
        With `req`, the responder says its answer to this GET depends on
        nothing but the value, the path, the query string and the host:
        ReadReplay may hand the same answer out while this version holds.
        """
        version = self._version()
        if version is None:  # a write may be becoming visible right now: the store's answer, not kept
            return build()
        if req is not None:
            req.env[REPLAYABLE] = version
        kept_version, found = self._entries.find(key)
        if found is not None and kept_version == version:
            return found[0]
        value = build()
        self._entries.keep(version, key, (value,))  # boxed: None (no such ship) is kept too
        return value


# The environ key under which VersionedCache.get(..., req) leaves the ships
# version a replayable answer was built from.
REPLAYABLE = "fleet.replayable"
OK = "200 OK"


class ReadReplay:
    """Whole answers to repeated public reads, replayed without Falcon.

    A cached ship still costs a request's full trip through Falcon: the
    Request and Response objects, routing, five middleware steps, header
    handling. That was most of what a read cost beyond a bare Falcon app
    (38–48 µs of CPU against 12 in one process). So a 200 that a responder marked
    `replayable` is kept whole (status, headers, body), keyed by what the
    answer depends on, under the ships version its responder read before
    building it (VersionedCache.get with `req`); an identical GET while that
    version holds gets the same bytes back, with what is per request done
    here as the middleware would: a request id of its own (the client's
    when it is sane), the access log's environ keys, the request's metrics,
    and the wait for the fsync of any commit the version came from.

    Anything else goes through Falcon: other methods, HEAD, a body,
    If-None-Match (a 304 is Falcon's to decide), an unmarked or non-200
    answer. A write anywhere moves the version, and the next read builds
    afresh.
    """

    def __init__(
        self,
        version: Callable[[], int | None],
        settle: Callable[[], None],
        request_id: Callable[[dict], str],
        count: Callable[[str, str, int, float], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._version = version
        self._settle = settle
        self._request_id = request_id  # RequestHygiene.request_id
        self._count = count  # Metrics.request
        self._clock = clock
        self._answers = VersionedEntries(MAX_ENTRIES)
        self.replayed = 0  # answers given here, for tests and the curious (not exact across threads)

    def __call__(self, app, environ: dict, start_response):
        """Answer from the replay when it can, else from `app` (Falcon's own
        __call__), keeping the answer when the responder marked it."""
        if (
            environ["REQUEST_METHOD"] != "GET"
            or "CONTENT_LENGTH" in environ
            or "HTTP_TRANSFER_ENCODING" in environ
            or "HTTP_IF_NONE_MATCH" in environ  # the only precondition a GET here honours
        ):
            return app(environ, start_response)
        key = (
            environ.get("PATH_INFO"),
            environ.get("QUERY_STRING"),
            environ.get("SCRIPT_NAME"),
            # Paging Links are absolute: Falcon's prefix is the scheme and the
            # Host header, or the server's name and port without one.
            environ.get("HTTP_HOST") or (environ.get("SERVER_NAME"), environ.get("SERVER_PORT")),
            environ.get("wsgi.url_scheme"),
        )
        kept_version, answer = self._answers.find(key)
        # The version is read only when there is an answer to check, so a GET
        # of anything else costs no version read (a query on PostgreSQL).
        if answer is not None and self._version() == kept_version:
            return self._replay(answer, environ, start_response)
        sent = []

        def capture(status, headers, exc_info=None):
            sent[:] = (status, headers)
            if exc_info is None:  # as Falcon calls it: some servers' start_response takes two
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        body = app(environ, capture)
        version = environ.get(REPLAYABLE)
        if version is not None and sent and sent[0] == OK:
            self._keep(version, key, environ, sent[1], body)
        return body

    def _keep(self, version: int, key: tuple, environ: dict, headers: list, body) -> None:
        if not (isinstance(body, list) and len(body) == 1):
            return  # Falcon's resp.data answer is one bytes object; keep nothing else
        at = next((i for i, (name, _) in enumerate(headers) if name.lower() == "x-request-id"), None)
        if at is not None:  # an answer built from an older version than the kept ones is dropped there
            self._answers.keep(version, key, (at, tuple(headers), body[0], environ.get(ROUTE)))

    def _replay(self, answer: tuple, environ: dict, start_response) -> list:
        started = self._clock()
        at, headers, data, route = answer
        request_id = self._request_id(environ)
        for_the_access_line(environ, request_id, route)
        fresh = list(headers)
        fresh[at] = (headers[at][0], request_id)
        self._settle()  # DurableAnswers: what the version came from is on disk
        self.replayed += 1
        start_response(OK, fresh)
        self._count("GET", route, 200, self._clock() - started)
        return [data]


class ReplayingApp(falcon.App):
    """falcon.App with a ReadReplay in front of it."""

    def __init__(self, replay: ReadReplay, **kwargs) -> None:
        super().__init__(**kwargs)
        self.replay = replay
        self._falcon = super().__call__  # bound once, not per request

    def __call__(self, environ: dict, start_response):
        return self.replay(self._falcon, environ, start_response)
