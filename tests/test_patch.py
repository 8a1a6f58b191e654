"""PATCH /api/ships/{id} and /api/users/{id} with JSON Merge Patch (issue 5)."""

from __future__ import annotations

import json

import pytest
from support.answers import assert_validation_error
from support.bodies import SHIP_2, STAR_DESTROYER

MERGE_PATCH = "application/merge-patch+json"

REQUIRED_SHIP_FIELDS = sorted(set(SHIP_2) - {"id"})
USER_1 = {"id": 1, "name": "user"}

MISSING_FIELD = ["Missing data for required field."]
UNKNOWN_FIELD = ["Unknown field."]
ID_MISMATCH = {"error": "Bad Request", "message": "Request data id has to match resource id."}
REVOKED = {"error": "Token has been revoked"}
MISSING_HEADER = {"error": "Missing Authorization Header"}


def patch(client, path, body, session=None, content_type=MERGE_PATCH):
    headers = {"Content-Type": content_type}
    if session is not None:
        headers.update(session.headers)
    return client.simulate_patch(path, body=json.dumps(body), headers=headers)


def ship_2(client) -> dict:
    return client.simulate_get("/api/ships/2").json


def user_1(client) -> dict:
    return client.simulate_get("/api/users/1").json


def token_status(client, session) -> tuple[int, dict | None]:
    """What a write that needs only a valid access token answers for `session`."""
    result = client.simulate_patch("/api/ships/1", json={}, headers=session.headers)
    return result.status_code, (result.json if result.status_code != 200 else None)


def assert_bad_request_naming(result, field):
    assert result.status_code == 400, result.text
    assert result.json["error"] == "Bad Request"
    assert list(result.json["message"]) == [field]


# --- ships -----------------------------------------------------------------


def test_patch_ship_changes_only_the_given_fields(client, auth):
    result = patch(client, "/api/ships/2", {"crew": 2, "roles": ["Scout"]}, auth)

    assert result.status_code == 200, result.text
    assert result.json == {**SHIP_2, "crew": 2, "roles": ["Scout"]}
    assert ship_2(client) == result.json


def test_patch_ship_with_an_empty_object_changes_nothing(client, auth):
    result = patch(client, "/api/ships/2", {}, auth)

    assert result.status_code == 200
    assert result.json == SHIP_2
    assert ship_2(client) == SHIP_2


def test_patch_ship_accepts_application_json(client, auth):
    result = patch(client, "/api/ships/2", {"crew": 4}, auth, content_type="application/json")

    assert result.status_code == 200, result.text
    assert ship_2(client) == {**SHIP_2, "crew": 4}


def test_patch_ship_with_another_content_type_is_415(client, auth):
    result = patch(client, "/api/ships/2", {"crew": 4}, auth, content_type="text/plain")

    assert result.status_code == 415
    assert ship_2(client) == SHIP_2


def test_patch_ship_with_null_on_a_required_field_is_400_missing(client, auth, subtests):
    for field in REQUIRED_SHIP_FIELDS:
        with subtests.test(field=field):
            result = patch(client, "/api/ships/2", {field: None}, auth)

            assert_validation_error(result, {field: MISSING_FIELD})
            assert ship_2(client) == SHIP_2


def test_patch_ship_with_an_unknown_field_is_400(client, auth):
    result = patch(client, "/api/ships/2", {"crew": 2, "hyperdrive": "Class 2"}, auth)

    assert_validation_error(result, {"hyperdrive": UNKNOWN_FIELD})
    assert ship_2(client) == SHIP_2


# A ship field of the wrong type, or a user field the rules refuse.
BAD_FIELD_VALUES = [
    *(
        ("/api/ships/2", field, value)
        for field, value in (
            ("crew", "2"),
            ("crew", True),
            ("length", 1.5),
            ("model", 7),
            ("affiliation", ["Empire"]),
            ("roles", "Scout"),
            ("roles", [1]),
            ("ship_class", {"name": "Starfighter"}),
        )
    ),
    *(
        ("/api/users/1", field, value)
        for field, value in (
            ("name", "x"),
            ("password", "abc"),
            ("name", "nul\x00"),
        )
    ),
]


@pytest.mark.parametrize(("path", "field", "value"), BAD_FIELD_VALUES)
def test_patch_with_a_bad_field_value_is_400_naming_the_field(client, auth, path, field, value):
    result = patch(client, path, {field: value}, auth)

    assert_bad_request_naming(result, field)
    assert client.simulate_get(path).json == {"/api/ships/2": SHIP_2, "/api/users/1": USER_1}[path]


