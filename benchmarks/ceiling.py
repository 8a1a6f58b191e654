"""The ceiling for `make bench`: the fastest a Falcon app can answer our routes.

Served by gunicorn with the project's own gunicorn.conf.py (same workers,
threads, worker class), it answers the benchmarked routes with the very bytes
the real Fleet API sent for them (fetched once by scripts/bench, handed
over as a JSON file named by BENCH_CEILING_BODIES), with the same status and
Content-Type, but with no authentication, store, validation or serialisation.
What is left is HTTP parsing, gunicorn and Falcon routing: the cost floor any
change to fleet_api can approach but not beat, so `ours / ceiling` says how
much of the room is still ours to win.

    gunicorn -c gunicorn.conf.py 'benchmarks.ceiling:get_app()'

With BENCH_CEILING_WORK_US=N its PUT also burns N µs of CPU in a plain
Python loop (the GIL held throughout, as app code holds it): the ceiling
plus an app that does nothing but compute for that long. Set to what ours
costs in-process (scripts/bench/inprocess.py), it tells whether ours is
slower under gunicorn than its own CPU work explains.
"""

from __future__ import annotations

import json
import os
import time

import falcon

BODIES_ENV = "BENCH_CEILING_BODIES"
WORK_ENV = "BENCH_CEILING_WORK_US"
JSON = "application/json"


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    # Stored as text so the file stays readable; sent back as the same bytes.
    return {
        "list": raw["list"].encode(),
        "queries": {query: body.encode() for query, body in raw["queries"].items()},
        "ships": {int(k): v.encode() for k, v in raw["ships"].items()},
        "put": raw["put"].encode(),
        "login": raw["login"].encode(),
        "refresh": raw["refresh"].encode(),
    }


def _send(resp: falcon.Response, data: bytes, no_store: bool = False) -> None:
    resp.data = data
    resp.content_type = JSON
    if no_store:  # the real login and refresh answers carry it too
        resp.cache_control = ["no-store"]


class Ships:
    def __init__(self, bodies: dict) -> None:
        self._list = bodies["list"]
        self._queries = bodies["queries"]

    def on_get(self, req, resp) -> None:
        # Each query the bench sends gets the page ours answered it with.
        if not req.query_string:
            return _send(resp, self._list)
        data = self._queries.get(req.query_string)
        if data is None:
            raise falcon.HTTPNotFound()
        _send(resp, data)


def busy_loop(iterations: int) -> None:
    for _ in range(iterations):
        pass


def iterations_for(microseconds: float, sample: int = 100_000, tries: int = 5, clock=time.thread_time) -> int:
    """How many busy_loop iterations cost `microseconds` of this thread's
    CPU here: from the fastest of a few timed samples, and in CPU time, so a
    sample the scheduler interrupted does not count."""
    if microseconds <= 0:
        return 0
    fastest = float("inf")
    for _ in range(tries):
        start = clock()
        busy_loop(sample)
        fastest = min(fastest, clock() - start)
    return max(1, round(microseconds * 1e-6 * sample / max(fastest, 1e-9)))


class Ship:
    def __init__(self, bodies: dict, work_iterations: int = 0) -> None:
        self._ships = bodies["ships"]
        self._put = bodies["put"]
        self._work = work_iterations

    def on_get(self, req, resp, ship_id: int) -> None:
        data = self._ships.get(ship_id)
        if data is None:
            raise falcon.HTTPNotFound()
        _send(resp, data)

    def on_put(self, req, resp, ship_id: int) -> None:
        req.bounded_stream.read()  # read the body as the real app must
        busy_loop(self._work)
        _send(resp, self._put)


class Canned:
    """POST answered with fixed bytes (login, refresh)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def on_post(self, req, resp) -> None:
        req.bounded_stream.read()
        _send(resp, self._data, no_store=True)


def create_app(bodies: dict, work_us: float = 0) -> falcon.App:
    app = falcon.App()
    app.add_route("/api/ships", Ships(bodies))
    app.add_route("/api/ships/{ship_id:int}", Ship(bodies, iterations_for(work_us)))
    app.add_route("/auth/login", Canned(bodies["login"]))
    app.add_route("/auth/refresh", Canned(bodies["refresh"]))
    return app


def get_app() -> falcon.App:
    path = os.environ.get(BODIES_ENV)
    if not path:
        raise RuntimeError(f"{BODIES_ENV} must name the JSON file of canned bodies")
    raw = os.environ.get(WORK_ENV) or "0"
    try:
        work_us = float(raw)
    except ValueError:
        work_us = -1.0
    if not 0 <= work_us <= 1_000_000:
        raise RuntimeError(f"{WORK_ENV} must be a number of microseconds (0 to 1000000), got {raw!r}")
    return create_app(_load(path), work_us)
