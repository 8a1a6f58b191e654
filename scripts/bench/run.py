"""Run: the servers the bench measures ("targets"), started side by side on
free loopback ports through devtools.gunicorn and stopped by PID, and the
little HTTP the bench does itself (tokens, the ceiling's canned bodies,
churn between rounds).

  ours     the real app under gunicorn.conf.py, its own temp SQLite store
           (FLEET_STORE overrides)
  eddsa    the same app signing with a fresh Ed25519 key, started only for
           the *_eddsa scenarios
  ceiling  benchmarks/ceiling.py under gunicorn.conf.py: a bare Falcon app
           answering the same routes with the bytes ours sent, no auth,
           store or validation (what our app costs)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
from pathlib import Path

from devtools.gunicorn import GunicornServer
from devtools.http import call
from fleet_api.keys import new_key
from scripts.bench.measure import BenchError
from scripts.bench.scenarios import SEARCH, SHIP_COUNT, Context, Scenario

CEILING_APP = "benchmarks.ceiling:get_app()"
USERNAME, PASSWORD = "user", "password"
APP_KINDS = ("ours", "eddsa")  # the real app: it needs tokens, and a bad status is a failure


@dataclasses.dataclass
class Target:
    name: str  # as reported
    kind: str
    server: GunicornServer
    ships: int = SHIP_COUNT
    access: str = ""
    refresh: str = ""

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def is_app(self) -> bool:
        return self.kind in APP_KINDS


# --- HTTP to our servers (loopback only) ----------------------------------------


def expect(method: str, url: str, body=None, token: str | None = None) -> bytes:
    answer = call(method, url, body, token)
    if not 200 <= answer.status < 300:
        raise BenchError(f"{method} {url} answered {answer.status}: {answer.body[:200]!r}")
    return answer.body


def login(base: str) -> dict:
    return json.loads(expect("POST", f"{base}/auth/login", {"username": USERNAME, "password": PASSWORD}))


def fresh_tokens(target: Target) -> None:
    tokens = login(target.url)
    target.access, target.refresh = tokens["access_token"], tokens["refresh_token"]


def canned_bodies(ours: Target, ctx: Context) -> dict:
    """The exact bytes ours answers each benchmarked request with, for the ceiling.

    The write goes first, so from here on every GET answers the same bytes
    on ours as on the ceiling (give or take the crew a varying PUT sets).
    """
    base = ours.url
    ship = json.loads(ctx.ship_file.read_bytes())
    return {
        "put": expect("PUT", f"{base}/api/ships/{ctx.ship}", ship, ours.access).decode(),
        "list": expect("GET", f"{base}/api/ships").decode(),
        "queries": {SEARCH.partition("?")[2]: expect("GET", f"{base}{SEARCH}").decode()},
        "ships": {str(i): expect("GET", f"{base}/api/ships/{i}").decode() for i in range(1, SHIP_COUNT + 1)},
        "login": expect("POST", f"{base}/auth/login", json.loads(ctx.login_file.read_bytes())).decode(),
        "refresh": expect("POST", f"{base}/auth/refresh", None, ours.refresh).decode(),
    }


def churn(base: str, count: int) -> None:
    """`count` logins, each followed by both logouts: revoked tokens pile up."""

    def one(_):
        tokens = login(base)
        expect("DELETE", f"{base}/auth/logout", None, tokens["access_token"])
        expect("DELETE", f"{base}/auth/logout2", None, tokens["refresh_token"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


# --- the targets ------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    """Everything the servers need, and the targets once made."""

    work: Path  # a temp dir for stores, keys and body files
    reports: Path
    server_env: dict[str, str]
    targets: list[Target] = dataclasses.field(default_factory=list)

    @property
    def bodies_file(self) -> Path:
        return self.work / "ceiling.json"

    def log(self, name: str) -> Path:
        return self.reports / f"bench-{name}.log"

    def add(self, name: str, kind: str, **server) -> Target:
        server.setdefault("log_path", self.log(name))
        server.setdefault("ready_path", "/api/ships/1")
        env = {**self.server_env, **server.pop("env", {})}
        target = Target(name, kind, GunicornServer(env=env, **server))
        self.targets.append(target)
        return target

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def stop(self) -> None:
        for target in reversed(self.targets):
            with contextlib.suppress(Exception):
                target.server.stop()
            target.server.cleanup()

    @property
    def masters(self) -> list[int]:
        return [t.server.pid for t in self.targets if t.server.process is not None]


def make_targets(bench: Bench, scenarios: list[Scenario]) -> None:
    """The servers the chosen scenarios run on (not started yet)."""
    kinds = {kind for s in scenarios for kind in s.targets} | {"ours"}  # ours: canned bodies, memory
    # FLEET_STORE from the environment is ours' store; every other app gets its own.
    bench.add(
        "ours",
        "ours",
        env={"FLEET_STORE": os.environ["FLEET_STORE"]} if os.environ.get("FLEET_STORE") else {},
    )
    if "eddsa" in kinds:
        new_key(bench.work / "keys", "EdDSA")
        env = {"FLEET_JWT_ALGORITHM": "EdDSA", "FLEET_SIGNING_KEYS": str(bench.work / "keys")}
        bench.add("eddsa", "eddsa", env=env)
    if "ceiling" in kinds:
        bench.add("ceiling", "ceiling", app=CEILING_APP, env={"BENCH_CEILING_BODIES": str(bench.bodies_file)})


def start_targets(bench: Bench, ctx: Context) -> None:
    """Ours first (the ceiling serves its bytes), then the other apps, then the ceilings."""
    ours = bench.target("ours")
    ours.server.start()
    fresh_tokens(ours)
    bench.bodies_file.write_text(json.dumps(canned_bodies(ours, ctx)))
    for target in bench.targets:
        if target is ours or not target.is_app:
            continue
        target.server.start()
        fresh_tokens(target)
        # The same ship, so the same bytes as ours.
        expect(
            "PUT", f"{target.url}/api/ships/{ctx.ship}", json.loads(ctx.ship_file.read_bytes()), target.access
        )
    for target in bench.targets:
        if not target.is_app:
            target.server.start()
