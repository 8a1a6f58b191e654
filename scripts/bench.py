"""`make bench`: wrk against Fleet API and against its ceiling, interleaved.

Two gunicorns run side by side for the whole bench, both with the project's
gunicorn.conf.py on free loopback ports (devtools.gunicorn):

  ours     the real app (own temp SQLite store unless FLEET_STORE is set)
  ours EdDSA  the same app signing with a fresh Ed25519 key (FLEET_JWT_ALGORITHM=
           EdDSA), started only for the *_eddsa scenarios, which it answers
           in place of ours; they share the ceiling
  ceiling  benchmarks/ceiling.py: a bare Falcon app answering the same routes
           with the same bytes ours sent (fetched once at start), no auth,
           store or validation

Every scenario runs A, B, A, B ... (ours, ceiling) for BENCH_ROUNDS rounds;
the table reports medians and the ratio ours / ceiling (1.0 = nothing left to
win in the app). Login is dominated by scrypt by design and is reported on its
own, with the hash cost measured here. After each round a few logins and
logouts (token revocations) run, then each of our workers' RSS is read from
/proc, to show memory does not grow across rounds.

Output: the tables on stdout, reports/bench.md and reports/bench.png.
Exit 0 when every run completed with only 2xx answers, 1 when a run failed
(non-2xx answers, no requests), 2 on bad usage or a missing wrk.

Environment (all optional):
  BENCH_ROUNDS       rounds; each runs every scenario on both servers (default 3)
  BENCH_DURATION     seconds per wrk run                               (default 5)
  BENCH_CONNECTIONS  wrk connections                                   (default 32)
  BENCH_THREADS      wrk threads                                       (default 2)
  BENCH_SCENARIOS    comma-separated subset of: list_ships, search, get_ship,
                     update_ship, login, refresh, mixed, update_ship_eddsa,
                     refresh_eddsa                                     (default all)
  BENCH_LOGIN_CONNECTIONS  wrk connections for login (default 4: each
                     login holds a core for one scrypt, more only queue)
  BENCH_WARMUP       seconds of mixed traffic on each server first     (default 1)
  BENCH_CHURN        logins + logouts between rounds                   (default 20)
  BENCH_SHIP         ship id the writes replace                        (default 2)
  BENCH_REPORTS      report directory                                  (default reports/)
  BENCH_PROFILE      1: also py-spy one worker during get_ship and update_ship
                     (needs py-spy; top 10 in bench.md, stacks in
                     reports/profile_*.folded)
  FLEET_SECRET_KEY   signing key (random 48 characters when unset)
  FLEET_STORE, FLEET_SCRYPT_N, WEB_CONCURRENCY, GUNICORN_THREADS  passed to both servers
Note: with FLEET_STORE set, ship BENCH_SHIP in that store is replaced by the
bench's body.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from devtools.gunicorn import GunicornServer
from devtools.processes import spawn, stop_process, worker_pids
from fleet_api.keys import new_key
from fleet_api.settings import SECRET_ENV, Settings
from tests.support.bodies import STAR_DESTROYER

ROOT = Path(__file__).resolve().parent.parent

BENCH_DIR = ROOT / "benchmarks"
CEILING_APP = "benchmarks.ceiling:get_app()"
SHIP_COUNT = 15  # the seed's ships 1..15
USERNAME, PASSWORD = "user", "password"
# The ship the writes send: the README's full ship, the one the tests send.
SHIP_BODY = STAR_DESTROYER
# The search scenario: a filter, a range, a two-key sort and a page.
SEARCH = "/api/ships?affiliation=empire&length_min=8&sort=-length,model&limit=5&offset=0"
WRK_TIMEOUT = "10s"  # logins queue behind scrypt: don't count them as socket timeouts
WRK_GRACE = 30  # seconds on top of the run before wrk is killed


class BenchError(RuntimeError):
    pass


# --- scenarios ---------------------------------------------------------------


EDDSA_SUFFIX = "_eddsa"  # the same request, against the EdDSA server with its tokens


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    what: str

    @property
    def eddsa(self) -> bool:
        return self.name.endswith(EDDSA_SUFFIX)

    def wrk_args(self, base: str, ctx: Context) -> list[str]:
        """The script, URL and script arguments for one wrk run."""
        if self.eddsa:
            plain = SCENARIOS[self.name.removesuffix(EDDSA_SUFFIX)]
            return plain.wrk_args(
                base, dataclasses.replace(ctx, access=ctx.eddsa_access, refresh=ctx.eddsa_refresh)
            )
        req = str(BENCH_DIR / "request.lua")
        if self.name == "list_ships":
            return ["-s", str(BENCH_DIR / "report.lua"), f"{base}/api/ships"]
        if self.name == "search":
            return ["-s", str(BENCH_DIR / "report.lua"), f"{base}{SEARCH}"]
        if self.name == "get_ship":
            return ["-s", str(BENCH_DIR / "report.lua"), f"{base}/api/ships/1"]
        if self.name == "update_ship":
            return ["-s", req, base, "--", "PUT", f"/api/ships/{ctx.ship}", str(ctx.ship_file), ctx.access]
        if self.name == "login":
            return ["-s", req, base, "--", "POST", "/auth/login", str(ctx.login_file)]
        if self.name == "refresh":
            return ["-s", req, base, "--", "POST", "/auth/refresh", "-", ctx.refresh]
        if self.name == "mixed":
            return [
                "-s",
                str(BENCH_DIR / "mixed.lua"),
                base,
                "--",
                ctx.access,
                str(ctx.ship_file),
                str(ctx.ship),
                str(SHIP_COUNT),
            ]
        raise AssertionError(self.name)


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("list_ships", "GET /api/ships", "the whole fleet (15 ships), anonymous read"),
        Scenario("search", "GET /api/ships?…", "a filtered, sorted, paged search: " + SEARCH),
        Scenario("get_ship", "GET /api/ships/1", "one ship, anonymous read"),
        Scenario(
            "update_ship",
            "PUT /api/ships/N",
            "replace one ship: Bearer access token, JSON body validated, SQLite write",
        ),
        Scenario("login", "POST /auth/login", "username + password: one scrypt verify, two JWTs signed"),
        Scenario(
            "refresh",
            "POST /auth/refresh",
            "Bearer refresh token: JWT verify, blocklist + user lookups, one JWT signed",
        ),
        Scenario(
            "mixed", "mixed 80/10/10", "80% GET one ship (random id), 10% GET list, 10% PUT with a token"
        ),
        Scenario("update_ship_eddsa", "PUT /api/ships/N (EdDSA)", "update_ship with an EdDSA access token"),
        Scenario(
            "refresh_eddsa",
            "POST /auth/refresh (EdDSA)",
            "refresh with an EdDSA refresh token: one Ed25519 signature",
        ),
    ]
}


@dataclasses.dataclass
class Context:
    ship: int
    ship_file: Path
    login_file: Path
    access: str = ""
    refresh: str = ""
    eddsa_access: str = ""
    eddsa_refresh: str = ""


# --- HTTP to our server (urllib, loopback only) -------------------------------


def call(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def expect(method: str, url: str, body: bytes | None = None, token: str | None = None) -> bytes:
    status, data = call(method, url, body, token)
    if not 200 <= status < 300:
        raise BenchError(f"{method} {url} answered {status}: {data[:200]!r}")
    return data


def login(base: str) -> dict:
    creds = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    return json.loads(expect("POST", f"{base}/auth/login", creds))


def canned_bodies(base: str, ctx: Context) -> dict:
    """The exact bytes ours answers each benchmarked request with.

    The write goes first: it is idempotent, so from here on every GET answers
    the same bytes for the whole bench, on ours as on the ceiling.
    """
    put = expect("PUT", f"{base}/api/ships/{ctx.ship}", ctx.ship_file.read_bytes(), ctx.access)
    return {
        "put": put.decode(),
        "list": expect("GET", f"{base}/api/ships").decode(),
        "search": expect("GET", f"{base}{SEARCH}").decode(),
        "ships": {str(i): expect("GET", f"{base}/api/ships/{i}").decode() for i in range(1, SHIP_COUNT + 1)},
        "login": expect("POST", f"{base}/auth/login", ctx.login_file.read_bytes()).decode(),
        "refresh": expect("POST", f"{base}/auth/refresh", None, ctx.refresh).decode(),
    }


def churn(base: str, count: int) -> None:
    """`count` logins, each followed by both logouts: revoked tokens pile up."""

    def one(_):
        tokens = login(base)
        expect("DELETE", f"{base}/auth/logout", None, tokens["access_token"])
        expect("DELETE", f"{base}/auth/logout2", None, tokens["refresh_token"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


# --- wrk -----------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    status_errors: int


def run_wrk(args: list[str], duration: int, connections: int, threads: int) -> Run:
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        WRK_TIMEOUT,
        *args,
    ]
    # spawn: wrk dies with us, whatever stops the bench.
    process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=duration + WRK_GRACE)
    except subprocess.TimeoutExpired:
        stop_process(process, ((signal.SIGKILL, 10.0),))
        raise BenchError(f"wrk overran {duration + WRK_GRACE}s: {' '.join(cmd)}") from None
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if process.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({process.returncode}): {' '.join(cmd)}\n{out[-2000:]}")
    r = json.loads(match.group(1))
    seconds = r["duration_us"] / 1e6
    return Run(
        requests=r["requests"],
        rps=r["requests"] / seconds if seconds else 0.0,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        socket_errors=r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
        status_errors=r["status_errors"],
    )


# --- memory --------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def settle(masters: list[int], timeout: float = 15.0) -> None:
    """Wait (bounded) until the servers' workers are idle.

    wrk stops sending at the end of a run, but requests already queued (logins
    waiting on scrypt) keep the CPU busy: without this the next run, on either
    server, would be measured on a busy machine.
    """
    pids = [pid for master in masters for pid in sorted(worker_pids(master))]
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    before = cpu_ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_ticks(pids)
        if now - before <= 0.02 * hz:  # under 10% of one core over 200 ms
            return
        before = now


def sample_rss(master: int) -> dict[int, int]:
    return {pid: kib for pid in worker_pids(master) if (kib := rss_kib(pid)) is not None}


# --- password hashing -----------------------------------------------------------


def hash_cost(settings: Settings, count: int = 5) -> float:
    """Median milliseconds for one scrypt hash with the server's parameters."""
    n, r, p = settings.scrypt_n, settings.scrypt_r, settings.scrypt_p
    times = []
    for _ in range(count):
        start = time.perf_counter()
        hashlib.scrypt(
            b"password", salt=os.urandom(16), n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32
        )
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# --- profiling (optional) ---------------------------------------------------------


