"""Faults under load, against a real gunicorn on the shared SQLite store.

Each scenario runs once per module (a fixture: start gunicorn, run a bounded
write load, inject the fault, keep the server up for the checks) and the
tests below it each check one behaviour of that run. Every load is bounded in
time and requests, all traffic goes to 127.0.0.1, and every server is
stopped by its PID in a `finally`.

Connection-level failures while a process dies are allowed: the client got
no answer, so nothing was acknowledged. What must hold is that every 201 the
clients saw is still there afterwards, with the body they were sent, and that
no request gets a 5xx or hangs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import falcon.testing
import pytest
from gunicorn.config import Config
from support.bodies import STAR_DESTROYER
from support.load import WriteLoad, read_ships
from support.sockets import LISTEN, tcp_sockets

from devtools.gunicorn import GunicornServer
from devtools.http import call, login
from devtools.processes import wait_for_workers
from fleet_api.app import create_app
from fleet_api.settings import Settings

WORKERS = 4
FAST_HASHING = "16"  # scrypt N where hashing isn't the point
SLOW_HASHING = "65536"  # ~0.3 s per login: slow enough to be reliably in flight
LOAD_SECONDS = 10.0  # upper bound; each scenario stops its load much sooner
WARM_ACKS = 200  # acknowledged writes before the fault is injected
ACKS_AFTER = 150  # ... and after it, to show the server keeps answering
WAIT = 10.0  # upper bound on any one wait below
# gunicorn.conf.py leaves graceful_timeout at gunicorn's default.
GRACEFUL_TIMEOUT = Config().graceful_timeout


def server_env(**extra: str) -> dict[str, str]:
    return {"FLEET_SECRET_KEY": secrets.token_urlsafe(48), "FLEET_SCRYPT_N": FAST_HASHING, **extra}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def by_id(acks) -> dict[int, dict]:
    return {ack.id: ack.body for ack in acks}


def wait_until_accepted(port: int) -> None:
    """Until no connection waits in the listen queue of 127.0.0.1:`port`
    (a listening socket's rx_queue in /proc/net/tcp is its accept backlog):
    a connection the kernel completed but no worker accepted yet is not in
    flight, and is reset when the server closes its socket."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        backlog = [int(fields[4].split(":")[1], 16) for fields in tcp_sockets(port, LISTEN)]
        if backlog and backlog[0] == 0:
            return
        time.sleep(0.01)
    pytest.fail(f"connections still waiting to be accepted on port {port}")


def new_server(log_dir: Path, name: str, env: dict[str, str], **kwargs) -> GunicornServer:
    """A server that logs to `log_dir/name.log`, so a failed start says why."""
    return GunicornServer(workers=WORKERS, env=dict(env), log_path=log_dir / f"{name}.log", **kwargs)


def start(server: GunicornServer) -> GunicornServer:
    try:
        return server.start()
    except RuntimeError as exc:
        log = server.log_path.read_text(errors="replace")[-3000:] if server.log_path else ""
        raise RuntimeError(f"{exc}; gunicorn's log ends:\n{log}") from None


def logged_errors(*servers: GunicornServer) -> str:
    """The first error gunicorn logged, traceback and all: why a 5xx happened."""
    for server in servers:
        log = (
            server.log_path.read_text(errors="replace")
            if server.log_path and server.log_path.exists()
            else ""
        )
        start = log.find("[ERROR] unhandled")
        if start >= 0:
            return f"\n{server.log_path}:\n{log[start : start + 2500]}"
    return ""


@contextlib.contextmanager
def stopped_at_exit(*servers: GunicornServer):
    """Stop every server that was started, by its PID, whatever happens."""
    try:
        yield
    finally:
        for server in servers:
            if server.process is not None:
                server.stop()
            server.cleanup()


# --- 1. SIGKILL one worker while a write load runs -------------------------------


@dataclasses.dataclass
class WorkerKill:
    server: GunicornServer
    load: WriteLoad
    before: set[int]
    victim: int
    after: set[int]
    replaced_at: float


@pytest.fixture(scope="module")
def worker_kill(tmp_path_factory):
    server = new_server(tmp_path_factory.mktemp("kill-worker"), "server", server_env())
    with stopped_at_exit(server):
        start(server)
        before = wait_for_workers(server.pid, WORKERS, WAIT)
        load = WriteLoad(
            server.url, login(server.url)["access_token"], max_seconds=LOAD_SECONDS, tag="kill-worker"
        )
        with load:
            assert load.wait_for_acks(WARM_ACKS, WAIT), load.summary()
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGKILL)
            after = wait_for_workers(server.pid, WORKERS, WAIT, without={victim})
            replaced_at = time.monotonic()
            load.wait_for_acks(load.ack_count() + ACKS_AFTER, WAIT)
        print(f"\nworker kill: {load.summary()}")
        yield WorkerKill(server, load, before, victim, after, replaced_at)


