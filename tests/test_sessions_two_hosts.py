"""Sessions across two API hosts (two gunicorn instances) on one PostgreSQL:
reuse detected on one host, or a session ended there, is in force on the
other at once; racing refreshes across hosts leave at most one chain."""

from __future__ import annotations

import jwt
import pytest
from support.race import race

from devtools.http import call, login

REVOKED = {"error": "Token has been revoked"}
REPEAT = 20
RACERS = 8


@pytest.fixture(scope="module")
def hosts(two_hosts):
    with two_hosts(FLEET_REFRESH_ROTATION="on", FLEET_REFRESH_REUSE_GRACE="0") as urls:
        yield urls


def test_reuse_detected_on_one_host_kills_the_session_on_the_other(hosts):
    first, second = hosts
    tokens = login(first)
    successor = call("POST", f"{second}/auth/refresh", token=tokens["refresh_token"]).json
    assert (call("POST", f"{first}/auth/refresh", token=tokens["refresh_token"]).json) == REVOKED
    for url in (first, second) * (REPEAT // 2):
        assert call("GET", f"{url}/api/sessions", token=successor["access_token"]).json == REVOKED
        assert call("POST", f"{url}/auth/refresh", token=successor["refresh_token"]).json == REVOKED


def test_a_session_deleted_on_one_host_is_dead_on_the_other(hosts):
    first, second = hosts
    doomed, kept = login(first), login(second)
    sid = jwt.decode(doomed["access_token"], options={"verify_signature": False})["sid"]
    assert call("DELETE", f"{second}/api/sessions/{sid}", token=kept["access_token"]).status == 204
    assert [
        call("GET", f"{first}/api/sessions", token=doomed["access_token"]).status for _ in range(REPEAT)
    ] == [401] * REPEAT
    assert call("GET", f"{first}/api/sessions", token=kept["access_token"]).status == 200


def test_racing_refreshes_across_hosts_leave_at_most_one_chain(hosts):
    tokens = login(hosts[0])
    refresh_token = tokens["refresh_token"]
    results = race(lambda i: call("POST", f"{hosts[i % 2]}/auth/refresh", token=refresh_token), RACERS)
    answers = [(r.status, r.json) if hasattr(r, "status") else repr(r) for r in results]
    assert {getattr(r, "status", None) for r in results} <= {200, 401}, answers
    won = {r.json["refresh_token"] for r in results if r.status == 200}
    assert len(won) <= 1, answers  # one chain: every winner holds the same successor
    live = [t for t in won if call("POST", f"{hosts[1]}/auth/refresh", token=t).status == 200]
    assert live == [], answers  # with no grace, the losers' reuse ended the session