def test_patch_ship_with_an_invalid_value_is_400(client, auth):
    result = patch(client, "/api/ships/2", {"crew": 0, "model": ""}, auth)

    assert result.status_code == 400
    assert set(result.json["message"]) == {"crew", "model"}
    assert ship_2(client) == SHIP_2


NON_OBJECT_BODIES = [
    *(("/api/ships/2", body) for body in ([], [{"crew": 2}], "crew", 2, True, None)),
    *(("/api/users/1", body) for body in ([], ["renamed"], "renamed", 1, None)),
]


@pytest.mark.parametrize(("path", "body"), NON_OBJECT_BODIES)
def test_patch_with_a_non_object_body_is_400_and_changes_nothing(client, auth, path, body):
    result = patch(client, path, body, auth)

    assert result.status_code == 400, result.text
    assert result.json["error"] == "Bad Request"
    assert client.simulate_get(path).json == {"/api/ships/2": SHIP_2, "/api/users/1": USER_1}[path]


def test_patch_ship_with_a_deeply_nested_value_is_400_not_500(client, auth):
    depth = 1020  # just under orjson's nesting limit, past Python's recursion limit
    body = '{"model":' + '{"a":' * depth + "1" + "}" * depth + "}"
    result = client.simulate_patch(
        "/api/ships/2", body=body, headers={**auth.headers, "Content-Type": MERGE_PATCH}
    )

    assert_bad_request_naming(result, "model")
    assert ship_2(client) == SHIP_2


def test_patch_ship_with_a_matching_id_is_200(client, auth):
    result = patch(client, "/api/ships/2", {"id": 2, "crew": 2}, auth)

    assert result.status_code == 200
    assert result.json == {**SHIP_2, "crew": 2}


def test_patch_ship_with_another_id_is_400_mismatch(client, auth):
    result = patch(client, "/api/ships/2", {"id": 3, "crew": 2}, auth)

    assert result.status_code == 400
    assert result.json == ID_MISMATCH
    assert ship_2(client) == SHIP_2
    assert client.simulate_get("/api/ships/3").json["crew"] == 1


def test_patch_ship_without_token_is_401(client):
    result = patch(client, "/api/ships/2", {"crew": 2})

    assert result.status_code == 401
    assert result.json == MISSING_HEADER
    assert ship_2(client) == SHIP_2


def test_patch_ship_with_refresh_token_is_422(client, auth):
    headers = {"Content-Type": MERGE_PATCH, **auth.refresh_headers}
    result = client.simulate_patch("/api/ships/2", body='{"crew": 2}', headers=headers)

    assert result.status_code == 422
    assert ship_2(client) == SHIP_2


def test_patch_missing_ship_is_404(client, auth, subtests):
    for ship_id in (16, 999):
        with subtests.test(ship_id=ship_id):
            result = patch(client, f"/api/ships/{ship_id}", {"crew": 2}, auth)

            assert result.status_code == 404
            assert result.json == {"error": "Not Found"}


# --- users -----------------------------------------------------------------


def test_patch_own_name_renames(client, auth, login):
    result = patch(client, "/api/users/1", {"name": "renamed"}, auth)

    assert result.status_code == 200, result.text
    assert result.json == {"id": 1, "name": "renamed"}
    assert user_1(client) == {"id": 1, "name": "renamed"}
    assert login("renamed", "password").access_token


def test_patch_name_keeps_the_users_other_tokens_working(client, auth, login):
    other = login()

    patch(client, "/api/users/1", {"name": "renamed"}, auth)

    assert token_status(client, other) == (200, None)
    assert token_status(client, auth) == (200, None)


def test_patch_password_revokes_the_users_other_tokens(client, auth, login):
    other = login()

    result = patch(client, "/api/users/1", {"password": "new password"}, auth)

    assert result.status_code == 200, result.text
    assert result.json == USER_1
    assert token_status(client, other) == (401, REVOKED)


def test_patch_password_keeps_the_token_that_made_the_change_working(client, auth):
    patch(client, "/api/users/1", {"password": "new password"}, auth)

    assert token_status(client, auth) == (200, None)


