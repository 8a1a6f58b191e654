"""`make load`: Locust, headless, against a fresh gunicorn on a free loopback port.

Starts the server with the project's gunicorn.conf.py (devtools.gunicorn),
runs locustfile.py against it for a bounded time, writes reports/load.html and
reports/load_*.csv, stops the server by its PID and exits with Locust's exit
code (non-zero when a request failed, a 5xx came back or p95 was too slow:
the verdict is made inside locustfile.py, nothing here parses Locust's output).

Environment (all optional):
  LOAD_USERS       simulated users                      (default 20)
  LOAD_SPAWN_RATE  users started per second             (default 5)
  LOAD_DURATION    run time: 60, 90s, 2m, 1h30m         (default 60s)
  LOAD_P95_MS      fail when aggregated p95 exceeds it  (default 500)
  LOAD_PROCESSES   Locust processes (--processes; -1 = one per core; default 1)
  LOAD_REPORTS     report directory                     (default reports/)
  FLEET_SECRET_KEY signing key for the server (random 48 chars when unset)
  WEB_CONCURRENCY, GUNICORN_THREADS, FLEET_SCRYPT_N ...  passed to the server
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from devtools.gunicorn import GunicornServer
from devtools.processes import spawn, stop_process

ROOT = Path(__file__).resolve().parent.parent

LOCUSTFILE = ROOT / "locustfile.py"
STOP_TIMEOUT = 15  # seconds users get to finish a flow and clean up after --run-time
GRACE = 60  # on top of run time + stop timeout before Locust is killed


def parse_duration(text: str) -> int:
    """Seconds from "60", "90s", "2m", "1h30m" (Locust's --run-time forms)."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not parts:
        raise ValueError(f"bad duration {text!r}: use e.g. 60, 90s, 2m, 1h30m")
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def locust_command(
    host: str,
    *,
    users: int,
    spawn_rate: float,
    duration: int,
    report_prefix: Path,
    p95_ms: float,
    processes: int = 1,
    locustfile: Path = LOCUSTFILE,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--host",
        host,
        "--headless",
        "--only-summary",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{duration}s",
        "--stop-timeout",
        str(STOP_TIMEOUT),
        "--html",
        f"{report_prefix}.html",
        "--csv",
        str(report_prefix),
        "--p95-ms",
        str(p95_ms),
    ]
    if processes != 1:
        cmd += ["--processes", str(processes)]
    return cmd


def run_locust(cmd: list[str], duration: int, log_path: Path | None = None) -> int:
    """Run Locust in its own session, dying with us (devtools.spawn); kill
    the whole group if it overstays, or if we are interrupted."""
    timeout = duration + STOP_TIMEOUT + GRACE
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed in finally, after the process
    try:
        process = spawn(cmd, cwd=ROOT, stdout=log or None, stderr=subprocess.STDOUT if log else None)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"locust overran {timeout}s: killing it", file=sys.stderr)
            stop_process(process, ((signal.SIGKILL, 10.0),))
            return 124
        except BaseException:  # Ctrl-C, a test's timeout: no Locust left running
            stop_process(process, ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGKILL, 5.0)))
            raise
    finally:
        if log:
            log.close()


def main() -> int:
    env = os.environ
    users = int(env.get("LOAD_USERS", "20"))
    spawn_rate = float(env.get("LOAD_SPAWN_RATE", "5"))
    duration = parse_duration(env.get("LOAD_DURATION", "60s"))
    p95_ms = float(env.get("LOAD_P95_MS", "500"))
    processes = int(env.get("LOAD_PROCESSES", "1"))
    reports = Path(env.get("LOAD_REPORTS", ROOT / "reports"))
    reports.mkdir(parents=True, exist_ok=True)

    server_env = {}
    if not env.get("FLEET_SECRET_KEY"):
        server_env["FLEET_SECRET_KEY"] = secrets.token_urlsafe(36)  # 48 characters
    server = GunicornServer(env=server_env, log_path=reports / "load-server.log")
    try:
        server.start()
        print(
            f"gunicorn pid {server.pid} on {server.url}; "
            f"{users} users, spawn rate {spawn_rate}/s, {duration}s, p95 limit {p95_ms:g} ms",
            flush=True,
        )
        cmd = locust_command(
            server.url,
            users=users,
            spawn_rate=spawn_rate,
            duration=duration,
            report_prefix=reports / "load",
            p95_ms=p95_ms,
            processes=processes,
        )
        code = run_locust(cmd, duration)
    finally:
        server.stop()
        cleanup = getattr(server, "cleanup", None)  # the per-server temp store, if any
        if cleanup:
            cleanup()
    print(f"reports: {reports / 'load.html'}, {reports / 'load_stats.csv'}; locust exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
