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
  bare     the same bare app under plain gunicorn: the same worker layout,
           no config file, so no access log (what our config costs)
  normal   ours with ?synchronous=normal (no fsync per commit), for the
           writes: what durability costs
  ceiling+ours  with BENCH_CEILING_WORK (default `own`): the ceiling that
  ceiling+Nus   also burns, per PUT, ours' own in-process CPU per PUT
           (inprocess.py, measured at the start of the run) or N µs, in a
           plain Python loop: what ours would reach if its CPU were all it
           cost (update_ship only)
  ours@N   with BENCH_SCALE=N: ours on a store bulk-filled (fill.py) with N
           ships, BENCH_REVOKED revoked ids and BENCH_SESSIONS sessions per
           user before it starts, for the scenarios that scale
  pg       with BENCH_PG=1: ours on a throwaway PostgreSQL the bench starts
           (devtools.postgres, fsync and synchronous_commit on) and stops by
           PID; with BENCH_SCALE also pg@N
  ours/WxT with BENCH_LAYOUTS=WxT,...: ours and the ceiling again under
  ceiling/WxT  gunicorn.conf.py with W workers x T threads (WEB_CONCURRENCY,
           GUNICORN_THREADS), in every scenario ours runs: the layout
           choice measured side by side
  after    ours under plain gunicorn (the same worker layout, no config
           file, so no access log) with FLEET_METRICS=off, and
  before   the code before sessions (BENCH_BASELINE, checked out with
           `git worktree add --detach` into the bench's temp dir and removed
           afterwards) under the very same command line, each on its own
           temp SQLite store: the session_cost pair, which differ only in
           the app's code
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.ceiling import WORK_ENV
from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call
from fleet_api.keys import new_key
from fleet_api.passwords import PasswordHasher
from scripts.bench.config import DEFAULT_BASELINE, OWN_WORK, shipped_layout
from scripts.bench.fill import fill
from scripts.bench.measure import BenchError
from scripts.bench.scenarios import SEARCH, SHIP_COUNT, Context, Scenario, page_path

CEILING_APP = "benchmarks.ceiling:get_app()"
USERNAME, PASSWORD = "user", "password"
# The real app: it needs tokens, and a bad status from it is a failure.
APP_KINDS = ("ours", "eddsa", "normal", "pg", "after", "before")
# PostgreSQL for the bench keeps its durability, unlike the tests' throwaway settings.
PG_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
APP = "fleet_api.app:get_app()"
GIT_TIMEOUT = 120  # seconds for a git or import check of the baseline


@dataclasses.dataclass
class Target:
    name: str  # as reported
    kind: str
    server: GunicornServer
    ships: int = SHIP_COUNT
    store_url: str | None = None
    access: str = ""
    refresh: str = ""
    layout: str = ""  # "WxT" for a BENCH_LAYOUTS twin; "" under the shipped layout

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
        "queries": {
            path.partition("?")[2]: expect("GET", f"{base}{path}").decode()
            for path in (SEARCH, page_path(SHIP_COUNT))
        },
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
    baseline: str = DEFAULT_BASELINE  # a git ref, or a checkout's directory (BENCH_BASELINE)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # scenario -> why it was not measured
    session_bodies: str = ""  # whether after and before answer session_cost alike
    fills: list[str] = dataclasses.field(default_factory=list)  # what each scaled store got, how fast
    pg: str | None = None  # the DSN of the bench's PostgreSQL (BENCH_PG=1)
    own_work_us: float | None = None  # ours' in-process CPU per PUT, when measured (inprocess.py)
    _worktree: Path | None = None

    @property
    def bodies_file(self) -> Path:
        return self.work / "ceiling.json"

    def log(self, name: str) -> Path:
        return self.reports / f"bench-{name}.log"

    def add(self, name: str, kind: str, ships: int = SHIP_COUNT, layout: str = "", **server) -> Target:
        server.setdefault("log_path", self.log(re.sub(r"[^A-Za-z0-9]+", "_", name)))
        server.setdefault("ready_path", "/api/ships/1")
        env = {**self.server_env, **server.pop("env", {})}
        target = Target(
            name, kind, GunicornServer(env=env, **server), ships, env.get("FLEET_STORE"), layout=layout
        )
        self.targets.append(target)
        return target

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def drop(self, *names: str) -> None:
        """Stop and forget these targets (a scenario that can't run)."""
        for target in [t for t in self.targets if t.name in names]:
            with contextlib.suppress(Exception):
                target.server.stop()
            target.server.cleanup()
            self.targets.remove(target)

    def stop(self) -> None:
        """Stop every server (the targets stay listed, for the report)."""
        for target in reversed(self.targets):
            with contextlib.suppress(Exception):
                target.server.stop()
            target.server.cleanup()
        if self._worktree is not None:
            remove_worktree(self._worktree)
            self._worktree = None

    def checkout_baseline(self) -> Path:
        """The baseline's source tree: BENCH_BASELINE as a directory, or that
        ref checked out into a temporary worktree. BenchError says why not."""
        given = Path(self.baseline)
        if given.is_dir():
            root = given.resolve()
        else:
            root = self.work / "baseline"
            git("worktree", "add", "--detach", str(root), self.baseline)
            self._worktree = root
        check_importable(root)
        return root

    @property
    def masters(self) -> list[int]:
        return [t.server.pid for t in self.targets if t.server.process is not None]


