"""Several gunicorn workers on the default SQLite store act as one server."""

from __future__ import annotations

import secrets
import threading

from conftest import server_env
from support.bodies import STAR_DESTROYER

from devtools.gunicorn import GunicornServer
from devtools.http import call, login

REPEAT = 100


def test_a_revoked_token_is_refused_by_every_worker(server):
    token = login(server.url)["access_token"]
    assert call("DELETE", f"{server.url}/auth/logout", token=token).status == 200
    statuses = [call("POST", f"{server.url}/api/ships", STAR_DESTROYER, token).status for _ in range(REPEAT)]
    assert statuses == [401] * REPEAT


def test_a_token_in_use_on_every_worker_is_refused_by_all_of_them_once_revoked(server):
    """Each worker keeps its answer for a token it has checked (SQLite's auth
    version); the logout on one of them must end it on all at once."""
    token = login(server.url)["access_token"]
    assert [call("GET", f"{server.url}/api/sessions", token=token).status for _ in range(REPEAT)] == [
        200
    ] * REPEAT
    assert call("DELETE", f"{server.url}/auth/logout", token=token).status == 200
    refused = [call("GET", f"{server.url}/api/sessions", token=token) for _ in range(REPEAT)]
    assert [(r.status, r.json) for r in refused] == [(401, {"error": "Token has been revoked"})] * REPEAT


def test_a_created_ship_is_found_by_every_worker(server):
    token = login(server.url)["access_token"]
    created = call("POST", f"{server.url}/api/ships", STAR_DESTROYER, token)
    assert created.status == 201
    url = f"{server.url}/api/ships/{created.json['id']}"
    bodies = [call("GET", url).json for _ in range(REPEAT)]
    assert bodies == [created.json] * REPEAT


def test_concurrent_creates_get_distinct_ids_and_lose_nothing(server):
    token = login(server.url)["access_token"]
    threads, per_thread = 8, 10
    results: list = []

    def create_ships():
        for _ in range(per_thread):
            results.append(call("POST", f"{server.url}/api/ships", STAR_DESTROYER, token))

    workers = [threading.Thread(target=create_ships) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [r.status for r in results] == [201] * threads * per_thread
    ids = {r.json["id"] for r in results}
    assert len(ids) == threads * per_thread
    listed = {ship["id"] for ship in call("GET", f"{server.url}/api/ships").json}
    assert ids <= listed


def test_racing_registrations_of_one_name_give_exactly_one_user(server):
    name = f"racer-{secrets.token_hex(4)}"
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def register():
        barrier.wait(10)
        statuses.append(call("POST", f"{server.url}/api/users", {"name": name, "password": "secret"}).status)

    racers = [threading.Thread(target=register) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert sorted(statuses) == [201] + [400] * 7
    assert [u["name"] for u in call("GET", f"{server.url}/api/users").json].count(name) == 1


def test_a_deleted_users_tokens_stop_working_on_every_worker(server):
    name = f"leaver-{secrets.token_hex(4)}"
    user = call("POST", f"{server.url}/api/users", {"name": name, "password": "secret"}).json
    tokens = login(server.url, name, "secret")
    assert call("DELETE", f"{server.url}/api/users/{user['id']}", token=tokens["access_token"]).status == 204
    statuses = [
        call("POST", f"{server.url}/auth/refresh", token=tokens["refresh_token"]).status for _ in range(20)
    ]
    assert statuses == [401] * 20


def test_data_and_revocations_survive_a_restart(tmp_path):
    env = server_env(FLEET_STORE=f"sqlite:///{tmp_path / 'fleet.db'}")
    with GunicornServer(workers=4, env=env) as first:
        kept = login(first.url)
        revoked = login(first.url)
        ship = call("POST", f"{first.url}/api/ships", STAR_DESTROYER, kept["access_token"]).json
        assert call("DELETE", f"{first.url}/api/ships/1", token=kept["access_token"]).status == 204
        assert call("DELETE", f"{first.url}/auth/logout", token=revoked["access_token"]).status == 200
        assert call("DELETE", f"{first.url}/auth/logout2", token=revoked["refresh_token"]).status == 200

    with GunicornServer(workers=4, env=env) as second:
        assert call("GET", f"{second.url}/api/ships/{ship['id']}").json == ship
        assert call("GET", f"{second.url}/api/ships/1").status == 404  # not re-seeded
        assert call("POST", f"{second.url}/api/ships", STAR_DESTROYER, revoked["access_token"]).status == 401
        assert call("POST", f"{second.url}/auth/refresh", token=revoked["refresh_token"]).status == 401
        assert call("POST", f"{second.url}/auth/refresh", token=kept["refresh_token"]).status == 200
