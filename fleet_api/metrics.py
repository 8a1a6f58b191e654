"""Prometheus metrics: declared once here, counted by a middleware and by a
few named events (logins, revocations), served on GET /metrics.

Under gunicorn every worker is its own process, so prometheus_client runs in
its multiprocess mode: each worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR`, and /metrics on any worker adds up every
worker's files, including those of workers that have exited (their counters
stay counted; gunicorn.conf.py makes the directory fresh at each server
start and calls `mark_process_dead` when a worker exits). That directory,
and the mode prometheus_client picks when it is first imported, are
process-global by design of the library; everything else lives in the one
`Metrics` object that `create_app` builds and hands to whoever counts.

Without that directory (falcon.testing, a single process) the same metrics
live in a registry of their own per app, so two apps never share counts.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from fleet_api.middleware import RouteLabels
from fleet_api.openapi import operation, text

LOGIN_OUTCOMES = ("ok", "invalid", "throttled")
# Why a token stopped working; one event each, however many tokens it ends.
EXPOSITION_TRIES = 5
REVOKE_REASONS = (
    "logout",
    "logout2",
    "password_change",
    "user_deleted",  # the example's routes and user changes
    "revoke",
    "refresh_reuse",
    "session_ended",  # RFC 7009, reuse detection, the sessions API
)
# Request durations here are milliseconds, so the low buckets matter most.
# Any other method a client makes up is counted as OTHER, not as its own series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The two per-request metrics: (name, help, label names).
REQUESTS = (
    "http_requests",
    "HTTP requests answered, by route template and status.",
    ("method", "route", "status"),
)
DURATION = ("http_request_duration_seconds", "Time to answer a request, in the app.", ("method", "route"))
# The store's write path (Store.write_stats keys -> metric, help), read when
# scraped: SQLite's are the host's (store/writestats.py), so any worker's
# /metrics gives the same sums and MultiProcessCollector has nothing to add.
STORE_COUNTERS = (
    ("commits", "store_commits", "Write transactions committed (each one COMMIT, at most one fsync)."),
    ("writes", "store_writes", "Writes committed; per store_commits, how many shared each commit."),
    ("lock_holds", "store_write_lock_holds", "Times a writer took the host-wide write lock."),
    ("lock_wait_seconds", "store_write_lock_wait_seconds", "Time writers waited for the write lock."),
    (
        "lock_held_seconds",
        "store_write_lock_held_seconds",
        "Time the write lock was held: its rate is how busy it is.",
    ),
)


class MetricsMisconfigured(RuntimeError):
    """prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set."""


class Metrics:
    """Every metric of the app, and the few calls that count them.

    Other code counts through these methods only, e.g.
    `metrics.token_revoked("logout")`, so a disabled `NoMetrics` can stand in.
    """

    enabled = True

    def __init__(self, multiproc_dir: str | None = None) -> None:
        # Under gunicorn, describing the collector at registration would read
        # every worker's files while a booting sibling's file may still be
        # empty (prometheus_client then raises struct.error and this worker
        # fails to boot, which stops the whole server): no auto-describe there.
        self.registry = CollectorRegistry(auto_describe=not multiproc_dir)
        if multiproc_dir:
            if values.ValueClass is values.MutexValue:
                raise MetricsMisconfigured(
                    "PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is "
                    "imported (gunicorn.conf.py sets it in on_starting)"
                )
            # Values go to this process's files; the collector reads everyone's.
            MultiProcessCollector(self.registry, path=multiproc_dir)
            own = None
            self._per_request = ThreadRequestCounts(multiproc_dir)
        else:
            own = self.registry
            self._per_request = RequestCounts(own)
        self._logins = Counter(
            "auth_logins",
            "Login attempts by outcome.",
            ["outcome"],
            registry=own,
        )
        self._revoked = Counter(
            "auth_tokens_revoked",
            "Revocation events (a password change ends all older tokens at once).",
            ["reason"],
            registry=own,
        )
        self._reuse = Counter(
            "auth_refresh_reuse_detected",
            "Refresh tokens presented again after they were rotated.",
            registry=own,
        )
        # Known label values show up as 0 before their first event, so a
        # rate() over them works from the start.
        for outcome in LOGIN_OUTCOMES:
            self._logins.labels(outcome)
        for reason in REVOKE_REASONS:
            self._revoked.labels(reason)

    def watch_store(self, write_stats) -> None:
        """Serve the store's write-path counters (`Store.write_stats`) too."""
        self.registry.register(StoreCollector(write_stats))

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._per_request.count(method, route, status, seconds)

    def login(self, outcome: str) -> None:
        self._logins.labels(outcome).inc()

    def token_revoked(self, reason: str, count: int = 1) -> None:
        if count:
            self._revoked.labels(reason).inc(count)

    def refresh_reuse_detected(self) -> None:
        self._reuse.inc()

    def exposition(self) -> bytes:
        # A worker that is just starting may have created its file but not yet
        # sized it; reading it then fails for a moment. Try again, bounded.
        for _ in range(EXPOSITION_TRIES - 1):
            try:
                return generate_latest(self.registry)
            except struct.error:
                time.sleep(0.01)
        return generate_latest(self.registry)


class StoreCollector:
    """STORE_COUNTERS, read from the store at each scrape; nothing where
    the store keeps no such counts."""

    def __init__(self, write_stats) -> None:
        self._write_stats = write_stats

    def describe(self) -> list:
        return []  # its names are known; the registry need not scrape to learn them

    def collect(self):
        stats = self._write_stats()
        if stats is None:
            return
        for key, name, documentation in STORE_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=stats[key])