def start_profilers(pids: list[int], seconds: int, prefix: Path) -> list[tuple[subprocess.Popen, Path]]:
    """py-spy every worker for `seconds` (wall clock, collapsed stacks per function)."""
    spies = []
    for pid in pids:
        raw = prefix.with_name(f"{prefix.name}_{pid}.folded")
        cmd = [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--function",
            "--output",
            str(raw),
        ]
        spies.append(
            (
                spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                raw,
            )
        )
    return spies


def top_self(raws: list[Path], n: int = 10) -> tuple[list[tuple[str, float]], float]:
    """Top `n` leaf functions of the threads busy with a request, and the app's share.

    Only stacks under gunicorn's ThreadWorker.handle count: idle pool threads
    and the main thread's poll loop are left out, whatever py-spy thinks of them.
    """
    self_time: Counter = Counter()
    in_app = 0
    for raw in raws:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "ThreadWorker.handle (" not in stack or not count.isdigit():
                continue
            self_time[stack.split(";")[-1]] += int(count)
            if "App.__call__ (" in stack:
                in_app += int(count)
    total = sum(self_time.values()) or 1
    return [(name, 100 * c / total) for name, c in self_time.most_common(n)], 100 * in_app / total


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


# --- reports -------------------------------------------------------------------------


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def results_table(rows: list[dict]) -> str:
    lines = [
        "| scenario | request | ours req/s | ceiling req/s | ratio | ratio range | "
        "ours p50 ms | ours p99 ms | ceiling p50 ms | ceiling p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['title']} | {fmt(r['ours_rps'])} | {fmt(r['ceiling_rps'])} | "
            f"{r['ratio']:.3f} | {r['ratio_min']:.3f}–{r['ratio_max']:.3f} | "
            f"{fmt(r['ours_p50'])} | {fmt(r['ours_p99'])} | {fmt(r['ceiling_p50'])} | "
            f"{fmt(r['ceiling_p99'])} | {r['errors']} |"
        )
    return "\n".join(lines)


