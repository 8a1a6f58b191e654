"""`make hostile`: slow and abusive clients against each layout, side by side.

For each layout (a fresh server on free loopback ports, its own store,
stopped by PID afterwards) and each attack (devtools/hostile.py: slow
headers, slow bodies, idle keep-alive connections, a 2,000-connection burst
from one address and from many), an ordinary client keeps asking for
`GET /api/ships/2` during the attack; the report says how many of its
requests were answered within 1 s, their p50/p99, how soon the server served
normally again once the attack stopped, the server's peak memory, and what
the attackers themselves got. Prints a markdown table and writes
reports/hostile.md.

Layouts: plain (gunicorn.conf.py as `make run` serves it), gevent (the same
with gunicorn's gevent worker), prod (nginx in front, `make prod`), or
`--url http://127.0.0.1:PORT` for a server you run yourself (loopback only).

    .venv/bin/python scripts/hostile.py                       # every layout, every attack
    .venv/bin/python scripts/hostile.py --layouts prod --attacks slow_header --seconds 5
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import urllib.parse
from pathlib import Path

from devtools.gunicorn import GunicornServer
from devtools.hostile import (
    AttackSpec,
    Outcome,
    burst_sources,
    describe,
    measure,
    mib,
    nginx_request_times,
    percentile,
)
from devtools.nginx import ProductionServer

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = ("plain", "gevent", "prod")
# (name in the table, attack kind, connections, source addresses)
SCENARIOS = {
    "slow_header": ("slow headers (200 connections)", "slow_header", 200, 1),
    "slow_body": ("slow bodies (200 connections)", "slow_body", 200, 1),
    "idle_keepalive": ("idle keep-alive (1,000 connections)", "idle_keepalive", 1000, 1),
    "burst": ("burst, 2,000 connections from 1 address", "burst", 2000, 1),
    "burst_many": ("burst, 2,000 connections from 100 addresses", "burst", 2000, 100),
}


def server_for(layout: str, log_dir: Path):
    env = {"FLEET_SECRET_KEY": secrets.token_urlsafe(48)}  # otherwise the shipped config, access log and all
    if layout == "plain":
        return GunicornServer(env=env, log_path=log_dir / "plain.log")
    if layout == "gevent":
        return GunicornServer(env=env, args=["--worker-class", "gevent"], log_path=log_dir / "gevent.log")
    if layout == "prod":
        (log_dir / "prod-access.log").unlink(missing_ok=True)
        return ProductionServer(
            env=env,
            gunicorn_log=log_dir / "prod-gunicorn.log",
            nginx_settings={"ACCESS_LOG": f"{log_dir / 'prod-access.log'} timed"},
        )
    raise SystemExit(f"unknown layout {layout!r}: {', '.join(LAYOUTS)}")


def pids_of(server) -> list[int]:
    if isinstance(server, ProductionServer):
        return [server.gunicorn.pid, server.nginx.pid]
    return [server.pid]


def row(layout: str, name: str, outcome: Outcome, nginx_503: list[float]) -> str:
    total = len(outcome.samples)
    rec = outcome.recovery
    recovered = (
        "never (30 s)"
        if rec["seconds"] is None
        else f"{rec['seconds']:.1f} s ({rec['ok']}/{rec['total']} ≤ 1 s)"
    )
    p99 = outcome.p(0.99)
    p99_text = f"≥ {outcome.timeout * 1000:.0f}" if p99 >= outcome.timeout else f"{p99 * 1000:.0f}"
    memory = f"{mib(outcome.rss_before)} → {mib(outcome.rss_peak)}" if outcome.rss_before else "n/a"
    others = [f"{outcome.count(503)} got 503"] if outcome.count(503) else []
    others += [f"{outcome.count(None)} no answer"] if outcome.count(None) else []
    ordinary = f"{outcome.ok_within_1s}/{total}" + (f" ({', '.join(others)})" if others else "")
    return (
        f"| {layout} | {name} | {ordinary} | {outcome.p(0.5) * 1000:.0f} / {p99_text} "
        f"| {recovered} | {memory} | {describe(outcome)}{nginx_view(nginx_503)} |"
    )


def nginx_view(times: list[float]) -> str:
    if not times:
        return ""
    return (
        f"; by nginx's clock 503 p50 / p99 / max {percentile(times, 0.5) * 1000:.0f} / "
        f"{percentile(times, 0.99) * 1000:.0f} / {max(times) * 1000:.0f} ms"
    )


HEADER = (
    "| layout | attack | ordinary answered ≤ 1 s | p50 / p99 ms | normal again after | server MiB before → peak | what the attackers got |\n"
    "|---|---|---|---|---|---|---|"
)


def run_layout(
    layout: str,
    host: str,
    port: int,
    pids: list[int],
    names: list[str],
    seconds: float,
    access_log: Path | None = None,
) -> list[str]:
    rows, offset = [], 0
    for key in names:
        title, kind, connections, sources = SCENARIOS[key]
        spec = AttackSpec(
            kind,
            host,
            port,
            connections,
            seconds,
            sources=burst_sources(sources) if sources > 1 else AttackSpec.sources,
        )
        outcome = measure(spec, server_pids=pids)
        nginx_503 = []
        if access_log:
            nginx_503, offset = nginx_request_times(access_log, 503, offset)
        rows.append(row(layout, title, outcome, nginx_503))
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--attacks", default=",".join(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("HOSTILE_SECONDS", "8")))
    parser.add_argument("--url", help="attack this running server instead (loopback only)")
    parser.add_argument("--report", default=str(ROOT / "reports" / "hostile.md"))
    args = parser.parse_args()
    names = [a for a in args.attacks.split(",") if a]
    unknown = set(names) - SCENARIOS.keys()
    if unknown:
        parser.error(f"unknown attacks {sorted(unknown)}: {', '.join(SCENARIOS)}")
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    rows = []
    if args.url:
        url = urllib.parse.urlsplit(args.url)
        if not (url.hostname or "").startswith("127."):
            parser.error("--url must be a loopback address (127.0.0.0/8)")
        rows += run_layout(args.url, url.hostname, url.port or 80, [], names, args.seconds)
    else:
        for layout in [name for name in args.layouts.split(",") if name]:
            server = server_for(layout, report.parent)
            with server:
                port = server.port if isinstance(server, GunicornServer) else server.nginx.port
                access_log = report.parent / "prod-access.log" if layout == "prod" else None
                rows += run_layout(
                    layout, "127.0.0.1", port, pids_of(server), names, args.seconds, access_log
                )
    report.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    print(f"\nwritten to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
