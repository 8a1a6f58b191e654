"""The shipped worker class (fleet_api/workers.py) over a real gunicorn: a
worker whose threads are all busy leaves new connections to one with a free
thread, and still takes one now and then."""

from __future__ import annotations

import socket
import time

from conftest import server_env
from support.sockets import ESTABLISHED, open_files, tcp_sockets

from devtools.gunicorn import GunicornServer
from devtools.processes import wait_for

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