def memory_table(samples: list[dict[int, int]]) -> str:
    lines = [
        "| worker pid | RSS after warm-up MiB | after round 1 MiB | after last round MiB | growth round 1 → last KiB |",
        "|---|---:|---:|---:|---:|",
    ]
    base, first, last = samples[0], samples[1], samples[-1]
    for pid in sorted(set(first) | set(last)):
        cells = [f"{d[pid] / 1024:.1f}" if pid in d else "gone" for d in (base, first, last)]
        growth = f"{last[pid] - first[pid]:+d}" if pid in first and pid in last else "n/a"
        lines.append(f"| {pid} | {' | '.join(cells)} | {growth} |")
    return "\n".join(lines)


def login_table(settings: Settings, ms: float, login_row: dict | None) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"scrypt N={settings.scrypt_n}, r={settings.scrypt_r}, p={settings.scrypt_p} "
        f"({128 * settings.scrypt_n * settings.scrypt_r // 2**20} MiB per hash): "
        f"{ms:.1f} ms per hash in the bench process, so at most ~{cores * 1000 / ms:.0f} logins/s "
        f"on {cores} cores.",
    ]
    if login_row:
        lines.append(
            f"Measured: {fmt(login_row['ours_rps'])} logins/s (p50 {fmt(login_row['ours_p50'])} ms, "
            f"p99 {fmt(login_row['ours_p99'])} ms) = {login_row['ours_rps'] * ms / 1000 / cores:.0%} "
            f"of the hash-bound limit; its ratio to the ceiling ({login_row['ratio']:.4f}) only "
            "measures scrypt, by design."
        )
    return "\n\n".join(lines)


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars = left.bar(names, [r["ratio"] for r in rows], color="tab:blue")
    left.errorbar(
        names,
        [r["ratio"] for r in rows],
        yerr=[[r["ratio"] - r["ratio_min"] for r in rows], [r["ratio_max"] - r["ratio"] for r in rows]],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    left.bar_label(bars, labels=[f"{r['ratio']:.2f}" for r in rows], padding=2)
    left.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_ylim(0, max(1.1, max(r["ratio_max"] for r in rows) * 1.15))
    left.set_title("ours ÷ ceiling (req/s, median; bars: min–max)")
    x = range(len(rows))
    right.bar([i - 0.2 for i in x], [r["ours_rps"] for r in rows], width=0.4, label="ours")
    right.bar([i + 0.2 for i in x], [r["ceiling_rps"] for r in rows], width=0.4, label="ceiling")
    right.set_xticks(list(x), names)
    right.set_yscale("log")
    right.set_title("requests/s (log scale)")
    right.legend()
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"{name} must not be negative")
    return value


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu or 'unknown CPU'}), Python {sys.version.split()[0]}"


