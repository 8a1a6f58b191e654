"""GET /metrics (issue 16, item 1): Prometheus counters by route template,
correct across real gunicorn workers, including one that is killed."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import falcon.testing
import pytest
from conftest import Session, server_env
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from support.bodies import STAR_DESTROYER
from support.race import race

from devtools.gunicorn import GunicornServer
from devtools.http import call, login
from devtools.processes import wait_for, wait_for_workers
from fleet_api.app import create_app
from fleet_api.metrics import Metrics, MetricsMiddleware, ThreadRequestCounts
from fleet_api.settings import Settings, SettingsError

SHIP_ROUTE = "/api/ships/{ship_id}"
THREADS = 8  # gunicorn.conf.py's threads per worker
WAIT_SECONDS = 5.0


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one sample name in an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(value for key, value in samples(text, name).items() if want <= set(key))


def scrape(client) -> str:
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/plain; version=")
    return result.text


# --- in one process (falcon.testing) ---------------------------------------------


def test_requests_are_counted_by_route_template_never_raw_path(client):
    for ship_id in (1, 2, 3, 2, 999):
        client.simulate_get(f"/api/ships/{ship_id}", params={"x": ship_id})
    client.simulate_get("/no/such/place/42")
    client.simulate_request("BREW", "/api/ships")

    text = scrape(client)
    requests = samples(text, "http_requests_total")
    routes = {dict(key)["route"] for key in requests}
    assert routes == {SHIP_ROUTE, "unmatched", "/api/ships"}
    assert total(text, "http_requests_total", route=SHIP_ROUTE, status="200") == 4
    assert total(text, "http_requests_total", route=SHIP_ROUTE, status="404") == 1
    assert total(text, "http_requests_total", route="unmatched", method="GET") == 1
    assert total(text, "http_requests_total", route="/api/ships", method="OTHER") == 1
    assert total(text, "http_request_duration_seconds_count", route=SHIP_ROUTE, method="GET") == 5
    assert total(text, "http_request_duration_seconds_sum", route=SHIP_ROUTE) > 0


def test_a_413_refused_before_routing_is_counted_as_unmatched(client):
    client.simulate_post("/api/users", body=b"x" * (70 * 1024), headers={"Content-Type": "application/json"})

    assert total(scrape(client), "http_requests_total", route="unmatched", status="413") == 1


def test_login_outcomes_are_counted(settings, store):
    client = falcon.testing.TestClient(
        create_app(dataclasses.replace(settings, login_user_limit=2), store=store)
    )
    attempts = [("user", "password"), ("user", "wrong"), ("nobody", "x"), ("nobody", "y"), ("nobody", "z")]
    statuses = [
        client.simulate_post("/auth/login", json={"username": u, "password": p}).status_code
        for u, p in attempts
    ]
    client.simulate_post("/auth/login", json={"username": "user"})  # 400: not a login attempt

    assert statuses == [200, 401, 401, 401, 429]
    text = scrape(client)
    assert samples(text, "auth_logins_total") == {
        (("outcome", "ok"),): 1,
        (("outcome", "invalid"),): 3,
        (("outcome", "throttled"),): 1,
    }


def test_revocations_are_counted_by_reason(client, login):
    for path, token in (("/auth/logout", "access"), ("/auth/logout2", "refresh")):
        session = login()
        headers = session.headers if token == "access" else session.refresh_headers
        assert client.simulate_delete(path, headers=headers).status_code == 200
    owner = client.simulate_post("/api/users", json={"name": "changer", "password": "old-secret"}).json
    session = login("changer", "old-secret")
    renamed = client.simulate_put(
        f"/api/users/{owner['id']}",
        json={"name": "changed", "password": "old-secret"},
        headers=session.headers,
    )
    changed = client.simulate_put(
        f"/api/users/{owner['id']}",
        json={"name": "changed", "password": "new-secret"},
        headers=session.headers,
    )
    deleted = client.simulate_delete(
        f"/api/users/{owner['id']}", headers=login("changed", "new-secret").headers
    )

    assert (renamed.status_code, changed.status_code, deleted.status_code) == (200, 200, 204)
    assert samples(scrape(client), "auth_tokens_revoked_total") == {
        (("reason", "logout"),): 1,
        (("reason", "logout2"),): 1,
        (("reason", "password_change"),): 1,  # the rename kept the password: no revocation
        (("reason", "user_deleted"),): 1,
        (("reason", "revoke"),): 0,
        (("reason", "refresh_reuse"),): 0,
        (("reason", "session_ended"),): 0,
    }


def test_reuse_detection_revoke_and_ended_sessions_are_counted(settings, store):
    rotating = dataclasses.replace(settings, refresh_rotation=True, refresh_reuse_grace=0)
    client = falcon.testing.TestClient(create_app(rotating, store=store))
    first, second = (Session(client) for _ in range(2))
    assert client.simulate_post("/auth/refresh", headers=first.refresh_headers).status_code == 200
    assert client.simulate_post("/auth/refresh", headers=first.refresh_headers).status_code == 401  # reused
    revoked = client.simulate_post("/auth/revoke", json={"token": second.refresh_token})
    third = Session(client)
    ended = client.simulate_delete("/api/sessions", headers=third.headers)

    assert (revoked.status_code, ended.json) == (200, {"revoked": 0})  # the others had ended already
    text = scrape(client)
    assert total(text, "auth_refresh_reuse_detected_total") == 1
    assert samples(text, "auth_tokens_revoked_total")[(("reason", "refresh_reuse"),)] == 1
    assert samples(text, "auth_tokens_revoked_total")[(("reason", "revoke"),)] == 1


def test_refresh_reuse_counter_exists_and_counts():
    metrics = Metrics()
    text = metrics.exposition().decode()
    assert total(text, "auth_refresh_reuse_detected_total") == 0

    metrics.refresh_reuse_detected()
    metrics.refresh_reuse_detected()

    assert total(metrics.exposition().decode(), "auth_refresh_reuse_detected_total") == 2


def test_two_apps_never_share_counts(settings, store, tmp_path):
    first = falcon.testing.TestClient(create_app(settings, store=store))
    other = dataclasses.replace(settings, store_url=f"sqlite:///{tmp_path / 'other.db'}")
    second = falcon.testing.TestClient(create_app(other))
    first.simulate_get("/api/ships/2")

    assert total(scrape(first), "http_requests_total", route=SHIP_ROUTE) == 1
    assert total(scrape(second), "http_requests_total", route=SHIP_ROUTE) == 0


def test_metrics_off_removes_the_route_and_the_middleware(settings, store):
    app = create_app(dataclasses.replace(settings, metrics=False), store=store)
    client = falcon.testing.TestClient(app)

    assert client.simulate_get("/metrics").status_code == 404
    assert not any(isinstance(m, MetricsMiddleware) for m in app._unprepared_middleware)
    assert (
        client.simulate_post("/auth/login", json={"username": "user", "password": "password"}).status_code
        == 200
    )


@pytest.mark.parametrize("raw, enabled", [(None, True), ("on", True), ("off", False), (" OFF ", False)])
def test_fleet_metrics_setting(raw, enabled):
    env = {"FLEET_SECRET_KEY": "k" * 40} | ({"FLEET_METRICS": raw} if raw is not None else {})
    assert Settings.from_env(env).metrics is enabled


def test_a_bad_fleet_metrics_value_refuses_to_start():
    with pytest.raises(SettingsError, match="FLEET_METRICS"):
        Settings.from_env({"FLEET_SECRET_KEY": "k" * 40, "FLEET_METRICS": "maybe"})


STORE_COUNTS = ("store_commits_total", "store_writes_total", "store_write_lock_holds_total")


def store_counts(text: str) -> tuple[float, ...]:
    return tuple(total(text, name) for name in STORE_COUNTS)


def put_crew(client, token: str, crew: int, **headers) -> int:
    ship = client.simulate_get("/api/ships/2").json
    del ship["id"]
    headers["Authorization"] = f"Bearer {token}"
    return client.simulate_put("/api/ships/2", json={**ship, "crew": crew}, headers=headers).status_code


def test_each_committed_write_moves_the_store_counters_by_one(tmp_path):
    settings = Settings(secret_key="k" * 48, store_url=f"sqlite:///{tmp_path / 'fleet.db'}", scrypt_n=16)
    client = falcon.testing.TestClient(create_app(settings))
    token = client.simulate_post("/auth/login", json={"username": "user", "password": "password"}).json[
        "access_token"
    ]
    commits, writes, holds = store_counts(scrape(client))

    assert put_crew(client, token, 7) == 200
    text = scrape(client)
    assert store_counts(text) == (commits + 1, writes + 1, holds + 1)
    held = total(text, "store_write_lock_held_seconds_total")
    assert held > 0

    # A write its If-Match refuses took the lock, and committed nothing.
    assert put_crew(client, token, 8, **{"If-Match": '"stale"'}) == 412
    text = scrape(client)
    assert store_counts(text) == (commits + 1, writes + 1, holds + 2)
    assert total(text, "store_write_lock_held_seconds_total") > held
    assert total(text, "store_write_lock_wait_seconds_total") >= 0


def test_a_store_without_a_write_path_of_ours_serves_no_store_counters():
    settings = Settings(secret_key="k" * 48, store_url="memory://", scrypt_n=16)
    text = scrape(falcon.testing.TestClient(create_app(settings)))

    assert not any(
        name.startswith("store_") for name in (f.name for f in text_string_to_metric_families(text))
    )


# --- four real gunicorn workers ------------------------------------------------------


def per_worker(metrics_dir: Path, name: str, **labels) -> dict[int, float]:
    """What each worker's own files hold, read as prometheus_client does:
    `counter_<pid>.db` (the library's own), and `counter_t<n>.db` of the
    slots its threads hold (slot_t<n>.claim names the pid)."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid, merged = wait_for(lambda path=path: _read_worker_file(metrics_dir, path), WAIT_SECONDS)
        counts[pid] = counts.get(pid, 0) + sum(
            s.value
            for family in merged
            for s in family.samples
            if s.name == name and set(labels.items()) <= set(s.labels.items())
        )
    return counts


def _read_worker_file(metrics_dir: Path, path: Path):
    """(pid, metrics) of one file, or None while a thread that has just
    started is still making it (created, not yet sized or named: as
    Metrics.exposition does, read again)."""
    owner = path.stem.split("_", 1)[1]
    try:
        pid = int((metrics_dir / f"slot_{owner}.claim").read_text() if owner.startswith("t") else owner)
        return pid, MultiProcessCollector.merge([str(path)], accumulate=True)
    except (struct.error, ValueError):
        return None


def get_ships(base: str, count: int) -> None:
    """`count` GETs of ship ids 1..15, from 8 concurrent clients."""
    ids = [1 + n % 15 for n in range(count)]
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda ship_id: call("GET", f"{base}/api/ships/{ship_id}").status, ids))
    assert statuses == {200}


