"""`make bench`'s main(): settings, then run (servers), measure (rounds),
report (tables, chart, bench.md), each in its own module."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools.postgres import running_postgres
from devtools.processes import worker_pids
from fleet_api.passwords import PasswordHasher
from fleet_api.settings import SECRET_ENV, Settings
from scripts.bench import report
from scripts.bench.config import OWN_WORK, Config, machine, shipped_layout
from scripts.bench.inprocess import put_cpu_us
from scripts.bench.measure import (
    WRK_GRACE,
    BenchError,
    Results,
    Run,
    hash_cost,
    interleave,
    py_spy,
    run_wrk,
    sample_rss,
    settle,
    start_profilers,
    top_self,
    with_write_path,
)
from scripts.bench.run import (
    PG_SETTINGS,
    Bench,
    Scale,
    Target,
    churn,
    fresh_tokens,
    make_targets,
    plain_gunicorn,
    start_targets,
)
from scripts.bench.scenarios import SCENARIOS, Context, Scenario
from tests.support.bodies import STAR_DESTROYER

# The ship the writes send: the README's full ship, the one the tests send.
SHIP_BODY = STAR_DESTROYER


def log(line: str) -> None:
    print(line, flush=True)


def work_per_put(cfg: Config, ctx: Context, env: dict[str, str]) -> dict[str, float]:
    """BENCH_CEILING_WORK's items and the µs each ceiling+work twin burns per
    PUT; `own` measured here (ours in-process, before any server starts)."""
    if not any("work" in s.targets for s in cfg.scenarios):
        return {}
    threads = int(shipped_layout()[1])
    return {
        item: put_cpu_us(ctx.ship_file, ctx.ship, threads, env) if item == OWN_WORK else float(item)
        for item in cfg.work
    }


def cells(cfg: Config, bench: Bench, ctx: Context) -> list:
    """(scenario, target, run, strict) for one round: scenario by scenario,
    each on its targets in turn."""

    def runner(scenario: Scenario, target: Target):
        conns = cfg.login_connections if scenario.login else cfg.connections

        def run() -> Run:
            return run_wrk(
                scenario.wrk_args(target, ctx),
                cfg.duration,
                conns,
                min(cfg.threads, conns),
                scenario.expect,
                server=target.server.pid,
            )

        # The app's /metrics tells what its write path did (not the bare app's).
        return (lambda: with_write_path(target.url, run)) if target.is_app else run

    return [
        (scenario.name, target.name, runner(scenario, target), target.is_app)
        for scenario in cfg.scenarios
        for target in bench.targets
        if scenario.runs_on(target)
    ]


def measure(cfg: Config, bench: Bench, ctx: Context) -> tuple[Results, dict]:
    ours = bench.target("ours")
    masters = bench.masters
    if cfg.warmup:
        for target in bench.targets:  # the blend of reads and writes, on every server
            run_wrk(SCENARIOS["mixed"].wrk_args(target, ctx), cfg.warmup, cfg.connections, cfg.threads)
        settle(masters)
    memory = [sample_rss(ours.server.pid)]

    def before_round(_round_no: int) -> None:
        # Fresh tokens each round: the bench may outlive an access token's 15 minutes.
        for target in bench.targets:
            if target.is_app:
                fresh_tokens(target)

    def after_round(_round_no: int) -> None:
        if cfg.churn:
            churn(ours.url, cfg.churn)
            settle(masters)
        memory.append(sample_rss(ours.server.pid))

    results = interleave(
        cfg.rounds,
        cells(cfg, bench, ctx),
        before_round=before_round,
        after_round=after_round,
        after_run=lambda: settle(masters),
        log=log,
    )
    results.memory = memory
    return results, profile(cfg, bench, ctx) if cfg.profile else {}


def profile(cfg: Config, bench: Bench, ctx: Context) -> dict:
    ours = bench.target("ours")
    found = {}
    for name in ("get_ship", "update_ship"):
        fresh_tokens(ours)
        spies = start_profilers(
            sorted(worker_pids(ours.server.pid)), cfg.duration, cfg.reports / f"profile_{name}"
        )
        time.sleep(0.5)  # let py-spy attach before the load starts
        run_wrk(SCENARIOS[name].wrk_args(ours, ctx), cfg.duration, cfg.connections, cfg.threads)
        for spy, _ in spies:
            spy.wait(cfg.duration + WRK_GRACE)
        found[name] = top_self([raw for _, raw in spies])
        settle(bench.masters)
    return found


def write_report(
    cfg: Config, bench: Bench, results: Results, profiles: dict, settings, ms: float, elapsed: float
):
    rows = report.summarize(cfg.scenarios, [t.name for t in bench.targets], results.runs)
    login_row = next((r for r in rows if r.scenario == "login" and r.target == "ours"), None)
    stolen = report.steal_text(results.runs)
    config = (
        f"{cfg.rounds} rounds x {cfg.duration}s per run, {cfg.connections} connections "
        f"({cfg.login_connections} for login), {cfg.threads} wrk threads, targets "
        f"{', '.join(t.name for t in bench.targets)}, gunicorn {cfg.layout()}; {machine()}; took {elapsed:.0f}s; "
        + stolen
    )
    table = report.results_table(rows)
    mem = report.memory_table(results.memory) if len(results.memory) > 1 else "(no samples)"
    hashing = report.login_text(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p, ms, login_row)
    log("")
    log(table)
    log("")
    log(stolen)
    log(f"Password hashing: {hashing}")
    log("")
    log(mem)
    for name, (top, in_app) in profiles.items():
        log(f"\nProfile {name}: {in_app:.0f}% of request-thread samples in the app; top self time:")
        for fn, pct in top:
            log(f"  {pct:5.1f}%  {fn}")
    legend = (
        "req/s and latencies are medians of the rounds. ÷ X = median req/s ÷ target X's in the same "
        "scenario: bare = benchmarks/ceiling.py (a bare Falcon app answering the same bytes, no auth, "
        "store or validation) under plain gunicorn with the same worker layout and no access log; "
        "ceiling = the same bare app under our gunicorn.conf.py; ours = the real app on the default "
        "store (normal: the same with synchronous=normal). ratio range = the per-round ratios to the "
        "first reference. CPU µs/req = the server's CPU time (master and workers, user + system, from "
        "/proc) over the run ÷ its requests; switches/req = the context switches of the server's threads "
        "(voluntary + involuntary, from /proc) over the run ÷ its requests: how often a request "
        "handed the CPU over; idle = the share of the machine's CPU time idle meanwhile "
        "(wrk runs on the same machine). Errors = bad statuses + socket errors."
    )
    sections = [("", table)]
    if any(s.name == "session_cost" for s in cfg.scenarios):
        note = bench.notes.get("session_cost")
        pair = f"**{note}**" if note else report.pair_text(results.runs, "session_cost", "after", "before")
        sections.append(
            (
                "Session cost (after ÷ before)",
                f"`POST /api/ships` with `{{}}` and a bearer token (auth, then a 400) on ours (after) and on "
                f"{cfg.baseline} (before: the code before sessions), both under plain gunicorn "
                f"({' '.join(plain_gunicorn())}, no access log), FLEET_METRICS=off on both (the baseline has "
                f"no metrics), each on its own SQLite store; {bench.session_bodies or 'bodies not compared'}.\n\n"
                + pair,
            )
        )
        log("")
        log("Session cost: " + (note or "\n" + pair))
    if cfg.scale:
        scaled = report.scale_table(rows)
        fills = "\n".join(f"- filled {line}" for line in bench.fills)
        sections.append((f"Scale: 15 ships and {cfg.scale:,}", scaled + "\n\n" + fills))
        log("")
        log(scaled)
        log(fills)
    writes = report.write_path_table(results.runs)
    if writes:
        sections.append(
            (
                "Write path (from each server's /metrics)",
                "The change of the store_* counters over each run, medians of the rounds: writes that "
                "shared one commit, the share of the run's wall time the host-wide write lock was held, "
                "and per hold of the lock the wait for it and the time it was held (README, Benchmarks, "
                '"Thirteenth pass").\n\n' + writes,
            )
        )
        log("")
        log(writes)
    if bench.own_work_us is not None:
        sections.append(
            (
                "Ours' own CPU per PUT (BENCH_CEILING_WORK)",
                f"Ours in-process, no server: {bench.own_work_us:.0f} µs of CPU (user + system) per "
                f"authenticated, durable PUT, {shipped_layout()[1]} threads sending PUTs straight to "
                "create_app's WSGI callable on a temporary SQLite store (scripts/bench/inprocess.py). "
                "ceiling+ours is the ceiling burning that much per PUT in a plain Python loop, the GIL "
                "held throughout: what ours would reach under the same gunicorn if its CPU were all it "
                "cost. ours ÷ ceiling+ours near 1 says the rest (waits, hand-overs) costs little more.",
            )
        )
        log("")
        log(f"ours in-process: {bench.own_work_us:.0f} µs of CPU per PUT")
    if cfg.layouts:
        layouts = report.layout_table(rows, cfg.layouts, "x".join(shipped_layout()))
        sections.append(("Worker layouts (BENCH_LAYOUTS)", layouts))
        log("")
        log(layouts)
    sections += [
        ("Login (password hashing)", hashing),
        (
            "Worker memory (ours)",
            f"RSS of each worker from /proc; {cfg.churn} logins + logouts (revocations) after every round.\n\n"
            + mem,
        ),
    ]
    md = report.markdown(sections, config, legend) + "\n".join(report.profile_lines(profiles))
    (cfg.reports / "bench.md").write_text(md)
    report.chart(rows, cfg.reports / "bench.png")
    log(f"\nwrote {cfg.reports / 'bench.md'} and {cfg.reports / 'bench.png'}")


def main() -> int:
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    try:
        cfg = Config.from_env()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if cfg.profile and not Path(py_spy()).exists():
        print("BENCH_PROFILE needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    cfg.reports.mkdir(parents=True, exist_ok=True)

    server_env = {}
    if not os.environ.get(SECRET_ENV):
        server_env[SECRET_ENV] = secrets.token_urlsafe(36)  # 48 characters
    settings = Settings.from_env({**os.environ, **server_env})
    ms = hash_cost(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p)  # on a quiet machine, first

    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    ctx = Context(cfg.ship, work / "ship.json", work / "login.json", work / "empty.json")
    ctx.empty_file.write_bytes(b"{}")
    ctx.ship_file.write_bytes(json.dumps(SHIP_BODY).encode())
    ctx.login_file.write_bytes(json.dumps({"username": "user", "password": "password"}).encode())
    bench = Bench(work=work, reports=cfg.reports, server_env=server_env, baseline=cfg.baseline)
    started = time.monotonic()
    stack = contextlib.ExitStack()
    try:
        if cfg.pg:
            bench.pg = stack.enter_context(running_postgres(PG_SETTINGS))
        hasher = PasswordHasher(settings.scrypt_n, settings.scrypt_r, settings.scrypt_p)
        scale = Scale(cfg.scale, cfg.revoked, cfg.sessions, hasher, settings.data_path)
        work = work_per_put(cfg, ctx, server_env)
        bench.own_work_us = work.get(OWN_WORK)
        if bench.own_work_us is not None:
            log(f"ours in-process: {bench.own_work_us:.0f} µs of CPU per PUT (ceiling+ours burns that)")
        make_targets(bench, cfg.scenarios, scale, cfg.layouts, work)
        start_targets(bench, ctx)
        for t in bench.targets:
            log(f"{t.name}: gunicorn pid {t.server.pid} on {t.url}")
        log(
            f"{len(cfg.scenarios)} scenarios x {cfg.rounds} rounds x {cfg.duration}s on "
            f"{len(bench.targets)} targets, {cfg.connections} connections, {cfg.threads} wrk threads; {machine()}"
        )
        results, profiles = measure(cfg, bench, ctx)
    except (BenchError, RuntimeError) as exc:  # PostgresUnavailable is a RuntimeError
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
        stack.close()  # PostgreSQL, after the servers that use it
        shutil.rmtree(work, ignore_errors=True)

    write_report(cfg, bench, results, profiles, settings, ms, time.monotonic() - started)
    for scenario, note in bench.notes.items():  # a scenario asked for and not measured is a failure too
        print(f"{scenario}: {note}", file=sys.stderr)
        results.failed.append(f"{scenario} ({note.partition(':')[0]})")
    if results.failed:
        print(
            f"failed (bad statuses, no requests, or a scenario not measured): {', '.join(results.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0
