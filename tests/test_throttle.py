"""Failed logins are throttled per user name and per client address, in the
shared store, with 429 + Retry-After (issue 6, item 3)."""

from __future__ import annotations

import pytest
from conftest import server_env

from devtools.gunicorn import GunicornServer
from devtools.http import call

USER_LIMIT = 3
IP_LIMIT = 5
WINDOW = 300
TOO_MANY = {"error": "Too Many Requests", "message": "Too many failed logins; try again later."}


LIMITS = {"login_user_limit": USER_LIMIT, "login_ip_limit": IP_LIMIT, "login_window": WINDOW}


@pytest.fixture
def tclient(make_client):
    return make_client(**LIMITS)


def attempt(client, username="user", password="wrong", **kwargs):
    return client.simulate_post("/auth/login", json={"username": username, "password": password}, **kwargs)


def fail(client, username="user", times=1, **kwargs) -> list[int]:
    return [attempt(client, username, "wrong", **kwargs).status_code for _ in range(times)]


def assert_too_many(result, window=WINDOW) -> None:
    assert result.status_code == 429, result.text
    assert result.json == TOO_MANY
    retry_after = result.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), retry_after
    assert 0 < int(retry_after) <= window


# --- per user name -------------------------------------------------------------


def test_failures_up_to_the_user_limit_are_401(tclient):
    assert fail(tclient, times=USER_LIMIT) == [401] * USER_LIMIT


def test_failure_past_the_user_limit_is_429_with_retry_after(tclient):
    fail(tclient, times=USER_LIMIT)

    assert_too_many(attempt(tclient))


def test_locked_out_name_is_429_even_with_the_right_password(tclient):
    fail(tclient, times=USER_LIMIT)

    assert_too_many(attempt(tclient, "user", "password"))


def test_attempts_while_locked_out_stay_429(tclient):
    fail(tclient, times=USER_LIMIT)

    assert [attempt(tclient, "user", pw).status_code for pw in ("x", "password", "y")] == [429] * 3


def test_other_user_names_are_unaffected_by_one_names_lockout(tclient):
    fail(tclient, "user", times=USER_LIMIT)

    assert attempt(tclient, "guest", "guest").status_code == 200
    assert attempt(tclient, "guest", "wrong").status_code == 401


def test_unknown_user_names_count_too(tclient):
    assert fail(tclient, "nobody-here", times=USER_LIMIT) == [401] * USER_LIMIT

    assert_too_many(attempt(tclient, "nobody-here"))


def test_user_names_are_counted_exactly(tclient):
    # "User" and "user " are other names: their failures don't lock out "user".
    fail(tclient, "User", times=1)
    fail(tclient, "user ", times=1)
    fail(tclient, "user", times=USER_LIMIT - 1)

    assert attempt(tclient, "user", "password").status_code == 200


def test_a_success_before_the_limit_resets_the_users_count(tclient):
    fail(tclient, times=USER_LIMIT - 1)
    assert attempt(tclient, "user", "password").status_code == 200

    assert fail(tclient, times=USER_LIMIT - 1) == [401] * (USER_LIMIT - 1)
    assert attempt(tclient, "user", "password").status_code == 200


def test_a_success_does_not_reset_the_ip_count(tclient):
    fail(tclient, "user", times=USER_LIMIT - 1)
    assert attempt(tclient, "user", "password").status_code == 200
    fail(tclient, "guest", times=IP_LIMIT - (USER_LIMIT - 1))  # the IP's 5th failure

    assert_too_many(attempt(tclient, "user", "password"))


def test_missing_credentials_do_not_count(tclient, subtests):
    bodies = [{"username": "user"}, {"username": "user", "password": ""}, {"password": "x"}, {}]
    for body in bodies * IP_LIMIT:
        with subtests.test(body=body):
            assert tclient.simulate_post("/auth/login", json=body).status_code == 400

    assert attempt(tclient, "user", "password").status_code == 200


def test_non_string_credentials_do_not_count(tclient):
    # 401 as in the example, which looks them up and finds no one; no hash is
    # tried, so nothing is counted.
    for _ in range(IP_LIMIT):
        result = tclient.simulate_post("/auth/login", json={"username": "user", "password": 123})
        assert result.status_code == 401
        assert result.json == {"error": "Unauthorized", "message": "Username or password invalid."}

    assert attempt(tclient, "user", "password").status_code == 200