def scrape_http(base: str) -> str:
    result = call("GET", f"{base}/metrics")
    assert result.status == 200
    return result.body.decode()


def test_counts_sum_over_four_workers_and_survive_a_killed_one(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"
    stale.write_bytes(b"left over from an earlier run")
    env = server_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    burst, later = 40, 40
    with GunicornServer(workers=4, env=env) as server:
        assert not stale.exists()  # a fresh directory for each start
        # Bursts until at least two workers have answered some.
        first = 0
        for _ in range(10):
            get_ships(server.url, burst)
            first += burst
            served = per_worker(metrics_dir, "http_requests_total", route=SHIP_ROUTE)
            if sum(1 for n in served.values() if n) >= 2:
                break
        tokens = login(server.url)
        assert call("DELETE", f"{server.url}/auth/logout", token=tokens["access_token"]).status == 200
        assert call("POST", f"{server.url}/api/ships", STAR_DESTROYER, tokens["access_token"]).status == 401

        text = scrape_http(server.url)
        assert total(text, "http_requests_total", route=SHIP_ROUTE) == first
        assert not any("/api/ships/1" in dict(key)["route"] for key in samples(text, "http_requests_total"))
        assert total(text, "auth_logins_total", outcome="ok") == 1
        assert total(text, "auth_tokens_revoked_total", reason="logout") == 1

        served = per_worker(metrics_dir, "http_requests_total", route=SHIP_ROUTE)
        assert sum(served.values()) == first
        assert sum(1 for n in served.values() if n) >= 2, served  # spread over several workers
        live = server.worker_pids()
        assert len(live) == 4
        victim = max((pid for pid in served if pid in live), key=served.get)
        assert served[victim] > 0

        os.kill(victim, signal.SIGKILL)
        wait_for_workers(server.pid, 4, 30, without={victim})  # replaced

        # the dead worker's counts are still there, once
        assert total(scrape_http(server.url), "http_requests_total", route=SHIP_ROUTE) == first
        get_ships(server.url, later)
        text = scrape_http(server.url)
        assert total(text, "http_requests_total", route=SHIP_ROUTE) == first + later
        assert total(text, "auth_logins_total", outcome="ok") == 1
        # Its replacement's threads took free slots, the dead one's first: as
        # many request files as threads ever counting at once, not one more.
        assert len(list(metrics_dir.glob("counter_t*.db"))) <= 4 * THREADS


def test_a_workers_threads_count_at_once_each_in_files_of_its_own_and_lose_nothing(tmp_path, monkeypatch):
    """prometheus_client's one lock per process convoys under gthread's
    threads; each thread writes its own files, and the sums are exact."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    counts = ThreadRequestCounts(str(tmp_path))
    times = [0.0005, 0.003, 0.04, 20.0]  # a bucket each, the last one past every bound: +Inf
    threads, per_thread = 8, 200  # per_thread: a multiple of len(times) and of 5

    def count(_thread: int) -> None:
        for n in range(per_thread):
            counts.count("GET", SHIP_ROUTE, 200 if n % 5 else 404, times[n % len(times)])

    assert race(count, threads) == [None] * threads
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()

    assert sorted(p.name for p in tmp_path.glob("counter_*.db")) == sorted(
        f"counter_t{n}.db" for n in range(threads)
    )
    assert {p.read_text() for p in tmp_path.glob("slot_t*.claim")} == {str(os.getpid())}
    assert total(text, "http_requests_total", route=SHIP_ROUTE) == threads * per_thread
    assert total(text, "http_requests_total", status="404") == threads * per_thread / 5
    assert total(text, "http_request_duration_seconds_count") == threads * per_thread
    each = threads * per_thread / len(times)
    assert total(text, "http_request_duration_seconds_sum") == pytest.approx(each * sum(times))
    buckets = samples(text, "http_request_duration_seconds_bucket")
    cumulative = {dict(key)["le"]: value for key, value in buckets.items()}
    assert cumulative["0.001"] == each and cumulative["0.005"] == 2 * each
    assert cumulative["0.05"] == cumulative["10.0"] == 3 * each
    assert cumulative["+Inf"] == 4 * each


def _count_then_die(folder: str, times: int) -> None:
    counts = ThreadRequestCounts(folder)
    for _ in range(times):
        counts.count("GET", SHIP_ROUTE, 200, 0.002)
    os.kill(os.getpid(), signal.SIGKILL)  # no exit handler runs


def test_a_killed_workers_slot_is_taken_over_and_its_counts_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    dead = multiprocessing.get_context("fork").Process(target=_count_then_die, args=(str(tmp_path), 30))
    dead.start()
    dead.join(30)
    assert dead.exitcode == -signal.SIGKILL
    counts = ThreadRequestCounts(str(tmp_path))
    for _ in range(12):
        counts.count("GET", SHIP_ROUTE, 200, 0.002)

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    assert total(text, "http_requests_total", route=SHIP_ROUTE) == 42
    assert total(text, "http_request_duration_seconds_count") == 42
    assert [p.name for p in tmp_path.glob("counter_*.db")] == ["counter_t0.db"]  # the same slot, reused
    assert (tmp_path / "slot_t0.claim").read_text() == str(os.getpid())


def test_metrics_off_under_gunicorn_is_404():
    with GunicornServer(workers=2, env=server_env(FLEET_METRICS="off")) as server:
        assert call("GET", f"{server.url}/metrics").status == 404
        assert call("GET", f"{server.url}/api/ships/2").status == 200


def test_preloaded_app_still_counts_every_worker():
    """--preload imports prometheus_client in the master: the directory must
    be named before that (gunicorn.conf.py does it when it is read)."""
    with GunicornServer(workers=2, env=server_env(), args=["--preload"]) as server:
        get_ships(server.url, 30)
        text = scrape_http(server.url)

    assert total(text, "http_requests_total", route=SHIP_ROUTE) == 30


def test_a_worker_boots_while_a_siblings_metrics_file_is_still_empty(tmp_path):
    """A sibling that has created its file but not yet sized it must not stop
    this worker from booting (it did: the whole server shut down), and the
    scrape answers once the file is whole. Multiprocess mode needs the
    directory set before prometheus_client is imported: a fresh interpreter."""
    script = (
        "import pathlib, sys\n"
        "empty = pathlib.Path(sys.argv[1], 'counter_999999.db'); empty.write_bytes(b'')\n"
        "from fleet_api.metrics import Metrics\n"
        "metrics = Metrics(sys.argv[1])\n"
        "empty.unlink()\n"
        "sys.stdout.write(metrics.exposition().decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "auth_tokens_revoked_total" in result.stdout


def test_store_counters_are_the_hosts_whichever_worker_answers(tmp_path):
    """The counts live in one page every worker maps: each worker's /metrics
    gives the same sums, and every PUT is counted once, on whichever worker."""
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    puts = 24
    with GunicornServer(workers=3, env=server_env(FLEET_STORE=store)) as server:
        # Every worker has opened the store (its page is mapped) and so made
        # its boot writes (schema, seed check); then the counts hold still.
        page = str(tmp_path / "fleet.db.stats")
        assert wait_for(
            lambda: all(page in Path(f"/proc/{pid}/maps").read_text() for pid in server.worker_pids()), 30
        )
        token = login(server.url)["access_token"]
        ship = call("GET", f"{server.url}/api/ships/2").json
        del ship["id"]
        before = wait_for(lambda: _settled_counts(server.url), 10)
        assert before

        def put(crew: int) -> int:
            return call("PUT", f"{server.url}/api/ships/2", {**ship, "crew": crew}, token).status

        with ThreadPoolExecutor(8) as pool:  # concurrent, so writes can share commits
            assert set(pool.map(put, range(1, puts + 1))) == {200}
        # Fresh connections, spread over the workers; all agree.
        scrapes = {store_counts(scrape_http(server.url)) for _ in range(6)}
        assert len(scrapes) == 1, scrapes
        commits, writes, holds = (after - was for after, was in zip(scrapes.pop(), before, strict=True))
        assert writes == puts
        assert 1 <= commits <= puts and holds >= commits


def _settled_counts(base: str) -> tuple[float, ...] | None:
    """The counts, once two scrapes a moment apart agree (a worker that
    mapped the page a moment ago may still be making its boot writes)."""
    first = store_counts(scrape_http(base))
    time.sleep(0.3)
    return first if store_counts(scrape_http(base)) == first else None
