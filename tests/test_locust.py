"""The load test itself, run briefly: it passes on the real API and fails on a broken one.

Locust runs as a subprocess (never imported here: it monkey-patches the
process with gevent), with the same command line `make load` uses.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import urllib.request
from pathlib import Path

import pytest
from conftest import server_env

from devtools.gunicorn import PROJECT_ROOT, GunicornServer

_spec = importlib.util.spec_from_file_location("load_script", PROJECT_ROOT / "scripts" / "load.py")
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)

# Every request name each flow reports; the stats must show all of them.
READER = {
    ("GET", "/api/ships"),
    ("GET", "/api/ships?[search]"),
    ("GET", "/api/ships/[id]"),
    ("GET", "/api/users"),
    ("GET", "/api/users/[id]"),
}
PILOT = {
    ("POST", "/api/users"),
    ("POST", "/auth/login"),
    ("POST", "/api/ships"),
    ("GET", "/api/ships/[id]"),
    ("PUT", "/api/ships/[id]"),
    ("DELETE", "/api/ships/[id]"),
    ("GET", "/api/ships/[id] (deleted)"),
    ("POST", "/auth/refresh"),
    ("DELETE", "/auth/logout"),
    ("DELETE", "/auth/logout (revoked)"),
    ("DELETE", "/auth/logout2"),
    ("POST", "/auth/refresh (revoked)"),
    ("DELETE", "/api/users/[id]"),
}
RECRUIT = {
    ("POST", "/api/users"),
    ("POST", "/auth/login"),
    ("PUT", "/api/users/[id]"),
    ("DELETE", "/api/users/[id]"),
    ("PUT", "/api/users/[id] (deleted user's token)"),
    ("GET", "/api/users/[id] (deleted)"),
}
SEED_SHIPS, SEED_USERS = 15, {1, 2}


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def run(
    host: str,
    tmp_path: Path,
    *,
    users: int,
    duration: int,
    p95_ms: float = 500,
    classes: tuple[str, ...] = (),
) -> tuple[int, dict, str]:
    """Run Locust; return its exit code, stats rows by (method, name), and its log."""
    prefix = tmp_path / "load"
    cmd = load.locust_command(
        host,
        users=users,
        spawn_rate=users,
        duration=duration,
        report_prefix=prefix,
        p95_ms=p95_ms,
    ) + list(classes)
    log_path = tmp_path / "locust.log"
    code = load.run_locust(cmd, duration, log_path=log_path)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f) if r["Name"] != "Aggregated"}
    return code, rows, log_path.read_text()


@pytest.fixture(scope="module")
def server():
    with GunicornServer(env=server_env()) as server:
        yield server


def test_a_short_run_against_the_real_api_passes_and_leaves_no_data(server, tmp_path):
    code, rows, log = run(server.url, tmp_path, users=10, duration=10)

    assert code == 0, log
    assert (tmp_path / "load.html").stat().st_size > 0
    failed = {key: row["Failure Count"] for key, row in rows.items() if row["Failure Count"] != "0"}
    assert failed == {}, log
    with open(tmp_path / "load_failures.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []
    missing = (READER | PILOT | RECRUIT) - set(rows)
    assert not missing, log
    # Every flow cleaned up after itself: only the seed data is left.
    assert len(get_json(f"{server.url}/api/ships")) == SEED_SHIPS
    assert {u["id"] for u in get_json(f"{server.url}/api/users")} == SEED_USERS


def test_a_p95_over_the_limit_fails_the_run(server, tmp_path):
    code, rows, log = run(server.url, tmp_path, users=2, duration=3, p95_ms=0.001, classes=("Reader",))

    assert all(row["Failure Count"] == "0" for row in rows.values()), log
    assert code == 3, log


def test_a_server_that_rejects_every_token_fails_the_run(tmp_path):
    with GunicornServer(app="tests.support.bad_app:app", env=server_env()) as bad:
        # Only readers and pilots: with 4 users of all three classes, the
        # weights can leave no pilot to try the authenticated calls.
        code, rows, log = run(bad.url, tmp_path, users=4, duration=4, classes=("Reader", "Pilot"))

    assert code == 1, log
    # Anonymous reads are right there; the authenticated calls are what fail.
    # Which reads the random tasks made in 4 s varies: check those it made.
    reads = [rows[key] for key in (("GET", "/api/ships"), ("GET", "/api/ships/[id]")) if key in rows]
    assert reads and all(row["Failure Count"] == "0" for row in reads), log
    # A pilot's every task carries a token: a flight (POST /api/ships first)
    # or a refresh. Which of them its few tasks in 4 s were is random.
    failed = {key for key, row in rows.items() if int(row["Failure Count"]) > 0}
    assert failed & {("POST", "/api/ships"), ("POST", "/auth/refresh")}, log