# --- per client address -----------------------------------------------------------


def test_failures_across_names_reach_the_ip_limit(tclient):
    statuses = [attempt(tclient, f"name-{i}").status_code for i in range(IP_LIMIT)]

    assert statuses == [401] * IP_LIMIT
    assert_too_many(attempt(tclient, "guest", "guest"))


def test_ip_limit_is_per_client_address(tclient):
    for i in range(IP_LIMIT):
        attempt(tclient, f"name-{i}", remote_addr="192.0.2.1")

    assert attempt(tclient, "guest", "guest", remote_addr="192.0.2.2").status_code == 200
    assert_too_many(attempt(tclient, "guest", "guest", remote_addr="192.0.2.1"))


def test_x_forwarded_for_is_ignored_without_trusted_proxies(tclient):
    for i in range(IP_LIMIT):
        headers = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        attempt(tclient, f"name-{i}", headers=headers)

    assert_too_many(attempt(tclient, "guest", "guest", headers={"X-Forwarded-For": "198.51.100.200"}))


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_client):
    client = make_client(**LIMITS, trusted_proxies="127.0.0.1")
    for i in range(IP_LIMIT):
        attempt(
            client, f"name-{i}", remote_addr="203.0.113.9", headers={"X-Forwarded-For": f"198.51.100.{i + 1}"}
        )

    result = attempt(
        client, "guest", "guest", remote_addr="203.0.113.9", headers={"X-Forwarded-For": "198.51.100.200"}
    )

    assert_too_many(result)


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(make_client):
    client = make_client(**LIMITS, trusted_proxies="127.0.0.1")
    for i in range(IP_LIMIT):
        attempt(client, f"name-{i}", headers={"X-Forwarded-For": "198.51.100.7"})

    other = attempt(client, "guest", "guest", headers={"X-Forwarded-For": "198.51.100.8"})
    same = attempt(client, "guest", "guest", headers={"X-Forwarded-For": "198.51.100.7"})

    assert other.status_code == 200
    assert_too_many(same)


def test_the_nearest_untrusted_hop_is_the_client_behind_a_trusted_proxy(make_client):
    # The client may prepend anything; only the hop our proxy appended counts.
    client = make_client(**LIMITS, trusted_proxies="127.0.0.1, 10.0.0.0/8")
    for i in range(IP_LIMIT):
        spoofed = f"192.0.2.{i + 1}, 198.51.100.7, 10.1.2.3"
        attempt(client, f"name-{i}", headers={"X-Forwarded-For": spoofed})

    result = attempt(
        client, "guest", "guest", headers={"X-Forwarded-For": "192.0.2.99, 198.51.100.7, 10.1.2.3"}
    )

    assert_too_many(result)


# --- expiry -------------------------------------------------------------------


def test_user_and_ip_counters_expire_when_the_window_ends(make_client, clock):
    client = make_client(**LIMITS)
    fail(client, "user", times=USER_LIMIT)
    fail(client, "someone", times=IP_LIMIT - USER_LIMIT)
    assert_too_many(attempt(client, "user", "password"))  # user and IP locked
    assert_too_many(attempt(client, "guest", "guest"))  # IP locked

    clock.advance(WINDOW - 1)
    assert_too_many(attempt(client, "guest", "guest"), window=1)  # one second left
    clock.advance(1)

    assert attempt(client, "user", "password").status_code == 200
    assert attempt(client, "guest", "guest").status_code == 200


# --- real gunicorn workers ------------------------------------------------------

ATTEMPTS = 20


@pytest.fixture(scope="module")
def server():
    env = server_env(FLEET_LOGIN_USER_LIMIT=str(USER_LIMIT), FLEET_LOGIN_IP_LIMIT="1000")
    with GunicornServer(workers=4, env=env) as server:
        yield server


def test_failure_counts_are_shared_by_every_worker(server):
    results = [
        call("POST", f"{server.url}/auth/login", {"username": "user", "password": "wrong"})
        for _ in range(ATTEMPTS)
    ]

    assert [r.status for r in results] == [401] * USER_LIMIT + [429] * (ATTEMPTS - USER_LIMIT)
    retry_after = {int(r.headers["Retry-After"]) for r in results[USER_LIMIT:]}
    assert all(0 < seconds <= 300 for seconds in retry_after)
    assert all(r.json == TOO_MANY for r in results[USER_LIMIT:])
