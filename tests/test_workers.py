"""The shipped worker class (fleet_api/workers.py) over a real gunicorn: a
worker whose threads are all busy leaves new connections to one with a free
thread, and still takes one now and then. And each worker is pinned to a
CPU of its own, spread evenly."""

from __future__ import annotations

import os
import runpy
import signal
import socket
import time
from types import SimpleNamespace

import pytest
from conftest import server_env
from support.sockets import ESTABLISHED, open_files, tcp_sockets

from devtools.gunicorn import GUNICORN_CONF, GunicornServer
from devtools.processes import wait_for
from fleet_api.settings import SettingsError
from fleet_api.workers import PIN_ENV, choose_cpu, least_used_cpu, pinning_wanted

WAIT = 30.0
THREADS = 2
HELD = 6  # connections that each hold a thread: more than both workers' threads
BODY = b'{"username": "user", "password": "password"}'
SETTLE = 0.5  # seconds for a worker that would take more to take it


def accepted_per_worker(server: GunicornServer) -> list[int]:
    """How many connections each worker has accepted, fewest first."""
    held = {f"socket:[{fields[9]}]" for fields in tcp_sockets(server.port, ESTABLISHED) if fields[9] != "0"}
    return sorted(len(held.intersection(open_files(pid))) for pid in server.worker_pids())


def held_login(port: int) -> socket.socket:
    """A login whose body stops halfway: the thread serving it waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.sendall(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY[: len(BODY) // 2])
    )
    return sock


def served(held: list[socket.socket]) -> bool:
    """Send the rest of each held login: True once every one is answered."""
    for sock in held:
        sock.sendall(BODY[len(BODY) // 2 :])
    return all(sock.recv(64).startswith(b"HTTP/1.1 200 ") for sock in held)


def test_a_busy_worker_leaves_new_connections_to_a_worker_with_a_free_thread():
    # An interval longer than the test: a busy worker takes no new connection.
    env = server_env(GUNICORN_THREADS=str(THREADS), GUNICORN_BUSY_ACCEPT_MS="600000")
    with GunicornServer(workers=2, env=env) as server:
        held = [held_login(server.port) for _ in range(HELD)]
        try:
            assert wait_for(lambda: sum(accepted_per_worker(server)) >= 2 * THREADS, WAIT)
            time.sleep(SETTLE)
            # plain gthread takes all six, three or more on one worker
            assert accepted_per_worker(server) == [THREADS, THREADS]
            # and the two left in the accept queue are served once a thread is free
            assert served(held)
        finally:
            for sock in held:
                sock.close()


def test_a_busy_worker_still_takes_a_new_connection_now_and_then():
    """Else connections beyond the threads would wait for as long as the ones
    kept alive keep every thread busy."""
    with GunicornServer(workers=2, env=server_env(GUNICORN_THREADS=str(THREADS))) as server:
        held = [held_login(server.port) for _ in range(HELD)]
        try:
            assert wait_for(lambda: sum(accepted_per_worker(server)) == HELD, WAIT)
            assert served(held)
        finally:
            for sock in held:
                sock.close()


def test_the_shipped_config_runs_the_balanced_worker():
    with GunicornServer(workers=2, env=server_env()) as server:
        server.stop()
        assert "Using worker: fleet_api.workers.BalancedThreadWorker" in server.log_tail(20_000)


# --- one CPU per worker ---------------------------------------------------------
ALLOWED = sorted(os.sched_getaffinity(0))
several_cpus = pytest.mark.skipif(
    len(ALLOWED) < 2, reason="one CPU: there is nothing to spread (choose_cpu leaves it)"
)


def affinities(server: GunicornServer) -> dict[int, set[int]]:
    return {pid: os.sched_getaffinity(pid) for pid in server.worker_pids()}


def test_workers_spread_evenly_over_the_cpus():
    taken: list[int] = []
    for _ in range(5):
        taken.append(least_used_cpu({0, 1}, taken))
    assert taken == [0, 1, 0, 1, 0]


def test_a_replacement_worker_takes_the_cpu_its_predecessor_freed():
    assert least_used_cpu({0, 1, 2}, [0, 2, None]) == 1  # None: a worker not pinned


def test_only_the_cpus_the_master_may_use_are_shared_out():
    assert least_used_cpu({2, 5}, [2, 2]) == 5


def test_the_master_notes_a_cpu_on_each_worker_before_it_forks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    first = SimpleNamespace(fleet_cpu=0)
    server = SimpleNamespace(WORKERS={101: first})
    worker = SimpleNamespace()
    choose_cpu(server, worker)
    assert worker.fleet_cpu == 1


def test_on_one_cpu_no_worker_is_pinned(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    worker = SimpleNamespace()
    choose_cpu(SimpleNamespace(WORKERS={}), worker)
    assert not hasattr(worker, "fleet_cpu")


def test_pinning_is_on_unless_switched_off():
    assert pinning_wanted({}) is True
    assert pinning_wanted({PIN_ENV: " OFF "}) is False


def test_a_bad_pinning_value_stops_the_server_config_from_loading(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "sometimes")
    with pytest.raises(SettingsError, match=f"{PIN_ENV} must be on or off"):
        runpy.run_path(str(GUNICORN_CONF))


@several_cpus
def test_each_worker_of_the_shipped_config_runs_on_one_cpu_of_its_own():
    workers = len(ALLOWED) + 1  # one more than the CPUs: two share the first
    with GunicornServer(workers=workers, env=server_env()) as server:
        assert wait_for(lambda: len(server.worker_pids()) == workers, WAIT)
        pinned = affinities(server)
        assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
        used = sorted(cpu for cpus in pinned.values() for cpu in cpus)
        assert used == sorted([*ALLOWED, ALLOWED[0]])
        # the master itself keeps every CPU: it shares them out
        assert os.sched_getaffinity(server.pid) == set(ALLOWED)


@several_cpus
def test_a_worker_that_dies_is_replaced_on_the_cpu_it_freed():
    with GunicornServer(workers=len(ALLOWED), env=server_env()) as server:
        assert wait_for(lambda: len(server.worker_pids()) == len(ALLOWED), WAIT)
        before = affinities(server)
        victim = max(before)
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda: victim not in server.worker_pids() and len(server.worker_pids()) == len(ALLOWED), WAIT
        )
        after = affinities(server)
        (newcomer,) = set(after) - set(before)
        assert after[newcomer] == before[victim]


@several_cpus
def test_with_pinning_off_the_workers_may_run_on_every_cpu():
    with GunicornServer(workers=2, env=server_env(**{PIN_ENV: "off"})) as server:
        assert wait_for(lambda: len(server.worker_pids()) == 2, WAIT)
        assert all(cpus == set(ALLOWED) for cpus in affinities(server).values())