def test_a_sigkilled_worker_is_replaced_by_a_new_one(worker_kill):
    assert worker_kill.victim not in worker_kill.after
    assert len(worker_kill.after) == WORKERS
    assert len(worker_kill.after - worker_kill.before) == 1


def test_the_server_keeps_acknowledging_writes_after_a_worker_is_sigkilled(worker_kill):
    load = worker_kill.load
    later = [ack for ack in load.acks if ack.at > worker_kill.replaced_at]
    assert len(later) >= ACKS_AFTER, load.summary()
    assert load.timeouts() == [], load.summary()


def test_no_request_gets_a_5xx_when_a_worker_is_sigkilled(worker_kill):
    load = worker_kill.load
    assert load.server_errors == [], load.summary() + logged_errors(worker_kill.server)
    assert load.unexpected == [], load.summary()


def test_no_acknowledged_write_is_lost_when_a_worker_is_sigkilled(worker_kill):
    acks = by_id(worker_kill.load.acks)
    assert len(acks) == len(worker_kill.load.acks), "an id was acknowledged twice"
    assert read_ships(worker_kill.server.url, acks) == acks


# --- 2. SIGTERM the master while requests are in flight ----------------------------


@dataclasses.dataclass
class Sigterm:
    results: list[tuple[int, dict | None, float]]  # (status, body, answered at)
    errors: list[str]
    term_at: float
    exit_code: int | None
    exited_after: float | None


@pytest.fixture(scope="module")
def sigterm_in_flight(tmp_path_factory):
    logins = 8
    server = new_server(tmp_path_factory.mktemp("sigterm"), "server", server_env(FLEET_SCRYPT_N=SLOW_HASHING))
    with stopped_at_exit(server):
        start(server)
        wait_for_workers(server.pid, WORKERS, WAIT)
        results, errors = [], []
        barrier = threading.Barrier(logins + 1)
        sent = threading.Semaphore(0)
        body = json.dumps({"username": "user", "password": "password"})

        def log_in():
            barrier.wait(WAIT)
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GRACEFUL_TIMEOUT)
            try:
                connection.request("POST", "/auth/login", body, {"Content-Type": "application/json"})
                sent.release()  # the whole request is on its way: in flight from here on
                response = connection.getresponse()
                results.append((response.status, json.loads(response.read()), time.monotonic()))
            except OSError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                connection.close()

        clients = [threading.Thread(target=log_in, daemon=True) for _ in range(logins)]
        for client in clients:
            client.start()
        barrier.wait(WAIT)
        # SIGTERM once every request has been sent (a loaded machine can
        # delay a client thread past any fixed pause; a connection with no
        # request yet is not in flight, and a stopping worker rightly drops it).
        for _ in range(logins):
            assert sent.acquire(timeout=WAIT)
        wait_until_accepted(server.port)
        time.sleep(0.1)
        server.exit_expected = True
        server.process.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        try:
            exit_code = server.process.wait(GRACEFUL_TIMEOUT + 5)
            exited_after = time.monotonic() - term_at
        except subprocess.TimeoutExpired:
            exit_code = exited_after = None
        for client in clients:
            client.join(WAIT)
        yield Sigterm(results, errors, term_at, exit_code, exited_after)


