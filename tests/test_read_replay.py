"""ReadReplay (fleet_api/cache.py): a repeated public read gets the answer
Falcon gave the first time, byte for byte but for its own request id, until
a write anywhere moves the ships version."""

from __future__ import annotations

import secrets
import threading
import time

import falcon.testing
import pytest
from conftest import TEST_SCRYPT_N, Session
from test_metrics import SHIP_ROUTE, scrape, total

from fleet_api.app import create_app
from fleet_api.cache import ReadReplay, ReplayingApp, VersionedCache
from fleet_api.logs import REQUEST_ID, ROUTE
from fleet_api.settings import Settings
from fleet_api.store import open_store

SHIP = "/api/ships/2"
PAGE = "/api/ships?affiliation=empire&limit=2"


def answer(result) -> tuple:
    """What a client sees of an answer, but its request id."""
    headers = {k: v for k, v in result.headers.items() if k.lower() != "x-request-id"}
    return result.status_code, headers, result.content


def replayed(client) -> int:
    return client.app.replay.replayed


@pytest.mark.parametrize("path", [SHIP, "/api/ships", PAGE])
def test_a_repeated_read_is_replayed_byte_for_byte(client, path):
    first = client.simulate_get(path)
    before = replayed(client)
    again = client.simulate_get(path)
    assert replayed(client) == before + 1
    assert first.status_code == 200
    assert answer(again) == answer(first)


def test_every_replayed_answer_has_a_request_id_of_its_own(client):
    ids = [client.simulate_get(SHIP).headers["X-Request-ID"] for _ in range(3)]
    assert replayed(client) == 2
    assert len(set(ids)) == 3


def test_a_replayed_answer_echoes_a_sane_request_id_and_replaces_an_insane_one(client):
    client.simulate_get(SHIP)
    sane = client.simulate_get(SHIP, headers={"X-Request-ID": "trace-42"})
    insane = client.simulate_get(SHIP, headers={"X-Request-ID": "bad id\twith spaces"})
    assert replayed(client) == 2
    assert sane.headers["X-Request-ID"] == "trace-42"
    assert insane.headers["X-Request-ID"] not in ("", "bad id\twith spaces")


def test_a_write_through_the_api_is_seen_by_the_next_read(client, auth):
    ship = client.simulate_get(SHIP).json
    client.simulate_get(SHIP)
    ship["crew"] += 1
    put = client.simulate_put(SHIP, json=ship, headers=auth.headers)
    assert put.status_code == 200
    before = replayed(client)
    assert client.simulate_get(SHIP).json == ship
    assert replayed(client) == before  # built afresh, then kept again
    assert client.simulate_get(SHIP).json == ship
    assert replayed(client) == before + 1


def test_a_deleted_ship_is_not_replayed(client, auth):
    client.simulate_get(SHIP)
    client.simulate_get(SHIP)
    assert client.simulate_delete(SHIP, headers=auth.headers).status_code == 204
    assert client.simulate_get(SHIP).status_code == 404
    assert client.simulate_get(SHIP).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_write_by_another_worker_is_seen_by_the_next_replayable_read(backend, tmp_path, request):
    """Two apps, each with its own store on one database, as two gunicorn
    workers (or two hosts, on PostgreSQL) are."""
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    config = Settings(secret_key=secrets.token_urlsafe(48), store_url=url, scrypt_n=TEST_SCRYPT_N)
    stores = [open_store(url), open_store(url)]
    try:
        reader, writer = (falcon.testing.TestClient(create_app(config, store=store)) for store in stores)
        reader.simulate_get(SHIP)
        reader.simulate_get(SHIP)
        assert replayed(reader) == 1
        ship = writer.simulate_get(SHIP).json
        ship["crew"] += 7
        assert writer.simulate_put(SHIP, json=ship, headers=Session(writer).headers).status_code == 200
        assert reader.simulate_get(SHIP).json == ship
        assert replayed(reader) == 1
    finally:
        for store in stores:
            store.close()


def test_if_none_match_still_gets_a_304(client):
    etag = client.simulate_get(SHIP).headers["ETag"]
    client.simulate_get(SHIP)
    before = replayed(client)
    result = client.simulate_get(SHIP, headers={"If-None-Match": etag})
    assert result.status_code == 304
    assert result.content == b""
    assert replayed(client) == before


def test_head_is_answered_by_falcon_without_a_body(client):
    client.simulate_get(SHIP)
    before = replayed(client)
    result = client.simulate_head(SHIP)
    assert result.status_code == 200
    assert result.content == b""
    assert replayed(client) == before


def test_a_get_with_a_body_over_the_cap_is_still_refused(client, settings):
    client.simulate_get(SHIP)
    result = client.simulate_get(SHIP, body=b"x" * (settings.max_body_bytes + 1))
    assert result.status_code == 413


def test_paging_links_follow_the_host_the_client_asked(client):
    first = client.simulate_get(PAGE, host="one.example")
    again = client.simulate_get(PAGE, host="one.example")
    other = client.simulate_get(PAGE, host="two.example")
    assert "one.example" in first.headers["Link"]
    assert again.headers["Link"] == first.headers["Link"]
    assert "two.example" in other.headers["Link"]
    assert "one.example" not in other.headers["Link"]


