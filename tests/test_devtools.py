"""The servers tests start never outlive the run that started them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call
from devtools.processes import running, wait_for

# A stand-in for an interrupted test run: start a server, print its PID, then
# wait to be killed the way a CI time-out kills (SIGKILL: no finalizers run).
STARTERS = {
    "gunicorn": (
        "from devtools.gunicorn import GunicornServer\n"
        "server = GunicornServer(workers=2, env={'FLEET_SCRYPT_N': '16'}).start()\n"
        "print(server.pid, flush=True)\n"
        "import time; time.sleep(120)\n"
    ),
    "postgres": (
        "from devtools.postgres import running_postgres\n"
        "with running_postgres() as dsn:\n"
        "    import psycopg\n"
        "    with psycopg.connect(dsn) as conn:\n"
        "        pid = conn.execute('SELECT pid FROM pg_stat_activity WHERE backend_type = %s',"
        " ('checkpointer',)).fetchone()[0]\n"
        "    print(pid, flush=True)\n"
        "    import time; time.sleep(120)\n"
    ),
}


@pytest.mark.parametrize("server", sorted(STARTERS))
def test_a_killed_test_run_leaves_no_server_behind(server):
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTERS[server]],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = starter.stdout.readline()
        assert line.strip().isdigit(), f"the starter printed {line!r}"
        pid = int(line)
        assert running(pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert wait_for(lambda: not running(pid), 30), (
            f"{server} process {pid} outlived the run that started it"
        )
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(10)
        starter.stdout.close()


def test_a_server_started_from_a_short_lived_thread_outlives_the_thread():
    """The parent-death signal follows the forking thread; spawn forks from a
    long-lived one, so a fixture may start servers from threads of its own."""
    server = GunicornServer(workers=1, env={"FLEET_SCRYPT_N": "16"})
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join(60)
    try:
        assert server.process is not None and not starter.is_alive()
        # Without spawn the kernel signals the server the moment the thread
        # ends: within this second it stops answering and exits.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert server.process.poll() is None
            assert call("GET", f"{server.url}/health").status == 200
    finally:
        server.stop()
        server.cleanup()


def test_a_server_that_dies_before_its_test_stops_it_warns_with_its_log():
    """A master gone mid-test otherwise shows only as "connection refused"."""
    server = GunicornServer(workers=1, env={"FLEET_SCRYPT_N": "16"}).start()
    try:
        server.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown, as if from outside
        server.process.wait(30)
        with pytest.warns(
            RuntimeWarning, match=r"(?s)had exited with 0 before it was stopped.*Shutting down"
        ):
            server.stop()
    finally:
        server.stop()
        server.cleanup()


def test_a_server_without_our_config_runs_gunicorns_defaults_even_from_the_project_root(tmp_path):
    """gunicorn reads ./gunicorn.conf.py when given no -c: the bench's bare
    ceiling, started from the project root, used to get the shipped config
    (its worker class, its access log) without saying so."""
    log = tmp_path / "plain.log"
    server = GunicornServer(
        workers=1, conf=None, env={"FLEET_SCRYPT_N": "16"}, app="fleet_api.app:get_app()", log_path=log
    )
    assert server.root == PROJECT_ROOT and (PROJECT_ROOT / "gunicorn.conf.py").exists()
    server.start()
    try:
        assert call("GET", f"{server.url}/api/ships/1").status == 200
    finally:
        server.stop()
        server.cleanup()
    text = log.read_text()
    assert "Using worker: sync" in text, text  # gunicorn's default, not our BalancedThreadWorker
    assert "/api/ships/1" not in text, text  # and no access log
