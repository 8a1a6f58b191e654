"""Access and app logs (issue 16 item 6, issue 12 item 2): one line per
request with its id, where FLEET_ACCESS_LOG says (-, a path, off), as text
or FLEET_LOG_FORMAT=json; never a token or a password. Over real gunicorn."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading

import pytest
import requests
from conftest import server_env
from support.bodies import STAR_DESTROYER
from support.sockets import open_files

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.processes import wait_for
from fleet_api.logs import AccessSink, JSONFormatter

TIMEOUT = 10
PASSWORD = "pa55-" + secrets.token_hex(8)
ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "bytes",
    "remote",
    "user_id",
}


def traffic(base: str, fence: bool = False) -> tuple[list[str], list[str]]:
    """A user's few requests, each with its own X-Request-ID; returns the
    ids and the secrets that must never reach a log.

    All go over one keep-alive connection, so one gthread worker serves them
    in turn. With `fence`, a last request (not in the ids) follows: once it is
    answered, that worker has handed every earlier line to its log (gunicorn
    logs a request after answering it, before reading the next)."""
    ids, secrets_sent = [], [PASSWORD]
    with requests.Session() as http:

        def send(method, path, **kwargs):
            rid = f"t-{secrets.token_hex(6)}"
            ids.append(rid)
            headers = {"X-Request-ID": rid, **kwargs.pop("headers", {})}
            response = http.request(method, f"{base}{path}", headers=headers, timeout=TIMEOUT, **kwargs)
            assert response.headers["X-Request-ID"] == rid
            return response

        name = f"logger-{secrets.token_hex(4)}"
        assert send("POST", "/api/users", json={"name": name, "password": PASSWORD}).status_code == 201
        tokens = send("POST", "/auth/login", json={"username": name, "password": PASSWORD}).json()
        secrets_sent += [tokens["access_token"], tokens["refresh_token"]]
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert send("POST", "/api/ships", json=STAR_DESTROYER, headers=auth).status_code == 201
        assert send("GET", "/api/ships/2", params={"token": tokens["refresh_token"]}).status_code == 200
        assert send("GET", "/api/nowhere").status_code == 404
        if fence:
            assert http.get(f"{base}/health", timeout=TIMEOUT).status_code == 200
    return ids, secrets_sent


def test_a_path_gets_every_access_line_and_stdout_none(tmp_path):
    access, output = tmp_path / "access.log", tmp_path / "server.log"
    with GunicornServer(workers=2, env=server_env(FLEET_ACCESS_LOG=str(access)), log_path=output) as server:
        ids, sent = traffic(server.url)

    lines = access.read_text().splitlines()
    for rid in ids:
        assert sum(f"rid={rid}" in line for line in lines) == 1, rid
    line = next(line for line in lines if f"rid={ids[3]}" in line)
    assert '"GET /api/ships/2 HTTP/1.1" 200 ' in line  # the query string is left out
    assert "rid=" not in output.read_text()
    for secret in sent:
        assert secret not in access.read_text() and secret not in output.read_text()


def test_dash_writes_access_lines_to_stdout(tmp_path):
    output = tmp_path / "server.log"
    with GunicornServer(workers=2, env=server_env(FLEET_ACCESS_LOG="-"), log_path=output) as server:
        ids, _ = traffic(server.url)

    text = output.read_text()
    assert all(text.count(f"rid={rid}") == 1 for rid in ids)


def test_off_writes_no_access_line_anywhere(tmp_path):
    output = tmp_path / "server.log"
    stray = PROJECT_ROOT / "off"
    assert not stray.exists()
    with GunicornServer(workers=2, env=server_env(FLEET_ACCESS_LOG="off"), log_path=output) as server:
        ids, _ = traffic(server.url)

    text = output.read_text()
    assert "Booting worker" in text  # the error log is still there
    assert not any(rid in text for rid in ids)
    assert "rid=" not in text
    assert not stray.exists()  # "off" is not a file name


def test_json_access_and_error_logs(tmp_path):
    access, output = tmp_path / "access.log", tmp_path / "server.log"
    env = server_env(FLEET_ACCESS_LOG=str(access), FLEET_LOG_FORMAT="json")
    with GunicornServer(workers=2, env=env, log_path=output) as server:
        ids, sent = traffic(server.url)

    entries = [json.loads(line) for line in access.read_text().splitlines()]
    by_id = {entry["request_id"]: entry for entry in entries}
    assert all(set(entry) == ACCESS_FIELDS for entry in entries)
    register, login, create, get, missing = (by_id[rid] for rid in ids)
    assert (register["method"], register["route"], register["status"], register["user_id"]) == (
        "POST",
        "/api/users",
        201,
        None,
    )
    assert isinstance(create["user_id"], int) and login["user_id"] == create["user_id"]
    assert (create["route"], create["status"]) == ("/api/ships", 201)
    assert (get["path"], get["route"], get["status"]) == ("/api/ships/2", "/api/ships/{ship_id}", 200)
    assert (missing["route"], missing["status"]) == ("unmatched", 404)
    assert all(entry["level"] == "INFO" and entry["duration_ms"] >= 0 for entry in entries)
    assert all(entry["time"].endswith("Z") for entry in entries)
    # gunicorn's error log: JSON objects too
    errors = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    assert any(e["message"].startswith("Booting worker") for e in errors)
    assert {e["level"] for e in errors} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    for secret in sent:
        assert secret not in access.read_text() and secret not in output.read_text()


def test_repeated_reads_answered_by_the_replay_each_get_their_own_access_line(tmp_path):
    """The second and later GETs of a ship skip Falcon (fleet_api/cache.py,
    ReadReplay): each still gets its own line, id, route and status."""
    access = tmp_path / "access.log"
    env = server_env(FLEET_ACCESS_LOG=str(access), FLEET_LOG_FORMAT="json")
    with GunicornServer(workers=1, env=env) as server, requests.Session() as http:
        ids = [f"r-{n}-{secrets.token_hex(4)}" for n in range(4)]
        answers = [
            http.get(f"{server.url}/api/ships/2", headers={"X-Request-ID": rid}, timeout=TIMEOUT)
            for rid in ids
        ]
        assert http.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200  # a fence, see traffic()
    assert [a.headers["X-Request-ID"] for a in answers] == ids
    assert len({(a.status_code, a.content, a.headers["ETag"]) for a in answers}) == 1
    entries = {e["request_id"]: e for e in map(json.loads, access.read_text().splitlines())}
    for rid, got in zip(ids, answers, strict=True):
        entry = entries[rid]
        assert (entry["path"], entry["route"], entry["status"]) == (
            "/api/ships/2",
            "/api/ships/{ship_id}",
            200,
        )
        assert entry["bytes"] == len(got.content)


def test_buffered_lines_are_written_when_the_workers_exit(tmp_path):
    access = tmp_path / "access.log"
    env = server_env(FLEET_ACCESS_LOG=str(access), FLEET_ACCESS_LOG_FLUSH_SECONDS="3600")
    with GunicornServer(workers=2, env=env) as server:
        ids, _ = traffic(server.url, fence=True)
        assert not any(rid in access.read_text() for rid in ids)  # logged, still in the buffers
    text = access.read_text()
    assert all(text.count(f"rid={rid}") == 1 for rid in ids)


def test_usr1_reopens_the_file_after_rotation(tmp_path):
    access = tmp_path / "access.log"
    with GunicornServer(workers=2, env=server_env(FLEET_ACCESS_LOG=str(access))) as server:
        before, _ = traffic(server.url)
        assert wait_for(lambda: all(rid in access.read_text() for rid in before), 10)  # flushed
        rotated = access.rename(tmp_path / "access.log.1")
        os.kill(server.pid, signal.SIGUSR1)
        # The master signals the workers, and each one's flusher reopens the
        # path: wait until no worker holds the rotated file open (a worker
        # that has logged nothing yet holds neither file).
        assert wait_for(lambda: not any(holds(pid, rotated) for pid in server.worker_pids()), 10)
        after, _ = traffic(server.url)

    assert all(rid in (tmp_path / "access.log.1").read_text() for rid in before)
    assert all(rid in access.read_text() for rid in after)


def holds(pid: int, path) -> bool:
    """Whether process `pid` has `path` open."""
    return str(path) in open_files(pid)


def test_threads_writing_at_once_keep_every_line_whole_and_once(tmp_path):
    path = tmp_path / "sink.log"
    sink = AccessSink(str(path), interval=0.01)
    lines = {f"{thread}-{n}-{'x' * (n % 300)}\n" for thread in range(4) for n in range(3000)}

    def write(thread: int) -> None:
        for mine in sorted(line for line in lines if line.startswith(f"{thread}-")):
            sink.write(mine.encode())

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sink.close()

    written = path.read_text().splitlines(keepends=True)
    assert sorted(written) == sorted(lines)


def test_the_app_log_line_of_a_500_is_json_with_the_request_id(client, store, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("store on fire")

    monkeypatch.setattr(store, "find_ships", explode)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("fleet_api")
    logger.addHandler(handler)
    try:
        result = client.simulate_get("/api/ships", headers={"X-Request-ID": "trace-json"})
    finally:
        logger.removeHandler(handler)

    assert result.status_code == 500
    entry = json.loads(JSONFormatter().format(records[-1]))
    assert entry["level"] == "ERROR" and entry["logger"] == "fleet_api.errors"
    assert (entry["request_id"], entry["method"], entry["route"]) == ("trace-json", "GET", "/api/ships")
    assert "RuntimeError: store on fire" in entry["exception"]
    assert "\n" not in JSONFormatter().format(records[-1])


@pytest.mark.parametrize("value", ["xml", "yaml"])
def test_an_unknown_log_format_refuses_to_start(tmp_path, value):
    server = GunicornServer(
        workers=1, env=server_env(FLEET_LOG_FORMAT=value), log_path=tmp_path / "out.log", startup_timeout=15
    )
    with pytest.raises(RuntimeError, match="exited"):
        server.start()
    server.stop()
    server.cleanup()
    assert "FLEET_LOG_FORMAT" in (tmp_path / "out.log").read_text()


def test_a_failed_reopen_keeps_writing_to_the_old_file(tmp_path, caplog):
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "access.log"
    sink = AccessSink(str(path), interval=3600)
    sink.write(b"before\n")
    sink.flush()
    kept = os.open(path, os.O_RDONLY)  # the old file, readable after its folder is gone
    path.unlink()
    folder.rmdir()

    sink.reopen()
    sink.write(b"after\n")
    with caplog.at_level(logging.ERROR, logger="gunicorn.error"):
        sink.flush()
    sink.close()

    assert os.read(kept, 100) == b"before\nafter\n"
    os.close(kept)
    assert "lines may be lost" in caplog.text
