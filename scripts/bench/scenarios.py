"""The scenarios: one row each, carrying its wrk script, request and targets.

Every script in benchmarks/ takes the same arguments after wrk's `--`:
METHOD PATH BODY_FILE TOKEN EXPECT [extra...] (`-` for no body or token,
EXPECT 0 for "any 2xx"), so a scenario is data, not a branch of code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scripts.bench.run import Target

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
SHIP_COUNT = 15  # the seed's ships 1..15
# The search scenario: a filter, a range, a two-key sort and a page.
SEARCH = "/api/ships?affiliation=empire&length_min=8&sort=-length,model&limit=5&offset=0"

PAGE = 50  # page_deep: the last full page of this many ships

# Target kinds (see run.py): the real app on some store, and the ceilings.
READS = ("ours", "pg", "ceiling", "bare")
# normal: synchronous=normal; work: the ceiling burning CPU per PUT (BENCH_CEILING_WORK); writes only
WRITES = ("ours", "normal", "pg", "ceiling", "work", "bare")


def page_path(ships: int) -> str:
    """The last full page of the list: deep into it at scale."""
    return f"/api/ships?limit={PAGE}&offset={max(0, ships - PAGE)}"


@dataclasses.dataclass
class Context:
    """What every run shares: the ship the writes replace and the body files."""

    ship: int
    ship_file: Path  # a full ship (the writes)
    login_file: Path  # {"username", "password"}
    empty_file: Path  # {}: a ship with every field missing


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    what: str
    path: str | Callable[[Target, Context], str]
    script: str = "request.lua"
    method: str = "GET"
    body: Callable[[Context], Path] | None = None  # the file holding the body
    token: str | None = None  # "access" or "refresh": the target's own token
    targets: tuple[str, ...] = READS  # the target kinds it runs on
    expect: int = 0  # 0: any 2xx is right; else the one status every answer must have
    login: bool = False  # BENCH_LOGIN_CONNECTIONS: each request holds a core for one scrypt
    extra: Callable[[Target, Context], list[str]] | None = None  # the script's own arguments
    scales: bool = True  # also runs on the BENCH_SCALE twins (ours@N, pg@N)

    def request_path(self, target: Target, ctx: Context) -> str:
        return self.path(target, ctx) if callable(self.path) else self.path

    def wrk_args(self, target: Target, ctx: Context) -> list[str]:
        """The script, URL and script arguments for one wrk run on `target`."""
        body = str(self.body(ctx)) if self.body else "-"
        token = getattr(target, self.token) if self.token else "-"
        extra = self.extra(target, ctx) if self.extra else []
        script = str(BENCH_DIR / self.script)
        args = [self.method, self.request_path(target, ctx), body, token or "-", str(self.expect), *extra]
        return ["-s", script, target.url, "--", *args]

    def runs_on(self, target: Target) -> bool:
        # A BENCH_LAYOUTS twin runs where ours does (not, e.g., in the eddsa pairs).
        return (
            target.kind in self.targets
            and (target.ships == SHIP_COUNT or self.scales)
            and (not target.layout or "ours" in self.targets)
        )


def _ship_path(_target, ctx: Context) -> str:
    return f"/api/ships/{ctx.ship}"


def _deep_page(target, _ctx) -> str:
    return page_path(target.ships)


def _ship_body(ctx: Context) -> Path:
    return ctx.ship_file


def _login_body(ctx: Context) -> Path:
    return ctx.login_file


def _empty_body(ctx: Context) -> Path:
    return ctx.empty_file


def _ship_count(_target, _ctx) -> list[str]:
    return [str(SHIP_COUNT)]


SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            "list_ships",
            "GET /api/ships",
            "the whole fleet (15 ships), anonymous read",
            "/api/ships",
            scales=False,
        ),
        Scenario("search", "GET /api/ships?…", "a filtered, sorted, paged search: " + SEARCH, SEARCH),
        Scenario(
            "page_deep",
            f"GET /api/ships?limit={PAGE}&offset=N-{PAGE}",
            f"the last page of {PAGE} of the whole list, anonymous read (at 15 ships: all of them)",
            _deep_page,
        ),
        Scenario("get_ship", "GET /api/ships/1", "one ship, anonymous read", "/api/ships/1"),
        Scenario(
            "update_ship",
            "PUT /api/ships/N",
            "replace one ship with a new crew each time (put.lua: every PUT changes the row): "
            "Bearer access token, JSON body validated, a durable write",
            _ship_path,
            script="put.lua",
            method="PUT",
            body=_ship_body,
            token="access",
            targets=WRITES,
        ),
        Scenario(
            "login",
            "POST /auth/login",
            "username + password: one scrypt verify, two JWTs signed",
            "/auth/login",
            method="POST",
            body=_login_body,
            login=True,
        ),
        Scenario(
            "refresh",
            "POST /auth/refresh",
            "Bearer refresh token: JWT verify, blocklist + user lookups, one JWT signed",
            "/auth/refresh",
            method="POST",
            token="refresh",
        ),
        Scenario(
            "mixed",
            "mixed 80/10/10",
            "80% GET one ship (random id), 10% GET list, 10% PUT with a token and a new crew",
            _ship_path,
            script="mixed.lua",
            method="PUT",
            body=_ship_body,
            token="access",
            extra=_ship_count,
            scales=False,
        ),
        Scenario(
            "update_ship_eddsa",
            "PUT /api/ships/N (EdDSA)",
            "update_ship with an EdDSA access token",
            _ship_path,
            script="put.lua",
            method="PUT",
            body=_ship_body,
            token="access",
            targets=("eddsa", "ceiling"),
            scales=False,
        ),
        Scenario(
            "refresh_eddsa",
            "POST /auth/refresh (EdDSA)",
            "refresh with an EdDSA refresh token: one Ed25519 signature",
            "/auth/refresh",
            method="POST",
            token="refresh",
            targets=("eddsa", "ceiling"),
            scales=False,
        ),
        Scenario(
            "session_cost",
            "POST /api/ships {} (sessions: after ÷ before)",
            "an authenticated request that does the token check and little else (auth, then a 400): "
            "ours vs the code before sessions, same plain gunicorn, no metrics",
            "/api/ships",
            script="expect.lua",
            method="POST",
            body=_empty_body,
            token="access",
            targets=("after", "before"),
            expect=400,
            scales=False,
        ),
    ]
}


# What BENCH_SCALE measures unless BENCH_SCENARIOS says otherwise (issue 12).
SCALE_SCENARIOS = "search,page_deep,get_ship,update_ship,login"


def choose(raw: str | None, scale: int = 0) -> list[Scenario]:
    """BENCH_SCENARIOS (comma-separated names; empty or None: all, or with
    BENCH_SCALE the scale set) -> scenarios. ValueError names the unknown ones."""
    default = SCALE_SCENARIOS if scale else ",".join(SCENARIOS)
    wanted = [s.strip() for s in (raw or default).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown or not wanted:
        raise ValueError(f"unknown BENCH_SCENARIOS {unknown}; choose from {', '.join(SCENARIOS)}")
    return [SCENARIOS[s] for s in wanted]
