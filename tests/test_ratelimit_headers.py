"""RateLimit-Policy and RateLimit on POST /auth/login (issue 16, item 4),
draft-ietf-httpapi-ratelimit-headers-11 sections 3 and 4, from the login
throttle's shared counters: they count down on every worker alike."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import server_env
from support.clock import FakeClock

from devtools.gunicorn import GunicornServer
from devtools.http import call

USER_LIMIT, IP_LIMIT, WINDOW = 4, 6, 300
POLICY = f'"user";q={USER_LIMIT};w={WINDOW}, "ip";q={IP_LIMIT};w={WINDOW}'
# An sf-list of two Items, each a String with integer parameters r and t.
ITEM = re.compile(r'"(user|ip)";r=(\d+);t=(\d+)')


def limits(result) -> dict[str, tuple[int, int]]:
    """{policy: (r, t)} from a RateLimit field, checking its whole syntax."""
    items = result.headers["RateLimit"].split(", ")
    parsed = [ITEM.fullmatch(item) for item in items]
    assert all(parsed), result.headers["RateLimit"]
    return {m[1]: (int(m[2]), int(m[3])) for m in parsed}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def tclient(make_client):
    return make_client(login_user_limit=USER_LIMIT, login_ip_limit=IP_LIMIT, login_window=WINDOW)


def login(client, username="user", password="wrong", **kwargs):
    return client.simulate_post("/auth/login", json={"username": username, "password": password}, **kwargs)


def test_a_fresh_login_advertises_both_policies_and_their_full_quota(tclient):
    result = login(tclient, password="password")

    assert result.status_code == 200
    assert result.headers["RateLimit-Policy"] == POLICY
    assert limits(result) == {"user": (USER_LIMIT, WINDOW), "ip": (IP_LIMIT, WINDOW)}


def test_each_failure_counts_both_quotas_down(tclient, clock):
    seen = []
    for _ in range(USER_LIMIT):
        result = login(tclient)
        assert result.status_code == 401
        assert result.headers["RateLimit-Policy"] == POLICY
        seen.append(limits(result))
        clock.advance(10)

    assert [s["user"][0] for s in seen] == [3, 2, 1, 0]
    assert [s["ip"][0] for s in seen] == [5, 4, 3, 2]
    # the window started with the first failure and ends WINDOW seconds later
    assert [s["user"][1] for s in seen] == [300, 290, 280, 270]


def test_the_429_says_zero_left_and_retry_after_is_the_end_of_the_window(tclient, clock):
    for _ in range(USER_LIMIT):
        login(tclient)
    clock.advance(100)

    result = login(tclient, password="password")

    assert result.status_code == 429
    assert result.headers["Retry-After"] == "200"
    assert limits(result)["user"] == (0, 200)
    # section 6: Retry-After no earlier than the end of the exhausted window
    assert int(result.headers["Retry-After"]) >= limits(result)["user"][1]
    assert result.headers["RateLimit-Policy"] == POLICY


def test_the_quota_is_back_when_the_window_ends(tclient, clock):
    for _ in range(USER_LIMIT):
        login(tclient)
    clock.advance(WINDOW)

    result = login(tclient, password="password")

    assert result.status_code == 200
    assert limits(result) == {"user": (USER_LIMIT, WINDOW), "ip": (IP_LIMIT, WINDOW)}


def test_a_success_restores_the_users_quota_but_not_the_addresses(tclient):
    login(tclient)
    login(tclient)

    result = login(tclient, password="password")

    assert limits(result) == {"user": (USER_LIMIT, WINDOW), "ip": (IP_LIMIT - 2, WINDOW)}


def test_the_address_quota_spans_user_names_and_its_429_names_it(tclient):
    for number in range(IP_LIMIT):
        assert login(tclient, f"nobody-{number}").status_code == 401

    result = login(tclient, "someone-else")

    assert result.status_code == 429
    assert limits(result) == {"user": (USER_LIMIT, WINDOW), "ip": (0, WINDOW)}


def test_missing_credentials_consume_nothing_and_carry_no_limits(tclient):
    result = tclient.simulate_post("/auth/login", json={"username": "user"})

    assert result.status_code == 400
    assert "RateLimit" not in result.headers
    assert limits(login(tclient, password="password"))["user"] == (USER_LIMIT, WINDOW)


def test_other_routes_carry_no_rate_limit_headers(tclient):
    assert "RateLimit" not in tclient.simulate_get("/api/ships").headers


def test_the_quota_counts_down_across_four_real_workers():
    """Concurrent failures on several workers: every answer reports its own
    failure's place in the shared count, each remaining value exactly once."""
    limit, burst, bursts = 400, 8, 20
    env = server_env(FLEET_LOGIN_USER_LIMIT=str(limit), FLEET_LOGIN_IP_LIMIT=str(limit))
    results = []
    with GunicornServer(workers=4, env=env) as server, ThreadPoolExecutor(burst) as pool:

        def fail(_):
            return call("POST", f"{server.url}/auth/login", {"username": "user", "password": "wrong"})

        # Bursts of concurrent connections until at least two workers have
        # answered (each worker's request ids have their own random prefix).
        for _ in range(bursts):
            results += pool.map(fail, range(burst))
            if len({r.headers["X-Request-ID"].split("-")[0] for r in results}) >= 2:
                break
        after = call("POST", f"{server.url}/auth/login", {"username": "user", "password": "wrong"})

    assert len({r.headers["X-Request-ID"].split("-")[0] for r in results}) >= 2
    assert {r.status for r in results} == {401}
    assert all(
        r.headers["RateLimit-Policy"] == f'"user";q={limit};w=300, "ip";q={limit};w=300' for r in results
    )
    remaining = [dict((kind, int(r)) for kind, r, _ in ITEM.findall(r.headers["RateLimit"])) for r in results]
    n = len(results)
    for kind in ("user", "ip"):
        assert sorted(item[kind] for item in remaining) == list(range(limit - n, limit)), kind
    assert limits_of(after) == {"user": limit - n - 1, "ip": limit - n - 1}


def limits_of(response) -> dict[str, int]:
    return {kind: int(r) for kind, r, _ in ITEM.findall(response.headers["RateLimit"])}
