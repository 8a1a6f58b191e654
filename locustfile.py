"""Locust load test for Fleet API: the traffic mix a real deployment sees.

Three kinds of simulated users, weighted like real traffic:

* ``Reader`` (weight 6): anonymous; lists ships and users, reads one of each.
* ``Pilot`` (weight 3): registers its own pilot user and logs in on start;
  then creates a ship, reads it, updates it, deletes it (and checks it is
  gone), refreshing its access token now and then.  On stop it logs out both
  tokens, checks each revoked token is refused with 401, and deletes its user.
* ``Recruit`` (weight 1): registers, logs in, renames itself, deletes itself,
  and checks that its old token is refused (401) and its user is gone (404).

Every request is judged on its status AND its JSON body (``catch_response``):
a wrong answer counts as a failure, not just a 5xx.  Flows delete what they
create, so an hour-long run does not grow the data; names are unique per
process (a random run id plus a counter), so parallel runs never collide.
Read checks assume a freshly seeded server (ships 1-15, users 1-2 from
data.json), which is what ``make load`` starts.

Pass/fail (Locust's own exit code, set in a ``quitting`` listener):

* 0 - every request passed and the aggregated p95 is within ``--p95-ms``;
* 1 - some request failed (wrong status or body, any 5xx, connection error),
  or no request was made at all;
* 3 - no failures, but the aggregated 95th percentile exceeded ``--p95-ms``
  (default 500 ms, or the ``LOAD_P95_MS`` environment variable).
Locust's own codes still apply otherwise (e.g. 1 or 2 for exceptions in
this file).

Run it
------
``make load`` starts a fresh gunicorn and runs this file headless (see
``scripts/load.py``).  By hand, against a server you started yourself::

    .venv/bin/locust -f locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 20 -r 5 -t 60s --stop-timeout 15 \\
        --html reports/load.html --csv reports/load --p95-ms 500

Drop ``--headless`` for the web UI on http://127.0.0.1:8089.

Distributed
-----------
This file uses ``FastHttpUser`` (geventhttpclient): one Locust process drives
thousands of requests per second on one core.  When that core is still the
bottleneck (Locust warns "CPU usage above 90%"), spread users over several
processes.  One master aggregates statistics and decides the exit code;
workers generate the load (each worker has its own run id, so names stay
unique)::

    # all on one machine: a master plus N forked workers (-1 = one per core)
    .venv/bin/locust -f locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 200 -r 20 -t 5m --processes 2

    # or by hand, possibly on several machines (same locustfile everywhere)
    .venv/bin/locust -f locustfile.py --master --headless --expect-workers 2 \\
        --host http://127.0.0.1:8000 -u 200 -r 20 -t 5m --stop-timeout 15 \\
        --html reports/load.html --csv reports/load --p95-ms 500
    .venv/bin/locust -f locustfile.py --worker --master-host 127.0.0.1   # x2

``make load`` passes ``LOAD_PROCESSES`` on as ``--processes``.  On a 2-core
box the server needs those cores too: more Locust processes only help when
Locust itself, not the server, is what saturates.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, between, events, stats, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

log = logging.getLogger("fleet.load")

DEFAULT_P95_MS = 500.0
EXIT_FAILED = 1
EXIT_SLOW = 3

# One id per Locust process, plus a counter: unique names across workers and runs.
RUN_ID = uuid.uuid4().hex[:10]
_serial = itertools.count(1)


def unique_name(kind: str) -> str:
    return f"{kind}-{RUN_ID}-{next(_serial)}"


# --- seed data the read checks compare against ----------------------------
def _load_seed() -> tuple[dict[int, dict], dict[int, str]]:
    path = Path(os.environ.get("FLEET_DATA") or Path(__file__).with_name("data.json"))
    try:
        data = json.loads(path.read_text())
        ships = {int(s["id"]): s for s in data["ships"]}
        users = {int(u["id"]): u["name"] for u in data["users"]}
        return ships, users
    except (OSError, ValueError, KeyError, TypeError):
        # Without data.json only the shape of the answers is checked.
        return {i: {} for i in range(1, 16)}, {1: "user", 2: "guest"}


SEED_SHIPS, SEED_USERS = _load_seed()

SHIP_TEXT = ("affiliation", "category", "manufacturer", "model", "ship_class")
SHIP_COUNTS = ("crew", "length")
SHIP_KEYS = frozenset((*SHIP_TEXT, *SHIP_COUNTS, "roles", "id"))
USER_KEYS = frozenset(("id", "name"))
LOGGED_OUT = {"message": "Successfully logged out."}
REVOKED = "Token has been revoked"


def new_ship() -> dict[str, Any]:
    return {
        "affiliation": random.choice(["Empire", "Rebel Alliance", "Galactic Republic"]),
        "category": "Load Test",
        "crew": random.randint(1, 5000),
        "length": random.randint(5, 2000),
        "manufacturer": "Kuat Drive Yards",
        "model": unique_name("LT"),
        "roles": random.sample(["Escort", "Carrier", "Patrol", "Transport", "Command Ship"], 2),
        "ship_class": "Frigate",
    }


# --- body checks: each returns a problem (str) or None ---------------------
Check = Callable[[Any], "str | None"]


def _is_id(value: Any) -> bool:
    return type(value) is int and value >= 1


def ship_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "ship is not a JSON object"
    if set(body) != SHIP_KEYS:
        return f"ship keys are {sorted(body)}"
    if not _is_id(body["id"]):
        return "ship id is not a positive int"
    for key in SHIP_TEXT:
        if not isinstance(body[key], str) or not body[key]:
            return f"ship {key} is not a non-empty string"
    for key in SHIP_COUNTS:
        if type(body[key]) is not int or body[key] < 1:
            return f"ship {key} is not an int >= 1"
    if not isinstance(body["roles"], list) or not all(isinstance(r, str) for r in body["roles"]):
        return "ship roles is not a list of strings"
    return None


def ship_is(ship_id: int | None, fields: dict) -> Check:
    """The ship as sent (fields), with the expected id (or any id when None)."""

    def check(body: Any) -> str | None:
        problem = ship_problem(body)
        if problem:
            return problem
        if ship_id is not None and body["id"] != ship_id:
            return "ship id differs from the one asked for"
        if any(body[key] != value for key, value in fields.items() if key != "id"):
            return "ship fields differ from what was stored"
        return None

    return check


def search_page(body: Any) -> str | None:
    """At most 3 Empire ships of length >= 8, longest first, ids breaking ties."""
    if not isinstance(body, list) or len(body) > 3:
        return "search page is not a JSON array of at most 3 ships"
    for ship in body:
        problem = ship_problem(ship)
        if problem:
            return f"in search page: {problem}"
        if ship["affiliation"].lower() != "empire" or ship["length"] < 8:
            return "search page holds a ship the filter excludes"
    keys = [(-ship["length"], ship["id"]) for ship in body]
    if keys != sorted(keys):
        return "search page is not sorted by -length,id"
    return None


def ship_list(body: Any) -> str | None:
    if not isinstance(body, list):
        return "ship list is not a JSON array"
    for ship in body:
        problem = ship_problem(ship)
        if problem:
            return f"in ship list: {problem}"
    ids = [ship["id"] for ship in body]
    if len(set(ids)) != len(ids):
        return "ship list repeats an id"
    if not set(SEED_SHIPS) <= set(ids):
        return "ship list lacks seed ships"
    return None


def user_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or set(body) != USER_KEYS:
        return "user is not exactly {id, name}"
    if not _is_id(body["id"]) or not isinstance(body["name"], str):
        return "user id/name have the wrong types"
    return None


def user_is(name: str, user_id: int | None = None) -> Check:
    def check(body: Any) -> str | None:
        problem = user_problem(body)
        if problem:
            return problem
        if body["name"] != name:
            return "user name differs from the one sent"
        if user_id is not None and body["id"] != user_id:
            return "user id differs from the one asked for"
        return None

    return check


def user_list(body: Any) -> str | None:
    if not isinstance(body, list):
        return "user list is not a JSON array"
    for user in body:
        problem = user_problem(user)
        if problem:
            return f"in user list: {problem}"
    listed = {user["id"]: user["name"] for user in body}
    if len(listed) != len(body):
        return "user list repeats an id"
    if any(listed.get(uid) != name for uid, name in SEED_USERS.items()):
        return "user list lacks seed users"
    return None


def _is_jwt(value: Any) -> bool:
    return isinstance(value, str) and value.count(".") == 2 and len(value) > 20


def tokens(*keys: str) -> Check:
    def check(body: Any) -> str | None:
        if not isinstance(body, dict) or set(body) != set(keys):
            return f"token body is not exactly {sorted(keys)}"
        if not all(_is_jwt(body[key]) for key in keys):
            return "token is not a JWT"
        return None

    return check


def equals(expected: Any) -> Check:
    return lambda body: None if body == expected else f"body is not {expected}"


def token_error(message: str) -> Check:
    """The token layer's shape, as flask-jwt-extended's: {"error": <message>}."""
    return equals({"error": message})


def error_is(error: str, message: str | None = None) -> Check:
    """The handlers' error shape: {"error": <reason>, "message": ...}."""

    def check(body: Any) -> str | None:
        if not isinstance(body, dict) or body.get("error") != error:
            return f"error body is not {{'error': {error!r}}}"
        if message is not None and body.get("message") != message:
            return f"error message is not {message!r}"
        return None

    return check