def test_logins_in_flight_at_sigterm_all_get_their_tokens(sigterm_in_flight):
    run = sigterm_in_flight
    assert run.errors == []
    assert [status for status, _, _ in run.results] == [200] * 8
    assert all(body.keys() >= {"access_token", "refresh_token"} for _, body, _ in run.results)
    # The premise: they were still running when the master got its SIGTERM.
    assert all(answered_at > run.term_at for _, _, answered_at in run.results)


def test_the_master_exits_0_within_the_graceful_timeout_after_sigterm(sigterm_in_flight):
    assert sigterm_in_flight.exit_code == 0
    assert sigterm_in_flight.exited_after < GRACEFUL_TIMEOUT


# --- 3. Graceful restart while writes keep going -----------------------------------


@dataclasses.dataclass
class Restart:
    first: GunicornServer
    server: GunicornServer  # the second one, still running
    load: WriteLoad
    first_exit_code: int | None
    stopped_at: float
    restarted_at: float
    kept: dict
    revoked: dict
    deleted_before: dict


@pytest.fixture(scope="module")
def restart_under_load(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restart")
    env = server_env(FLEET_STORE=sqlite_url(tmp / "fleet.db"))
    first = new_server(tmp, "first", env)
    second = new_server(tmp, "second", env, port=first.port)  # clients keep their URL
    with stopped_at_exit(first, second):
        start(first)
        kept, revoked = login(first.url), login(first.url)
        doomed = call("POST", f"{first.url}/api/ships", STAR_DESTROYER, kept["access_token"]).json
        assert (
            call("DELETE", f"{first.url}/api/ships/{doomed['id']}", token=kept["access_token"]).status == 204
        )
        assert call("DELETE", f"{first.url}/auth/logout", token=revoked["access_token"]).status == 200
        assert call("DELETE", f"{first.url}/auth/logout2", token=revoked["refresh_token"]).status == 200

        load = WriteLoad(
            first.url, kept["access_token"], max_seconds=LOAD_SECONDS, delete_every=4, tag="restart"
        )
        with load:
            assert load.wait_for_acks(WARM_ACKS, WAIT), load.summary()
            first_exit_code = first.stop()  # SIGTERM with the writers still going
            stopped_at = time.monotonic()
            start(second)
            restarted_at = time.monotonic()
            load.wait_for_acks(load.ack_count() + ACKS_AFTER, WAIT)
        print(f"\nrestart: {load.summary()}")
        yield Restart(first, second, load, first_exit_code, stopped_at, restarted_at, kept, revoked, doomed)


def test_the_first_server_stops_cleanly_under_load(restart_under_load):
    assert restart_under_load.first_exit_code == 0


def test_writes_are_acknowledged_on_both_sides_of_the_restart(restart_under_load):
    run = restart_under_load
    assert any(ack.at < run.stopped_at for ack in run.load.acks)
    assert any(ack.at > run.restarted_at for ack in run.load.acks), run.load.summary()


def test_no_request_gets_a_5xx_or_hangs_across_a_restart(restart_under_load):
    load = restart_under_load.load
    servers = restart_under_load.first, restart_under_load.server
    assert load.server_errors == [], load.summary() + logged_errors(*servers)
    assert load.unexpected == [], load.summary()
    assert load.timeouts() == [], load.summary()


def test_every_acknowledged_write_survives_a_restart_under_load(restart_under_load):
    live = by_id(restart_under_load.load.live())
    assert read_ships(restart_under_load.server.url, live) == live


def test_ships_deleted_under_load_stay_deleted_after_a_restart(restart_under_load):
    run = restart_under_load
    deleted = run.load.deleted | {run.deleted_before["id"]}
    assert len(deleted) > 1
    assert read_ships(run.server.url, deleted) == {ship_id: 404 for ship_id in deleted}


def test_a_logged_out_token_stays_refused_after_a_restart(restart_under_load):
    run = restart_under_load
    url = run.server.url
    assert call("POST", f"{url}/api/ships", STAR_DESTROYER, run.revoked["access_token"]).status == 401
    assert call("POST", f"{url}/auth/refresh", token=run.revoked["refresh_token"]).status == 401


def test_a_live_token_still_works_after_a_restart(restart_under_load):
    run = restart_under_load
    url = run.server.url
    assert call("POST", f"{url}/api/ships", STAR_DESTROYER, run.kept["access_token"]).status == 201
    assert call("POST", f"{url}/auth/refresh", token=run.kept["refresh_token"]).status == 200


# --- 4. kill -9 the whole server mid-load, restart on the same file --------------


@dataclasses.dataclass
class Crash:
    first: GunicornServer
    server: GunicornServer  # the restarted one, still running
    load: WriteLoad
    db_path: Path


@pytest.fixture(scope="module")
def crash_under_load(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    db_path = tmp / "fleet.db"
    env = server_env(FLEET_STORE=sqlite_url(db_path))
    first = new_server(tmp, "first", env)
    second = new_server(tmp, "second", env)
    with stopped_at_exit(first, second):
        start(first)
        wait_for_workers(first.pid, WORKERS, WAIT)
        load = WriteLoad(first.url, login(first.url)["access_token"], max_seconds=LOAD_SECONDS, tag="crash")
        with load:
            assert load.wait_for_acks(WARM_ACKS, WAIT), load.summary()
            first.exit_expected = True
            os.killpg(first.pid, signal.SIGKILL)  # master and workers: one process group
            first.process.wait(WAIT)
        print(f"\ncrash: {load.summary()}")
        start(second)
        yield Crash(first, second, load, db_path)


def test_every_acknowledged_write_survives_a_kill_9_of_the_whole_server(crash_under_load):
    acks = by_id(crash_under_load.load.acks)
    assert read_ships(crash_under_load.server.url, acks) == acks


def test_no_request_gets_a_5xx_before_a_kill_9(crash_under_load):
    load = crash_under_load.load
    assert load.server_errors == [], load.summary() + logged_errors(crash_under_load.first)
    assert load.unexpected == [], load.summary()
    assert load.timeouts() == [], load.summary()


def test_the_database_passes_integrity_check_after_a_kill_9(crash_under_load):
    with contextlib.closing(sqlite3.connect(crash_under_load.db_path, timeout=WAIT)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# --- 5. A fresh worker's first requests, at once ------------------------------------
#
# Every worker gunicorn starts (at boot, or to replace a killed one) first meets
# the load with several threads at once. The runs above caught a 500 there about
# once in ten fresh servers; this is the same situation made deterministic, in
# process: entropy is made slow (os.urandom sleeps, letting other threads run as
# the real getrandom() syscall can), so the first requests overlap every time.


def test_a_fresh_worker_answers_its_first_concurrent_requests_without_a_500(monkeypatch):
    settings = Settings(
        secret_key=secrets.token_urlsafe(48), store_url="memory://", scrypt_n=int(FAST_HASHING)
    )
    client = falcon.testing.TestClient(create_app(settings))
    urandom = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: (time.sleep(0.05), urandom(n))[1])
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []

    def first_request():
        barrier.wait(WAIT)
        statuses.append(client.simulate_get("/api/ships/1").status_code)

    requests = [threading.Thread(target=first_request, daemon=True) for _ in range(threads)]
    for request in requests:
        request.start()
    for request in requests:
        request.join(WAIT)
    assert statuses == [200] * threads