def git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"git {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def remove_worktree(path: Path) -> None:
    """Only the worktree we added, by its path."""
    with contextlib.suppress(BenchError):
        git("worktree", "remove", "--force", str(path))


def check_importable(root: Path) -> None:
    """The baseline's app must import, from its own tree (not ours, which is
    installed in this venv) with this venv's packages."""
    probe = "import fleet_api.app, sys; sys.stdout.write(fleet_api.app.__file__)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"the baseline at {root} does not import: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"the baseline at {root} does not import:\n{done.stderr.strip()[-1500:]}")
    if not Path(done.stdout).resolve().is_relative_to(root):
        raise BenchError(f"the baseline's fleet_api resolved to {done.stdout}, not under {root}")


def plain_gunicorn() -> list[str]:
    """gunicorn.conf.py's worker layout as command-line flags, and nothing else."""
    workers, threads = shipped_layout()
    return ["--workers", workers, "--threads", threads, "--worker-class", "gthread"]


def make_session_pair(bench: Bench) -> None:
    """after and before for session_cost; if the baseline can't be had, a
    note says why and the rest of the bench goes on."""
    try:
        root = bench.checkout_baseline()
    except BenchError as exc:
        bench.notes["session_cost"] = f"not measured: baseline {bench.baseline!r} unavailable: {exc}"
        return
    # The baseline has no metrics: ours runs without them too (and a baseline
    # that has them, e.g. HEAD, as well), so only the app's code differs.
    same = {"conf": None, "args": plain_gunicorn(), "app": APP, "env": {"FLEET_METRICS": "off"}}
    bench.add("after", "after", **same)
    bench.add("before", "before", root=root, **same)


@dataclasses.dataclass(frozen=True)
class Scale:
    """BENCH_SCALE's twins: what their stores hold, and how to seed them."""

    ships: int = 0
    revoked: int = 0
    sessions: int = 0
    hasher: PasswordHasher | None = None
    data: Path | None = None


SCALED = ("ours", "pg")  # the kinds that get an @N twin


def new_database(dsn: str, name: str) -> str:
    """A new database beside `dsn`'s on the same server; its DSN."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # our own constant name
    return dsn.rsplit("/", 1)[0] + "/" + name


def scaled_twin(bench: Bench, of: Target, scale: Scale) -> Target:
    """`of`'s twin on a new store filled with scale.ships ships etc. (before it starts)."""
    name = f"{of.name}@{scale.ships}"
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name)
    url = new_database(bench.pg, slug) if of.kind == "pg" else f"sqlite:///{bench.work / slug}.db"
    print(f"filling {name} ...", flush=True)
    filled = fill(url, scale.ships, scale.revoked, scale.sessions, scale.hasher, scale.data)
    print(f"filled {name}: {filled.describe()}", flush=True)
    bench.fills.append(f"{name}: {filled.describe()}")
    return bench.add(name, of.kind, ships=scale.ships, env={"FLEET_STORE": url})