# --- the request helper ------------------------------------------------------
FAILED = object()  # what `call` returns when the answer was wrong


def _describe(resp) -> str:
    """A short, stable account of a wrong answer (stable so errors group)."""
    error = getattr(resp, "error", None)
    if error is not None and not resp.status_code:
        return f"{type(error).__name__}: {error}"[:160]
    try:
        body = json.loads(resp.content or b"")
    except ValueError:
        return repr((resp.content or b"")[:80])
    if isinstance(body, dict) and "error" in body:
        return f"{body.get('error')}: {body.get('message', '')}"[:160]
    return repr(body)[:80]


class FleetUser(FastHttpUser):
    abstract = True
    connection_timeout = 10.0
    network_timeout = 30.0

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: int,
        token: str | None = None,
        json_body: Any = None,
        check: Check | None = None,
        location: str | None = None,
    ) -> Any:
        """One request, judged on status, Content-Type and body.

        Returns the parsed body (None for 204) when the answer is right, else
        FAILED after recording the failure under `name`.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.client.request(
            method, path, name=name, json=json_body, headers=headers, catch_response=True
        ) as resp:
            problem, body = self._judge(resp, expect, check, location)
            if problem:
                resp.failure(problem)
                return FAILED
            resp.success()
            return body

    @staticmethod
    def _judge(resp, expect: int, check: Check | None, location: str | None):
        if resp.status_code != expect:
            return f"expected {expect}, got {resp.status_code} ({_describe(resp)})", None
        if expect == 204:
            return ("204 came with a body" if resp.content else None), None
        content_type = (resp.headers or {}).get("Content-Type", "")
        if not content_type.startswith("application/json"):
            return f"Content-Type is {content_type!r}, not JSON", None
        try:
            body = json.loads(resp.content)
        except (TypeError, ValueError):
            return "body is not valid JSON", None
        problem = check(body) if check else None
        if problem is None and location is not None:
            got = (resp.headers or {}).get("Location") or ""
            if not got.endswith(location.format(**body)):
                problem = "Location header does not name the new resource"
        return problem, body

    # --- steps shared by pilots and recruits ---------------------------------
    def register(self, name: str, password: str) -> int | None:
        body = self.call(
            "POST",
            "/api/users",
            name="/api/users",
            expect=201,
            json_body={"name": name, "password": password},
            check=user_is(name),
            location="/api/users/{id}",
        )
        return None if body is FAILED else body["id"]

    def login(self, name: str, password: str) -> dict | None:
        body = self.call(
            "POST",
            "/auth/login",
            name="/auth/login",
            expect=200,
            json_body={"username": name, "password": password},
            check=tokens("access_token", "refresh_token"),
        )
        return None if body is FAILED else body

    def delete_user(self, user_id: int, token: str) -> bool:
        return (
            self.call("DELETE", f"/api/users/{user_id}", name="/api/users/[id]", expect=204, token=token)
            is not FAILED
        )


class Reader(FleetUser):
    """Anonymous visitors browsing the fleet."""

    weight = 6
    wait_time = between(0.5, 2)

    @task(3)
    def list_ships(self) -> None:
        self.call("GET", "/api/ships", name="/api/ships", expect=200, check=ship_list)

    @task(4)
    def get_ship(self) -> None:
        ship_id = random.choice(list(SEED_SHIPS))
        self.call(
            "GET",
            f"/api/ships/{ship_id}",
            name="/api/ships/[id]",
            expect=200,
            check=ship_is(ship_id, SEED_SHIPS[ship_id]),
        )

    @task(2)
    def search_ships(self) -> None:
        """A filtered, sorted, paged search: its first or second page."""
        offset = random.choice((0, 3))
        self.call(
            "GET",
            f"/api/ships?affiliation=empire&length_min=8&sort=-length,id&limit=3&offset={offset}",
            name="/api/ships?[search]",
            expect=200,
            check=search_page,
        )

    @task(1)
    def list_users(self) -> None:
        self.call("GET", "/api/users", name="/api/users", expect=200, check=user_list)

    @task(2)
    def get_user(self) -> None:
        user_id = random.choice(list(SEED_USERS))
        self.call(
            "GET",
            f"/api/users/{user_id}",
            name="/api/users/[id]",
            expect=200,
            check=user_is(SEED_USERS[user_id], user_id),
        )


class Pilot(FleetUser):
    """Logged-in users managing ships, with their own short-lived pilot account."""

    weight = 3
    wait_time = between(1, 3)
    TOKEN_MAX_AGE = 600  # refresh well before the 15-minute access-token expiry

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user_id: int | None = None
        self.access: str | None = None
        self.refresh: str | None = None
        self.access_since = 0.0
        self.ships: set[int] = set()  # created and not yet deleted

    def on_start(self) -> None:
        name, password = unique_name("pilot"), secrets.token_urlsafe(12)
        self.user_id = self.register(name, password)
        if self.user_id is None:
            raise StopUser()
        session = self.login(name, password)
        if session is None:
            raise StopUser()  # on_stop still deletes nothing it cannot: no token
        self.access, self.refresh = session["access_token"], session["refresh_token"]
        self.access_since = time.monotonic()

    @task(4)
    def fly_a_ship(self) -> None:
        if time.monotonic() - self.access_since > self.TOKEN_MAX_AGE:
            self.refresh_access()
        spec = new_ship()
        created = self.call(
            "POST",
            "/api/ships",
            name="/api/ships",
            expect=201,
            token=self.access,
            json_body=spec,
            check=ship_is(None, spec),
            location="/api/ships/{id}",
        )
        if created is FAILED:
            return
        ship_id = created["id"]
        self.ships.add(ship_id)
        self.call(
            "GET",
            f"/api/ships/{ship_id}",
            name="/api/ships/[id]",
            expect=200,
            check=ship_is(ship_id, spec),
        )
        refit = {**spec, "crew": spec["crew"] + 1, "roles": [*spec["roles"], "Refitted"]}
        self.call(
            "PUT",
            f"/api/ships/{ship_id}",
            name="/api/ships/[id]",
            expect=200,
            token=self.access,
            json_body=refit,
            check=ship_is(ship_id, refit),
        )
        self.scrap(ship_id)

    def scrap(self, ship_id: int) -> None:
        if (
            self.call(
                "DELETE", f"/api/ships/{ship_id}", name="/api/ships/[id]", expect=204, token=self.access
            )
            is FAILED
        ):
            return
        self.ships.discard(ship_id)
        self.call(
            "GET",
            f"/api/ships/{ship_id}",
            name="/api/ships/[id] (deleted)",
            expect=404,
            check=error_is("Not Found"),
        )

    @task(1)
    def refresh_access(self) -> str | None:
        body = self.call(
            "POST",
            "/auth/refresh",
            name="/auth/refresh",
            expect=200,
            token=self.refresh,
            check=tokens("access_token"),
        )
        if body is FAILED:
            return None
        self.access, self.access_since = body["access_token"], time.monotonic()
        return self.access

    def on_stop(self) -> None:
        if self.access is None:
            return  # never logged in: nothing we can clean up
        for ship_id in list(self.ships):  # left over from an interrupted flight
            self.scrap(ship_id)
        old_access, refresh = self.access, self.refresh
        spare = self.refresh_access()  # to delete the user once both are revoked
        if spare is None:
            self.delete_user(self.user_id, old_access)
        # Each logout of the pair, then the same token refused: (method, path, name, status, token, check).
        for method, path, name, expect, token, check in (
            ("DELETE", "/auth/logout", "/auth/logout", 200, old_access, equals(LOGGED_OUT)),
            ("DELETE", "/auth/logout", "/auth/logout (revoked)", 401, old_access, token_error(REVOKED)),
            ("DELETE", "/auth/logout2", "/auth/logout2", 200, refresh, equals(LOGGED_OUT)),
            ("POST", "/auth/refresh", "/auth/refresh (revoked)", 401, refresh, token_error(REVOKED)),
        ):
            self.call(method, path, name=name, expect=expect, token=token, check=check)
        if spare is not None:
            self.delete_user(self.user_id, spare)
        self.access = self.refresh = None


class Recruit(FleetUser):
    """Sign-up churn: an account's whole life in one task."""

    weight = 1
    wait_time = between(2, 5)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.enlisted: tuple[int, str] | None = None  # (id, token) not yet deleted

    @task
    def enlist(self) -> None:
        name, password = unique_name("recruit"), secrets.token_urlsafe(12)
        user_id = self.register(name, password)
        if user_id is None:
            return
        session = self.login(name, password)
        if session is None:
            return
        token = session["access_token"]
        self.enlisted = (user_id, token)
        new_name = f"{name}-renamed"
        self.call(
            "PUT",
            f"/api/users/{user_id}",
            name="/api/users/[id]",
            expect=200,
            token=token,
            json_body={"name": new_name, "password": password},
            check=user_is(new_name, user_id),
        )
        if not self.delete_user(user_id, token):
            return
        self.enlisted = None
        self.call(
            "PUT",
            f"/api/users/{user_id}",
            name="/api/users/[id] (deleted user's token)",
            expect=401,
            token=token,
            json_body={"name": new_name, "password": password},
            check=token_error("Unknown user."),
        )
        self.call(
            "GET",
            f"/api/users/{user_id}",
            name="/api/users/[id] (deleted)",
            expect=404,
            check=error_is("Not Found"),
        )

    def on_stop(self) -> None:
        if self.enlisted is not None:  # interrupted mid-life: don't leave it behind
            self.delete_user(*self.enlisted)
            self.enlisted = None