def test_patch_password_changes_the_login_password(client, auth, login):
    patch(client, "/api/users/1", {"password": "new password"}, auth)

    assert login("user", "new password").access_token
    result = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    assert result.status_code == 401


def test_patch_password_leaves_other_users_tokens_working(client, auth, login):
    guest = login("guest", "guest")

    patch(client, "/api/users/1", {"password": "new password"}, auth)

    assert token_status(client, guest) == (200, None)


def test_patch_user_never_shows_the_password(client, auth):
    result = patch(client, "/api/users/1", {"name": "renamed", "password": "new password"}, auth)

    assert result.json == {"id": 1, "name": "renamed"}
    assert "password" not in result.text.lower()


def test_patch_user_with_null_on_a_required_field_is_400_missing(client, auth, login, subtests):
    other = login()
    for field in ("name", "password"):
        with subtests.test(field=field):
            result = patch(client, "/api/users/1", {field: None}, auth)

            assert_validation_error(result, {field: MISSING_FIELD})
            assert user_1(client) == USER_1
            assert token_status(client, other) == (200, None)


def test_patch_user_with_an_unknown_field_is_400(client, auth):
    result = patch(client, "/api/users/1", {"name": "renamed", "roles": ["admin"]}, auth)

    assert_validation_error(result, {"roles": UNKNOWN_FIELD})
    assert user_1(client) == USER_1


def test_patch_user_with_a_wrong_type_is_400_naming_the_field(client, auth, subtests):
    for field, value in (("name", 3), ("name", ["renamed"]), ("password", 1234), ("password", True)):
        with subtests.test(field=field, value=value):
            result = patch(client, "/api/users/1", {field: value}, auth)

            assert_bad_request_naming(result, field)
            assert user_1(client) == USER_1


def test_patch_user_with_a_matching_id_is_200(client, auth):
    result = patch(client, "/api/users/1", {"id": 1, "name": "renamed"}, auth)

    assert result.status_code == 200
    assert result.json == {"id": 1, "name": "renamed"}


def test_patch_user_with_another_id_is_400_mismatch(client, auth):
    result = patch(client, "/api/users/1", {"id": 2, "name": "renamed"}, auth)

    assert result.status_code == 400
    assert result.json == ID_MISMATCH
    assert user_1(client) == USER_1


def test_patch_user_to_a_taken_name_is_400_already_exists(client, auth):
    result = patch(client, "/api/users/1", {"name": "guest"}, auth)

    assert result.status_code == 400
    assert result.json == {"error": "Bad Request", "message": "User already exists."}
    assert user_1(client) == USER_1


def test_patch_user_accepts_application_json(client, auth):
    result = patch(client, "/api/users/1", {"name": "renamed"}, auth, content_type="application/json")

    assert result.status_code == 200
    assert user_1(client) == {"id": 1, "name": "renamed"}


def test_patch_user_without_token_is_401(client):
    result = patch(client, "/api/users/1", {"name": "renamed"})

    assert result.status_code == 401
    assert result.json == MISSING_HEADER
    assert user_1(client) == USER_1


def test_patch_another_user_is_403_and_changes_nothing(client, auth, login):
    result = patch(client, "/api/users/2", {"name": "hijacked", "password": "hijacked"}, auth)

    assert result.status_code == 403
    assert result.json == {"error": "Forbidden"}
    assert client.simulate_get("/api/users/2").json == {"id": 2, "name": "guest"}
    assert login("guest", "guest").access_token


# --- merge-patch is for PATCH only -----------------------------------------


def test_post_and_put_with_merge_patch_content_type_are_415(client, auth, subtests):
    cases = [
        ("POST", "/api/ships", STAR_DESTROYER),
        ("PUT", "/api/ships/2", STAR_DESTROYER),
        ("POST", "/api/users", {"name": "new user", "password": "secret"}),
        ("PUT", "/api/users/1", {"name": "renamed", "password": "password"}),
    ]
    for method, path, body in cases:
        with subtests.test(method=method, path=path):
            headers = {"Content-Type": MERGE_PATCH, **auth.headers}

            result = client.simulate_request(method, path, body=json.dumps(body), headers=headers)

            assert result.status_code == 415, result.text
            assert result.json["error"] == "Unsupported Media Type"
    assert len(client.simulate_get("/api/ships").json) == 15
    assert client.simulate_get("/api/users").json == [USER_1, {"id": 2, "name": "guest"}]
    assert ship_2(client) == SHIP_2
