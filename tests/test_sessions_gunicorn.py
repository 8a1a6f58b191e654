"""Sessions over a real gunicorn with 4 workers on the default SQLite store:
whatever one worker decides (reuse detected, a session deleted) every other
worker enforces on the very next request. Each request is a new connection,
so consecutive requests land on different workers.

The grace window is set by FLEET_REFRESH_REUSE_GRACE instead of waited for:
0 on the server where reuse must be detected at once, 30 where racing
refreshes must all fall inside it.
"""

from __future__ import annotations

import jwt
import pytest
from conftest import server_env
from support.race import race

from devtools.gunicorn import GunicornServer
from devtools.http import call, login

REPEAT = 50
RACERS = 8
ROUNDS = 3
REVOKED = {"error": "Token has been revoked"}


def serve(**env):
    return GunicornServer(workers=4, env=server_env(**env))


@pytest.fixture(scope="module")
def strict():
    with serve(FLEET_REFRESH_ROTATION="on", FLEET_REFRESH_REUSE_GRACE="0") as server:
        yield server.url


@pytest.fixture(scope="module")
def lenient():
    with serve(FLEET_REFRESH_ROTATION="on", FLEET_REFRESH_REUSE_GRACE="30") as server:
        yield server.url


@pytest.fixture(scope="module")
def plain():
    with serve() as server:  # rotation off: the example's behaviour
        yield server.url


def sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


def refresh(url: str, token: str):
    return call("POST", f"{url}/auth/refresh", token=token)


def race_refreshes(url: str, token: str) -> list:
    """RACERS threads present one refresh token at once."""
    return race(lambda i: refresh(url, token), RACERS)


def test_reuse_after_the_grace_window_kills_the_session_on_every_worker(strict):
    tokens, bystander = login(strict), login(strict)
    successor = refresh(strict, tokens["refresh_token"])
    assert successor.status == 200
    assert set(successor.json) == {"access_token", "refresh_token"}

    reused = refresh(strict, tokens["refresh_token"])

    assert (reused.status, reused.json) == (401, REVOKED)
    answers = []
    for _ in range(REPEAT):
        answers.append(call("GET", f"{strict}/api/sessions", token=tokens["access_token"]))
        answers.append(call("GET", f"{strict}/api/sessions", token=successor.json["access_token"]))
        answers.append(refresh(strict, successor.json["refresh_token"]))
    assert [(a.status, a.json) for a in answers] == [(401, REVOKED)] * (3 * REPEAT)
    alive = [
        call("GET", f"{strict}/api/sessions", token=bystander["access_token"]).status for _ in range(REPEAT)
    ]
    assert alive == [200] * REPEAT


def test_racing_refreshes_within_the_grace_window_share_one_successor(lenient):
    for _ in range(ROUNDS):
        tokens = login(lenient)
        results = race_refreshes(lenient, tokens["refresh_token"])
        assert [getattr(r, "status", r) for r in results] == [200] * RACERS
        successors = {r.json["refresh_token"] for r in results}
        assert len(successors) == 1  # one chain, however the workers interleaved
        (successor,) = successors
        assert refresh(lenient, successor).status == 200
        for result in results:
            assert call("GET", f"{lenient}/api/sessions", token=result.json["access_token"]).status == 200


def test_racing_refreshes_without_grace_never_leave_two_live_chains(strict):
    for _ in range(ROUNDS):
        tokens = login(strict)
        results = race_refreshes(strict, tokens["refresh_token"])
        assert {getattr(r, "status", r) for r in results} <= {200, 401}, [
            getattr(r, "json", r) for r in results
        ]
        assert all(r.json == REVOKED for r in results if r.status == 401)
        won = [r.json["refresh_token"] for r in results if r.status == 200]
        assert len(won) <= 1  # the first rotates; any second use is reuse
        live = [token for token in won if refresh(strict, token).status == 200]
        assert len(live) <= 1
        if len(won) < RACERS:  # someone reused it: the whole session is dead
            assert live == []
            assert call("GET", f"{strict}/api/sessions", token=tokens["access_token"]).status == 401


def test_one_session_deleted_while_the_others_keep_working(strict):
    first, doomed, third = login(strict), login(strict), login(strict)

    deleted = call(
        "DELETE", f"{strict}/api/sessions/{sid(doomed['access_token'])}", token=first["access_token"]
    )

    assert deleted.status == 204
    dead = [call("GET", f"{strict}/api/sessions", token=doomed["access_token"]).status for _ in range(REPEAT)]
    assert dead == [401] * REPEAT
    assert refresh(strict, doomed["refresh_token"]).status == 401
    for tokens in (first, third):
        statuses = [
            call("GET", f"{strict}/api/sessions", token=tokens["access_token"]).status for _ in range(REPEAT)
        ]
        assert statuses == [200] * REPEAT
    rotated = refresh(strict, third["refresh_token"])
    assert rotated.status == 200
    assert call("GET", f"{strict}/api/sessions", token=rotated.json["access_token"]).status == 200
    listed = call("GET", f"{strict}/api/sessions", token=first["access_token"]).json
    assert sid(doomed["access_token"]) not in {s["id"] for s in listed}


def test_the_examples_flows_are_unchanged_with_rotation_off(plain):
    tokens = login(plain)
    assert set(tokens) == {"access_token", "refresh_token"}
    for _ in range(10):  # the same refresh token, again and again, on any worker
        refreshed = refresh(plain, tokens["refresh_token"])
        assert refreshed.status == 200
        assert set(refreshed.json) == {"access_token"}
    out = call("DELETE", f"{plain}/auth/logout", token=tokens["access_token"])
    assert (out.status, out.json) == (200, {"message": "Successfully logged out."})
    assert call("GET", f"{plain}/api/sessions", token=tokens["access_token"]).json == REVOKED
    assert refresh(plain, tokens["refresh_token"]).status == 200  # logout leaves the refresh token
    out2 = call("DELETE", f"{plain}/auth/logout2", token=tokens["refresh_token"])
    assert (out2.status, out2.json) == (200, {"message": "Successfully logged out."})
    assert (refresh(plain, tokens["refresh_token"]).status, refresh(plain, tokens["refresh_token"]).json) == (
        401,
        REVOKED,
    )


def test_revoke_and_introspect_over_http(plain):
    tokens = login(plain)
    described = call(
        "POST", f"{plain}/auth/introspect", {"token": tokens["refresh_token"]}, tokens["access_token"]
    )
    assert described.status == 200
    assert (described.json["active"], described.json["token_type"]) == (True, "refresh")
    revoked = call("POST", f"{plain}/auth/revoke", {"token": tokens["refresh_token"]})
    assert (revoked.status, revoked.json) == (200, {})
    statuses = [call("GET", f"{plain}/api/sessions", token=tokens["access_token"]).status for _ in range(20)]
    assert statuses == [401] * 20