def make_targets(
    bench: Bench,
    scenarios: list[Scenario],
    scale: Scale = Scale(),
    layouts: tuple[str, ...] = (),
    work: dict[str, float] | None = None,
) -> None:
    """The servers the chosen scenarios run on (not started yet). `work`
    maps each BENCH_CEILING_WORK item (`own`, or µs) to the µs its
    ceiling+work twin burns per PUT."""
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
    if bench.pg and "pg" in kinds:
        bench.add("pg", "pg", env={"FLEET_STORE": bench.pg})
    if scale.ships and any(s.scales for s in scenarios):
        for twin in [t for t in bench.targets if t.kind in SCALED]:
            scaled_twin(bench, twin, scale)
    if "normal" in kinds:
        bench.add(
            "normal",
            "normal",
            env={"FLEET_STORE": f"sqlite:///{bench.work / 'normal.db'}?synchronous=normal"},
        )
    canned = {"app": CEILING_APP, "env": {"BENCH_CEILING_BODIES": str(bench.bodies_file)}}
    if "ceiling" in kinds:
        bench.add("ceiling", "ceiling", **canned)
    if "work" in kinds:
        for item, us in (work or {}).items():
            name = "ceiling+ours" if item == OWN_WORK else f"ceiling+{item}us"
            bench.add(name, "work", **{**canned, "env": {**canned["env"], WORK_ENV: f"{us:.1f}"}})
    if "bare" in kinds:
        bench.add("bare", "bare", conf=None, args=plain_gunicorn(), **canned)
    for layout in layouts:
        workers, threads = layout.split("x")
        env = {"WEB_CONCURRENCY": workers, "GUNICORN_THREADS": threads}
        bench.add(f"ours/{layout}", "ours", layout=layout, env=env)
        if "ceiling" in kinds:
            bench.add(
                f"ceiling/{layout}", "ceiling", layout=layout, **{**canned, "env": {**canned["env"], **env}}
            )
    if "before" in kinds:
        make_session_pair(bench)


def start_targets(bench: Bench, ctx: Context) -> None:
    """Ours first (the ceiling serves its bytes), then the other apps, then the ceilings."""
    ours = bench.target("ours")
    ours.server.start()
    fresh_tokens(ours)
    bench.bodies_file.write_text(json.dumps(canned_bodies(ours, ctx)))
    for target in list(bench.targets):
        if target is ours or not target.is_app:
            continue
        if target.kind in ("after", "before"):
            if target.kind == "before":
                start_pair(bench, target)  # after, then before, checked
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


def session_probe(target: Target) -> tuple[int, bytes]:
    """What session_cost's request answers on this target."""
    answer = call("POST", f"{target.url}/api/ships", {}, target.access)
    return answer.status, answer.body


def start_pair(bench: Bench, before: Target) -> None:
    """Start after and before (already made); both must answer session_cost's
    request with the same status, or the pair is dropped with a note."""
    after = bench.target("after")
    try:
        after.server.start()
        fresh_tokens(after)
        before.server.start()
        fresh_tokens(before)
        answers = {t.name: session_probe(t) for t in (after, before)}
    except (BenchError, RuntimeError) as exc:
        bench.notes["session_cost"] = f"not measured: the baseline {bench.baseline!r} did not serve: {exc}"
        bench.drop("after", "before")
        return
    statuses = {name: status for name, (status, _) in answers.items()}
    if set(statuses.values()) != {400}:
        bench.notes["session_cost"] = (
            f"not measured: POST /api/ships {{}} answered {statuses}, not 400 on both"
        )
        bench.drop("after", "before")
        return
    same = answers["after"][1] == answers["before"][1]
    bench.session_bodies = (
        "both answer the same 400 body"
        if same
        else f"400 bodies differ: {answers['after'][1][:120]!r} vs {answers['before'][1][:120]!r}"
    )
