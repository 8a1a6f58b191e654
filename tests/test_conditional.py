"""ETags, If-None-Match (304) and If-Match (412) on ships and users (issue 5)."""

from __future__ import annotations

import re

import pytest
from support.bodies import SHIP_2, STAR_DESTROYER

STRONG_ETAG = re.compile(r'^"[\x21\x23-\x7e]+"$')  # RFC 9110 entity-tag, not W/
PRECONDITION_FAILED = "Precondition Failed"
STALE = '"0123456789abcdef01234567"'

READ_PATHS = ["/api/ships/2", "/api/ships", "/api/ships?limit=5&offset=5", "/api/users/1", "/api/users"]


def get(client, path, **headers):
    path, _, query = path.partition("?")
    return client.simulate_get(path, query_string=query or None, headers=headers)


def etag(client, path) -> str:
    result = get(client, path)
    assert result.status_code == 200, result.text
    return result.headers["ETag"]


def item_write(client, session, path, method, if_match, put_body, patch_body):
    """PUT or PATCH (merge patch) `path` with the body given, or DELETE it, with If-Match when given."""
    headers = dict(session.headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    if method == "PUT":
        return client.simulate_put(path, json=put_body, headers=headers)
    if method == "PATCH":
        headers["Content-Type"] = "application/merge-patch+json"
        return client.simulate_patch(path, json=patch_body, headers=headers)
    return client.simulate_delete(path, headers=headers)


def ship_write(client, auth, method, if_match=None, ship_id=2):
    """PUT, PATCH or DELETE ship `ship_id`, with If-Match when given."""
    return item_write(client, auth, f"/api/ships/{ship_id}", method, if_match, STAR_DESTROYER, {"crew": 3})


def user_write(client, session, method, if_match=None, user_id=1):
    """PUT, PATCH or DELETE user `user_id` as `session`, with If-Match when given."""
    put_body = {"name": "put name", "password": "put password"}
    patch_body = {"name": "patched", "password": "patched"}
    return item_write(client, session, f"/api/users/{user_id}", method, if_match, put_body, patch_body)


SUCCESS = {"PUT": 200, "PATCH": 200, "DELETE": 204}


def assert_precondition_failed(result):
    assert result.status_code == 412, result.text
    assert result.json["error"] == PRECONDITION_FAILED
    assert isinstance(result.json["message"], str) and result.json["message"]


def assert_token_works(client, session):
    result = client.simulate_patch("/api/ships/1", json={}, headers=session.headers)
    assert result.status_code == 200, result.text


# --- ETag ------------------------------------------------------------------


def test_item_and_list_responses_have_a_quoted_strong_etag(client, subtests):
    for path in READ_PATHS:
        with subtests.test(path=path):
            tag = get(client, path).headers.get("ETag")

            assert tag is not None
            assert STRONG_ETAG.match(tag), tag


def test_etag_is_stable_while_nothing_changes(client, subtests):
    for path in READ_PATHS:
        with subtests.test(path=path):
            assert etag(client, path) == etag(client, path)


def test_different_resources_have_different_etags(client):
    tags = {etag(client, path) for path in (*READ_PATHS, "/api/ships/3", "/api/users/2")}

    assert len(tags) == len(READ_PATHS) + 2


def test_write_responses_carry_the_new_etag(client, auth, subtests):
    for method in ("PUT", "PATCH"):
        with subtests.test(method=method):
            result = ship_write(client, auth, method)

            assert result.status_code == 200, result.text
            assert result.headers["ETag"] == etag(client, "/api/ships/2")


# --- If-None-Match ---------------------------------------------------------


def test_if_none_match_with_the_current_etag_is_304_without_body(client, subtests):
    for path in READ_PATHS:
        with subtests.test(path=path):
            tag = etag(client, path)

            result = get(client, path, **{"If-None-Match": tag})

            assert result.status_code == 304
            assert result.content == b""
            assert result.headers["ETag"] == tag


def test_if_none_match_with_another_etag_is_200_with_body(client):
    result = get(client, "/api/ships/2", **{"If-None-Match": STALE})

    assert result.status_code == 200
    assert result.json == SHIP_2


def test_changed_ship_has_a_new_etag_and_answers_200(client, auth):
    old = etag(client, "/api/ships/2")
    ship_write(client, auth, "PUT")

    result = get(client, "/api/ships/2", **{"If-None-Match": old})

    assert result.status_code == 200
    assert result.json == {**STAR_DESTROYER, "id": 2}
    assert result.headers["ETag"] != old
    assert STRONG_ETAG.match(result.headers["ETag"])


def test_changed_list_has_a_new_etag_and_answers_200(client, auth):
    old = etag(client, "/api/ships")
    client.simulate_post("/api/ships", json=STAR_DESTROYER, headers=auth.headers)

    result = get(client, "/api/ships", **{"If-None-Match": old})

    assert result.status_code == 200
    assert len(result.json) == 16
    assert result.headers["ETag"] != old


def test_changed_user_has_a_new_etag_and_answers_200(client, auth):
    old = etag(client, "/api/users/1")
    client.simulate_patch("/api/users/1", json={"name": "renamed"}, headers=auth.headers)

    result = get(client, "/api/users/1", **{"If-None-Match": old})

    assert result.status_code == 200
    assert result.json == {"id": 1, "name": "renamed"}
    assert result.headers["ETag"] != old


# --- If-Match on ships -----------------------------------------------------


def test_ship_write_with_a_stale_if_match_is_412_and_changes_nothing(client, auth, subtests):
    stale = etag(client, "/api/ships/2")
    ship_write(client, auth, "PATCH")  # someone else changes the ship
    current = get(client, "/api/ships/2").json

    for method in ("PUT", "PATCH", "DELETE"):
        with subtests.test(method=method):
            result = ship_write(client, auth, method, if_match=stale)

            assert_precondition_failed(result)
            assert get(client, "/api/ships/2").json == current


def test_ship_write_with_an_unknown_if_match_is_412(client, auth, subtests):
    for method in ("PUT", "PATCH", "DELETE"):
        with subtests.test(method=method):
            assert_precondition_failed(ship_write(client, auth, method, if_match=STALE))
            assert get(client, "/api/ships/2").json == SHIP_2


def test_etag_from_a_write_response_is_a_valid_if_match(client, auth):
    tag = ship_write(client, auth, "PUT").headers["ETag"]

    result = ship_write(client, auth, "PATCH", if_match=tag)

    assert result.status_code == 200, result.text
    assert result.json["crew"] == 3


# --- If-Match that holds, on ships and users ------------------------------

# Every write method on both resources, each case on a fresh app.
WRITES = pytest.mark.parametrize(
    ("path", "method"),
    [(path, method) for path in ("/api/ships/2", "/api/users/1") for method in SUCCESS],
)


def write(client, auth, path, method, if_match=None):
    writer = ship_write if path.startswith("/api/ships/") else user_write
    return writer(client, auth, method, if_match=if_match)


def assert_written(client, path, method, result):
    assert result.status_code == SUCCESS[method], result.text
    assert get(client, path).status_code == (404 if method == "DELETE" else 200)


@WRITES
def test_write_with_the_current_if_match_succeeds(client, auth, path, method):
    assert_written(client, path, method, write(client, auth, path, method, if_match=etag(client, path)))


@WRITES
def test_write_with_if_match_star_succeeds_when_it_exists(client, auth, path, method):
    assert_written(client, path, method, write(client, auth, path, method, if_match="*"))


@WRITES
def test_write_without_if_match_works_as_before(client, auth, path, method):
    assert_written(client, path, method, write(client, auth, path, method))


# --- If-Match on users -----------------------------------------------------


def test_user_write_with_a_stale_if_match_is_412_and_changes_nothing(client, auth, login, subtests):
    stale = etag(client, "/api/users/1")
    client.simulate_patch("/api/users/1", json={"name": "renamed"}, headers=auth.headers)
    other = login("renamed", "password")

    for method in ("PUT", "PATCH", "DELETE"):
        with subtests.test(method=method):
            result = user_write(client, auth, method, if_match=stale)

            assert_precondition_failed(result)
            assert get(client, "/api/users/1").json == {"id": 1, "name": "renamed"}
            assert_token_works(client, other)  # the password did not change
    assert login("renamed", "password").access_token


def test_user_if_match_is_checked_against_the_public_representation(client, auth):
    # The ETag a client can see (GET /api/users/1) is the one If-Match takes.
    tag = get(client, "/api/users/1").headers["ETag"]

    result = user_write(client, auth, "PATCH", if_match=tag)

    assert result.status_code == 200, result.text
    assert result.json == {"id": 1, "name": "patched"}