def main() -> int:
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    rounds = max(1, env_int("BENCH_ROUNDS", 3))
    duration = max(1, env_int("BENCH_DURATION", 5))
    connections = max(1, env_int("BENCH_CONNECTIONS", 32))
    threads = max(1, env_int("BENCH_THREADS", 2))
    login_connections = max(1, env_int("BENCH_LOGIN_CONNECTIONS", 4))
    warmup = env_int("BENCH_WARMUP", 1)
    churn_count = env_int("BENCH_CHURN", 20)
    ship = max(1, min(SHIP_COUNT, env_int("BENCH_SHIP", 2)))
    profile = os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    wanted = [
        s.strip() for s in os.environ.get("BENCH_SCENARIOS", ",".join(SCENARIOS)).split(",") if s.strip()
    ]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown or not wanted:
        print(f"unknown BENCH_SCENARIOS {unknown}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[s] for s in wanted]
    reports = Path(os.environ.get("BENCH_REPORTS", ROOT / "reports"))
    reports.mkdir(parents=True, exist_ok=True)
    if profile and not Path(py_spy()).exists():
        print("BENCH_PROFILE needs py-spy: pip install py-spy", file=sys.stderr)
        return 2

    server_env = {}
    if not os.environ.get(SECRET_ENV):
        server_env[SECRET_ENV] = secrets.token_urlsafe(36)  # 48 characters
    settings = Settings.from_env({**os.environ, **server_env})

    ms = hash_cost(settings)  # before the servers start: on a quiet machine
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    ctx = Context(ship=ship, ship_file=work / "ship.json", login_file=work / "login.json")
    ctx.ship_file.write_bytes(json.dumps(SHIP_BODY).encode())
    ctx.login_file.write_bytes(json.dumps({"username": USERNAME, "password": PASSWORD}).encode())
    bodies_file = work / "ceiling.json"

    ours = GunicornServer(
        env=dict(server_env), log_path=reports / "bench-server.log", ready_path="/api/ships"
    )
    eddsa = None
    if any(s.eddsa for s in scenarios):
        new_key(work / "keys", "EdDSA")
        eddsa = GunicornServer(
            env={**server_env, "FLEET_JWT_ALGORITHM": "EdDSA", "FLEET_SIGNING_KEYS": str(work / "keys")},
            log_path=reports / "bench-server-eddsa.log",
            ready_path="/api/ships",
        )
    ceiling = GunicornServer(
        env={**server_env, "BENCH_CEILING_BODIES": str(bodies_file)},
        app=CEILING_APP,
        log_path=reports / "bench-ceiling.log",
        ready_path="/api/ships",
    )
    results: dict[str, dict[str, list[Run]]] = {s.name: {"ours": [], "ceiling": []} for s in scenarios}
    memory: list[dict[int, int]] = []
    profiles: dict[str, tuple[list[tuple[str, float]], float]] = {}
    failed = []
    started = time.monotonic()
    try:
        ours.start()
        tokens = login(ours.url)
        ctx.access, ctx.refresh = tokens["access_token"], tokens["refresh_token"]
        bodies_file.write_text(json.dumps(canned_bodies(ours.url, ctx)))
        ceiling.start()
        masters = [ours.pid, ceiling.pid]
        if eddsa:
            eddsa.start()
            masters.append(eddsa.pid)
            expect(
                "PUT",
                f"{eddsa.url}/api/ships/{ctx.ship}",
                ctx.ship_file.read_bytes(),
                login(eddsa.url)["access_token"],
            )  # the same ship, so the same bytes as ours
            print(f"ours EdDSA: gunicorn pid {eddsa.pid} on {eddsa.url}")
        print(f"ours: gunicorn pid {ours.pid} on {ours.url}; ceiling: pid {ceiling.pid} on {ceiling.url}")
        print(
            f"{len(scenarios)} scenarios x {rounds} rounds x 2 servers x {duration}s, "
            f"{connections} connections, {threads} wrk threads; {machine()}"
        )
        if warmup:
            for server in (ours, ceiling):
                run_wrk(SCENARIOS["mixed"].wrk_args(server.url, ctx), warmup, connections, threads)
            settle(masters)
        memory.append(sample_rss(ours.pid))

        for round_no in range(1, rounds + 1):
            # A fresh access token each round: the bench may outlive its 15 minutes.
            ctx.access = login(ours.url)["access_token"]
            if eddsa:
                tokens = login(eddsa.url)
                ctx.eddsa_access, ctx.eddsa_refresh = tokens["access_token"], tokens["refresh_token"]
            for scenario in scenarios:
                for label, server in (("ours", eddsa if scenario.eddsa else ours), ("ceiling", ceiling)):
                    conns = login_connections if scenario.name == "login" else connections
                    run = run_wrk(scenario.wrk_args(server.url, ctx), duration, conns, min(threads, conns))
                    settle(masters)
                    results[scenario.name][label].append(run)
                    print(
                        f"  round {round_no} {scenario.name:<12} {label:<8} {run.rps:>10,.1f} req/s  "
                        f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:8.2f} ms"
                        + (f"  non-2xx {run.status_errors}" if run.status_errors else "")
                        + (f"  socket errors {run.socket_errors}" if run.socket_errors else ""),
                        flush=True,
                    )
                    if run.requests == 0 or (label == "ours" and run.status_errors):
                        failed.append(f"round {round_no} {scenario.name} {label}")
            if churn_count:
                churn(ours.url, churn_count)
                settle(masters)
            memory.append(sample_rss(ours.pid))

        if profile:
            for name in ("get_ship", "update_ship"):
                ctx.access = login(ours.url)["access_token"]
                spies = start_profilers(sorted(worker_pids(ours.pid)), duration, reports / f"profile_{name}")
                time.sleep(0.5)  # let py-spy attach before the load starts
                run_wrk(SCENARIOS[name].wrk_args(ours.url, ctx), duration, connections, threads)
                for spy, _ in spies:
                    spy.wait(duration + WRK_GRACE)
                profiles[name] = top_self([raw for _, raw in spies])
                settle(masters)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in (ceiling, ours, eddsa):
            if server is None:
                continue
            server.stop()
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for scenario in scenarios:
        a, b = results[scenario.name]["ours"], results[scenario.name]["ceiling"]
        ours_rps = statistics.median(r.rps for r in a)
        ceiling_rps = statistics.median(r.rps for r in b)
        paired = [x.rps / y.rps for x, y in zip(a, b, strict=False) if y.rps]
        rows.append(
            {
                "name": scenario.name,
                "title": scenario.title,
                "ours_rps": ours_rps,
                "ceiling_rps": ceiling_rps,
                "ratio": ours_rps / ceiling_rps if ceiling_rps else 0.0,
                "ratio_min": min(paired, default=0.0),
                "ratio_max": max(paired, default=0.0),
                "ours_p50": statistics.median(r.p50_ms for r in a),
                "ours_p99": statistics.median(r.p99_ms for r in a),
                "ceiling_p50": statistics.median(r.p50_ms for r in b),
                "ceiling_p99": statistics.median(r.p99_ms for r in b),
                "errors": sum(r.status_errors + r.socket_errors for r in a),
            }
        )

    login_row = next((r for r in rows if r["name"] == "login"), None)
    elapsed = time.monotonic() - started
    config = (
        f"{rounds} rounds x {duration}s per run, {connections} connections "
        f"({login_connections} for login), {threads} wrk threads, "
        f"gunicorn.conf.py ({os.environ.get('WEB_CONCURRENCY', '4')} workers x "
        f"{os.environ.get('GUNICORN_THREADS', '4')} gthreads); {machine()}; took {elapsed:.0f}s"
    )
    table = results_table(rows)
    mem = memory_table(memory) if len(memory) > 1 else "(no samples)"
    hashing = login_table(settings, ms, login_row)
    print()
    print(table)
    print()
    print(f"Password hashing: {hashing}")
    print()
    print(mem)
    for name, (top, in_app) in profiles.items():
        print(f"\nProfile {name}: {in_app:.0f}% of request-thread samples in the app; top self time:")
        for fn, pct in top:
            print(f"  {pct:5.1f}%  {fn}")

    md = [
        "# Fleet API benchmark",
        "",
        config,
        "",
        "Ratio = our median req/s ÷ the ceiling's (benchmarks/ceiling.py: same bytes, same gunicorn "
        "config, no auth/store/validation). Errors = non-2xx answers + socket errors on ours.",
        "",
        table,
        "",
        "## Login (password hashing)",
        "",
        hashing,
        "",
        "## Worker memory (ours)",
        "",
        f"RSS of each worker from /proc; {churn_count} logins + logouts (revocations) after every round.",
        "",
        mem,
        "",
    ]
    for name, (top, in_app) in profiles.items():
        md += [
            f"## Profile: {name} (py-spy on every worker, wall clock, request threads only)",
            "",
            f"{in_app:.0f}% of request-thread samples are inside the Falcon app (App.__call__); "
            "the rest is gunicorn (parsing, writing, access log).",
            "",
            "| self % | function |",
            "|---:|---|",
        ]
        md += [f"| {pct:.1f} | `{fn}` |" for fn, pct in top]
        md.append("")
    (reports / "bench.md").write_text("\n".join(md))
    chart(rows, reports / "bench.png")
    print(f"\nwrote {reports / 'bench.md'} and {reports / 'bench.png'}")
    if failed:
        print(f"failed runs (non-2xx answers or no requests): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