# --- pass/fail: Locust's own exit code ---------------------------------------
_server_errors = {"count": 0}  # 5xx answers seen here (workers: since last report)


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument(
        "--p95-ms",
        type=float,
        env_var="LOAD_P95_MS",
        default=DEFAULT_P95_MS,
        help="Fail (exit 3) when the aggregated 95th percentile exceeds this many ms.",
    )


@events.request.add_listener
def _count_server_errors(response=None, **_kwargs) -> None:
    if response is not None and (getattr(response, "status_code", 0) or 0) >= 500:
        _server_errors["count"] += 1


@events.report_to_master.add_listener
def _send_server_errors(client_id, data, **_kwargs) -> None:
    data["fleet_5xx"], _server_errors["count"] = _server_errors["count"], 0


@events.worker_report.add_listener
def _receive_server_errors(client_id, data, **_kwargs) -> None:
    _server_errors["count"] += data.get("fleet_5xx", 0)


def p95_limit(environment) -> float:
    options = environment.parsed_options
    limit = getattr(options, "p95_ms", None) if options is not None else None
    return float(limit if limit is not None else os.environ.get("LOAD_P95_MS", DEFAULT_P95_MS))


@events.test_stop.add_listener
def _let_the_csv_catch_up(environment, **_kwargs) -> None:
    """Locust writes --csv files from a greenlet once a second and never again
    at exit (locustio/locust#1806, #2299): without one more pass the CSV lacks
    the requests users made in on_stop (logout, cleanup), which the terminal
    and HTML report do show. Users are stopped by now; give the writer a turn."""
    options = environment.parsed_options
    if (
        options is not None
        and getattr(options, "csv_prefix", None)
        and not isinstance(environment.runner, WorkerRunner)
    ):
        gevent.sleep(stats.CSV_STATS_INTERVAL_SEC + 0.5)


@events.quitting.add_listener
def _verdict(environment, **_kwargs) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master (or the local runner) judges the whole run
    total = environment.stats.total
    p95, limit = total.get_response_time_percentile(0.95), p95_limit(environment)
    problems, code = [], None
    if total.num_requests == 0:
        problems.append("no requests were made")
        code = EXIT_FAILED
    if total.num_failures:
        problems.append(f"{total.num_failures} of {total.num_requests} requests failed")
        code = EXIT_FAILED
    if _server_errors["count"]:
        problems.append(f"{_server_errors['count']} answers were 5xx")
        code = EXIT_FAILED
    if total.num_requests and p95 > limit:
        problems.append(f"p95 {p95} ms is over the {limit:g} ms limit")
        code = code or EXIT_SLOW
    if code is None:
        log.info(
            "load test passed: %d requests, 0 failures, p95 %s ms (limit %g ms)",
            total.num_requests,
            p95,
            limit,
        )
        return  # Locust's default applies: 0, or non-zero for exceptions in this file
    log.error("load test FAILED: %s", "; ".join(problems))
    environment.process_exit_code = code