def test_replayed_reads_are_counted_like_any_other(client):
    for _ in range(4):
        client.simulate_get(SHIP)
    assert replayed(client) == 3
    text = scrape(client)
    assert total(text, "http_requests_total", route=SHIP_ROUTE, method="GET", status="200") == 4
    assert total(text, "http_request_duration_seconds_count", route=SHIP_ROUTE, method="GET") == 4


def test_a_replayed_read_hands_the_access_log_its_id_and_route(app):
    falcon.testing.TestClient(app).simulate_get(SHIP)
    environ = falcon.testing.create_environ(SHIP, headers={"X-Request-ID": "for-the-log"})
    before = app.replay.replayed
    b"".join(app(environ, lambda status, headers, exc_info=None: None))
    assert app.replay.replayed == before + 1
    assert environ[REQUEST_ID] == "for-the-log"
    assert environ[ROUTE] == SHIP_ROUTE


# --- ReadReplay on its own, with a tiny app -----------------------------------------


class Counted:
    """One replayable resource; counts the times Falcon ran its responder."""

    def __init__(self, cache: VersionedCache) -> None:
        self.cache = cache
        self.calls = 0

    def on_get(self, req, resp) -> None:
        self.calls += 1
        resp.data = self.cache.get("k", lambda: b"same", req)
        resp.set_header("X-Request-ID", "from-falcon")


def tiny_app(version, settle=lambda: None) -> tuple[ReplayingApp, Counted]:
    resource = Counted(VersionedCache(version))
    replay = ReadReplay(version, settle, lambda environ: "fresh", lambda *counted: None)
    app = ReplayingApp(replay)
    app.add_route("/thing", resource)
    return app, resource


def test_nothing_is_replayed_while_a_commit_is_in_flight():
    app, resource = tiny_app(lambda: None)  # the store's "a write is becoming visible"
    client = falcon.testing.TestClient(app)
    for _ in range(3):
        assert client.simulate_get("/thing").content == b"same"
    assert resource.calls == 3
    assert app.replay.replayed == 0


def test_an_answer_the_responder_did_not_mark_is_never_replayed():
    class Unmarked:
        calls = 0

        def on_get(self, req, resp) -> None:
            Unmarked.calls += 1
            resp.data = b"depends on who asks"
            resp.set_header("X-Request-ID", "x")

    app = ReplayingApp(ReadReplay(lambda: 1, lambda: None, lambda environ: "fresh", lambda *counted: None))
    app.add_route("/thing", Unmarked())
    client = falcon.testing.TestClient(app)
    client.simulate_get("/thing")
    client.simulate_get("/thing")
    assert Unmarked.calls == 2
    assert app.replay.replayed == 0


def test_a_replayed_answer_waits_for_the_fsync_before_it_is_sent():
    events = []
    app, resource = tiny_app(lambda: 5, settle=lambda: events.append("settled"))
    falcon.testing.TestClient(app).simulate_get("/thing")
    events.clear()
    environ = falcon.testing.create_environ("/thing")
    b"".join(app(environ, lambda status, headers, exc_info=None: events.append(status)))
    assert resource.calls == 1
    assert events == ["settled", "200 OK"]


def test_an_answer_built_from_an_older_version_does_not_evict_the_newer_one():
    now = [2]
    app, resource = tiny_app(lambda: now[0])
    client = falcon.testing.TestClient(app)
    client.simulate_get("/thing")  # kept under 2
    now[0] = 1  # a reader that read the version just before a write moved it, racing a newer one
    client.simulate_get("/thing")  # built under 1: not kept over 2
    now[0] = 2
    client.simulate_get("/thing")
    assert resource.calls == 2
    assert app.replay.replayed == 1


def test_a_start_response_without_exc_info_is_called_as_falcon_calls_it(app):
    """PEP 3333 lets a server's start_response take exc_info; some take two arguments only."""
    statuses = []
    for _ in range(2):  # built by Falcon, then replayed
        b"".join(app(falcon.testing.create_environ(SHIP), lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK", "200 OK"]
    assert app.replay.replayed == 1


def test_under_concurrent_writes_no_read_is_older_than_a_write_acknowledged_before_it(client, auth):
    """Readers in 4 threads, a writer in one: every GET started after a PUT
    was answered shows that PUT's crew or a later one, replayed or not.
    (The readers pause a little between GETs, or their GIL would starve the
    writer's durable commits; the writer pauses a little between PUTs, or on
    the memory store it moves the version before any read can be replayed.)"""
    ship = client.simulate_get(SHIP).json
    acknowledged = [ship["crew"]]
    stale, done = [], threading.Event()

    def write() -> None:
        try:
            for crew in range(ship["crew"] + 1, ship["crew"] + 61):
                result = client.simulate_put(SHIP, json={**ship, "crew": crew}, headers=auth.headers)
                assert result.status_code == 200
                acknowledged.append(crew)
                time.sleep(0.002)
        finally:
            done.set()

    def read() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            before = acknowledged[-1]
            got = client.simulate_get(SHIP).json["crew"]
            if got < before:
                stale.append((got, before))
            time.sleep(0.0005)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert done.is_set() and acknowledged[-1] == ship["crew"] + 60
    assert client.app.replay.replayed > 0  # the readers did hit the replay between writes
    assert stale == []
