"""Two API hosts (two gunicorn instances) on one PostgreSQL act as one service."""

from __future__ import annotations

import secrets

import pytest
from support.bodies import STAR_DESTROYER
from support.race import race

from devtools.http import call, login


@pytest.fixture(scope="module")
def hosts(two_hosts):
    with two_hosts() as urls:
        yield urls


def test_both_hosts_serve_the_seed_data_once(hosts):
    for url in hosts:
        assert [u["name"] for u in call("GET", f"{url}/api/users").json] == ["user", "guest"]
        assert len(call("GET", f"{url}/api/ships").json) == 15


def test_a_logout_on_one_host_is_in_force_on_the_other(hosts):
    first, second = hosts
    tokens = login(first)
    assert call("DELETE", f"{second}/auth/logout", token=tokens["access_token"]).status == 200
    assert call("POST", f"{first}/api/ships", STAR_DESTROYER, tokens["access_token"]).status == 401


def test_a_ship_created_on_one_host_is_found_on_the_other(hosts):
    first, second = hosts
    token = login(first)["access_token"]
    created = call("POST", f"{first}/api/ships", STAR_DESTROYER, token)
    assert created.status == 201
    assert call("GET", f"{second}/api/ships/{created.json['id']}").json == created.json


def test_racing_registrations_across_hosts_give_exactly_one_user(hosts):
    name = f"racer-{secrets.token_hex(4)}"
    results = race(lambda i: call("POST", f"{hosts[i % 2]}/api/users", {"name": name, "password": "secret"}))
    statuses = [getattr(result, "status", result) for result in results]
    assert sorted(statuses) == [201] + [400] * 7