class RequestCounts:
    """The per-request metrics in one process (no multiprocess directory:
    falcon.testing, a single process), through prometheus_client's own
    Counter and Histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(*REQUESTS, registry=registry)
        self._duration = Histogram(*DURATION, buckets=DURATION_BUCKETS, registry=registry)
        self._children: dict[tuple, tuple] = {}

    def count(self, method: str, route: str, status: int, seconds: float) -> None:
        # .labels() validates and locks on every call; the children are kept
        # per (method, route, status), so this dict grows only on a new one.
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self._requests.labels(method, route, str(status)),
                self._duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class ThreadRequestCounts:
    """The per-request metrics under gunicorn: each request thread writes
    files of its own, in a slot it holds while it lives.

    prometheus_client writes every value of a process under one lock,
    "as we presume ... there is no threading going on" (values.py). Under
    gthread every request thread takes that lock three times, and it
    convoys: in one process with 8 threads a cached GET cost 105-123 µs of
    CPU with metrics on, 22-29 µs with them off (30 and 15 µs in one
    thread). Here each thread has its own MultiProcessValue class (its own
    files and its own lock, which nobody else takes), so the values are
    still the library's, written in its format the moment a request is
    answered, and MultiProcessCollector adds them up with every other file.

    A slot is `slot_t<n>.claim`, flocked by the thread's process (and
    holding its pid): the lowest free one, whose `counter_t<n>.db` and
    `histogram_t<n>.db` it then writes. A worker that exits, or is killed,
    frees its slots with its flocks; the next thread that takes one goes on
    from the counts it holds. So no count is lost or counted twice, and the
    files stay as many as the threads that ever ran at once, where files
    named by pid pile up with every recycled worker.
    """

    MAX_SLOTS = 100_000  # a bound on the search, far above any thread count

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._local = threading.local()

    def count(self, method: str, route: str, status: int, seconds: float) -> None:
        mine = self._local.__dict__
        if mine.get("pid") != os.getpid():  # first use in this thread, or a forked child
            self._start(mine)
        counter = mine["counters"].get((method, route, status))
        if counter is None:
            counter = mine["counters"][(method, route, status)] = self._value(
                mine, "counter", REQUESTS, "_total", (method, route, str(status))
            )
        histogram = mine["histograms"].get((method, route))
        if histogram is None:
            histogram = mine["histograms"][(method, route)] = self._histogram(mine, method, route)
        counter.inc(1)
        # As Histogram.observe: the sum, and the first bucket the time fits in.
        total, buckets = histogram
        total.inc(seconds)
        for bound, bucket in buckets:
            if seconds <= bound:
                bucket.inc(1)
                break

    def _start(self, mine: dict) -> None:
        inherited = mine.get("claim")
        if inherited is not None:  # the parent's slot: the parent keeps it
            os.close(inherited)
        slot, claim = self._claim()
        mine.clear()
        mine.update(
            pid=os.getpid(),
            claim=claim,
            value_class=values.MultiProcessValue(process_identifier=lambda: slot),
            counters={},
            histograms={},
        )

    def _claim(self) -> tuple[str, int]:
        for n in range(self.MAX_SLOTS):
            fd = os.open(os.path.join(self._folder, f"slot_t{n}.claim"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return f"t{n}", fd
        raise RuntimeError(f"no free metrics slot in {self._folder}")

    @staticmethod
    def _value(mine: dict, kind: str, metric: tuple, suffix: str, labels: tuple, names=None):
        name, documentation, labelnames = metric
        return mine["value_class"](kind, name, name + suffix, names or labelnames, labels, documentation)

    def _histogram(self, mine: dict, method: str, route: str) -> tuple:
        total = self._value(mine, "histogram", DURATION, "_sum", (method, route))
        names = (*DURATION[2], "le")
        buckets = [
            (
                bound,
                self._value(
                    mine, "histogram", DURATION, "_bucket", (method, route, floatToGoString(bound)), names
                ),
            )
            for bound in (*DURATION_BUCKETS, float("inf"))
        ]
        return total, buckets


class NoMetrics:
    """FLEET_METRICS=off: the same calls, counting nothing."""

    enabled = False

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        pass

    def login(self, outcome: str) -> None:
        pass

    def token_revoked(self, reason: str, count: int = 1) -> None:
        pass

    def refresh_reuse_detected(self) -> None:
        pass

    def watch_store(self, write_stats) -> None:
        pass


class MetricsMiddleware:
    """Counts every request by its route template, never its raw path: ids
    and query strings would make one time series per request."""

    def __init__(self, metrics: Metrics, routes: RouteLabels, clock=time.perf_counter) -> None:
        self._metrics = metrics
        self._clock = clock
        self._route = routes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = self._clock()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool
    ) -> None:
        now = self._clock()
        started = getattr(req.context, "started", now)
        method = req.method if req.method in METHODS else "OTHER"
        self._metrics.request(method, self._route(req), resp.status_code, now - started)


class MetricsResource:
    """GET /metrics in the Prometheus text format. Not for the public
    network: serve it to the scraper only (see the README)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @operation(
        "meta", "metrics", responses={200: text("The Prometheus text exposition format.", "text/plain")}
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Prometheus metrics of every worker (FLEET_METRICS=off removes the route)

        For the scraper only: keep it off the public network.
        """
        resp.cache_control = ["no-store"]
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self._metrics.exposition()
