"""GET/POST /api/users and GET/PUT/DELETE /api/users/{id} (issue 2)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from support.answers import assert_validation_error

SEED_USERS = [{"id": 1, "name": "user"}, {"id": 2, "name": "guest"}]
MISSING_FIELD = ["Missing data for required field."]
NOT_A_STRING = ["Not a valid string."]
UNKNOWN_FIELD = ["Unknown field."]
FORBIDDEN = {"error": "Forbidden"}
ALREADY_EXISTS = {"error": "Bad Request", "message": "User already exists."}
ID_MISMATCH = {"error": "Bad Request", "message": "Request data id has to match resource id."}


def create_user(client, name="new user", password="secret"):
    return client.simulate_post("/api/users", json={"name": name, "password": password})


def update_user(client, session, user_id=1, **body):
    body = {"name": "user", "password": "password", **body}
    return client.simulate_put(f"/api/users/{user_id}", json=body, headers=session.headers)


def assert_no_password(body):
    text = repr(body).lower()
    assert "password" not in text
    assert "scrypt" not in text


# --- GET -------------------------------------------------------------------


def test_list_users_returns_id_and_name_of_every_user(client):
    result = client.simulate_get("/api/users")

    assert result.status_code == 200
    assert result.json == SEED_USERS


def test_list_users_needs_no_token(client):
    assert client.simulate_get("/api/users").status_code == 200


def test_list_users_never_shows_a_password(client):
    create_user(client)

    result = client.simulate_get("/api/users")

    assert all(set(user) == {"id", "name"} for user in result.json)
    assert_no_password(result.text)


def test_get_user_returns_id_and_name(client):
    result = client.simulate_get("/api/users/1")

    assert result.status_code == 200
    assert result.json == {"id": 1, "name": "user"}


def test_get_user_never_shows_a_password(client):
    for user_id in (1, 2):
        assert_no_password(client.simulate_get(f"/api/users/{user_id}").text)


# A missing ship or user: test_not_found.py.


# --- POST ------------------------------------------------------------------


def test_create_user_is_201_with_id_and_name(client):
    result = create_user(client, "new user", "secret")

    assert result.status_code == 201
    assert result.json == {"id": 3, "name": "new user"}


def test_create_user_needs_no_token(client):
    assert create_user(client).status_code == 201


def test_create_user_sets_an_absolute_location(client):
    result = create_user(client)

    location = urlsplit(result.headers["Location"])
    assert location.scheme in ("http", "https")
    assert location.netloc
    assert location.path == f"/api/users/{result.json['id']}"


def test_created_user_is_found_at_its_location(client):
    result = create_user(client)

    found = client.simulate_get(urlsplit(result.headers["Location"]).path)
    assert found.status_code == 200
    assert found.json == result.json


def test_created_user_appears_in_the_list(client):
    create_user(client, "new user")

    assert client.simulate_get("/api/users").json == [*SEED_USERS, {"id": 3, "name": "new user"}]


def test_created_user_can_log_in(client, login):
    create_user(client, "new user", "secret")

    assert login("new user", "secret").access_token


def test_create_user_never_shows_the_password(client):
    result = create_user(client, "new user", "a very secret password")

    assert "a very secret password" not in result.text
    assert_no_password(result.json)


def test_create_user_stores_only_a_scrypt_hash(client, store):
    user_id = create_user(client, "new user", "a very secret password").json["id"]

    stored = store.get_user(user_id).password_hash
    assert stored.startswith("scrypt$")
    assert "a very secret password" not in stored


def test_seed_passwords_are_stored_as_scrypt_hashes(client, store):
    for user_id, password in ((1, "password"), (2, "guest")):
        stored = store.get_user(user_id).password_hash
        assert stored.startswith("scrypt$")
        assert password not in stored.split("$")


def test_create_user_with_a_taken_name_is_400_already_exists(client):
    result = create_user(client, "user", "another password")

    assert result.status_code == 400
    assert result.json == ALREADY_EXISTS


def test_create_user_with_a_taken_name_changes_nothing(client, login):
    create_user(client, "guest", "another password")

    assert client.simulate_get("/api/users").json == SEED_USERS
    assert login("guest", "guest").access_token


def test_create_user_without_fields_lists_both_as_missing(client):
    result = client.simulate_post("/api/users", json={})

    assert_validation_error(result, {"name": MISSING_FIELD, "password": MISSING_FIELD})


def test_create_user_without_password_is_400(client):
    result = client.simulate_post("/api/users", json={"name": "new user"})

    assert_validation_error(result, {"password": MISSING_FIELD})


def test_create_user_with_a_one_character_name_is_400(client):
    result = create_user(client, name="x")

    assert_validation_error(result, {"name": ["Shorter than minimum length 2."]})


def test_create_user_with_a_two_character_name_is_201(client):
    assert create_user(client, name="xy").status_code == 201


def test_create_user_with_a_three_character_password_is_400(client):
    result = create_user(client, password="abc")

    assert_validation_error(result, {"password": ["Shorter than minimum length 4."]})


def test_create_user_with_a_four_character_password_is_201(client):
    assert create_user(client, password="abcd").status_code == 201


def test_create_user_with_non_string_fields_is_400(client):
    result = client.simulate_post("/api/users", json={"name": 12, "password": ["secret"]})

    assert_validation_error(result, {"name": NOT_A_STRING, "password": NOT_A_STRING})


def test_create_user_reports_every_bad_field_at_once(client):
    result = client.simulate_post("/api/users", json={"name": "x", "colour": "red"})

    assert_validation_error(
        result,
        {
            "name": ["Shorter than minimum length 2."],
            "password": MISSING_FIELD,
            "colour": UNKNOWN_FIELD,
        },
    )


def test_create_user_with_an_unknown_field_is_400(client):
    result = client.simulate_post(
        "/api/users", json={"name": "new user", "password": "secret", "admin": True}
    )

    assert_validation_error(result, {"admin": UNKNOWN_FIELD})


def test_create_user_with_an_id_is_a_bare_400(client):
    result = client.simulate_post("/api/users", json={"id": 7, "name": "new user", "password": "secret"})

    assert result.status_code == 400
    assert result.json == {"error": "Bad Request"}
    assert client.simulate_get("/api/users").json == SEED_USERS


def test_create_user_with_an_id_and_a_taken_name_is_400_user_already_exists(client):
    # The example checks the name before its db.add_user refuses the id.
    result = client.simulate_post("/api/users", json={"id": 7, "name": "user", "password": "secret"})

    assert result.status_code == 400
    assert result.json == {"error": "Bad Request", "message": "User already exists."}


def test_failed_create_user_creates_nothing(client):
    create_user(client, name="x")

    assert client.simulate_get("/api/users").json == SEED_USERS


# --- PUT -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fancy new name", "user"], ids=["new_name", "keeping_own_name"])
def test_update_own_user_is_200_with_id_and_name(client, auth, name):
    result = update_user(client, auth, name=name, password="more secret")

    assert result.status_code == 200
    assert result.json == {"id": 1, "name": name}


def test_update_user_is_visible_afterwards(client, auth):
    update_user(client, auth, name="fancy new name")

    assert client.simulate_get("/api/users/1").json == {"id": 1, "name": "fancy new name"}


def test_update_user_changes_the_login_name(client, auth, login):
    update_user(client, auth, name="renamed")

    assert login("renamed", "password").access_token
    old = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    assert old.status_code == 401


def test_update_user_never_shows_the_password(client, auth):
    result = update_user(client, auth, password="more secret")

    assert "more secret" not in result.text
    assert_no_password(result.json)


def test_update_user_stores_only_a_scrypt_hash(client, auth, store):
    update_user(client, auth, password="more secret")

    stored = store.get_user(1).password_hash
    assert stored.startswith("scrypt$")
    assert "more secret" not in stored


def test_update_user_with_matching_id_in_body_is_200(client, auth):
    result = update_user(client, auth, id=1, name="renamed")

    assert result.status_code == 200
    assert result.json == {"id": 1, "name": "renamed"}


def test_update_user_with_another_id_in_body_is_400_mismatch(client, auth):
    result = update_user(client, auth, id=2, name="renamed")

    assert result.status_code == 400
    assert result.json == ID_MISMATCH
    assert client.simulate_get("/api/users/2").json == {"id": 2, "name": "guest"}
    assert client.simulate_get("/api/users/1").json == {"id": 1, "name": "user"}


def test_update_user_to_a_taken_name_is_400_already_exists(client, auth):
    result = update_user(client, auth, name="guest")

    assert result.status_code == 400
    assert result.json == ALREADY_EXISTS
    assert client.simulate_get("/api/users").json == SEED_USERS


def test_update_user_validates_the_body(client, auth):
    result = client.simulate_put("/api/users/1", json={"name": "x", "extra": 1}, headers=auth.headers)

    assert_validation_error(
        result,
        {
            "name": ["Shorter than minimum length 2."],
            "password": MISSING_FIELD,
            "extra": UNKNOWN_FIELD,
        },
    )


def test_update_user_without_token_is_401(client):
    result = client.simulate_put("/api/users/1", json={"name": "renamed", "password": "password"})

    assert result.status_code == 401
    assert result.json == {"error": "Missing Authorization Header"}
    assert client.simulate_get("/api/users/1").json == {"id": 1, "name": "user"}


def test_update_user_with_refresh_token_is_422(client, auth):
    result = client.simulate_put(
        "/api/users/1", json={"name": "renamed", "password": "password"}, headers=auth.refresh_headers
    )

    assert result.status_code == 422
    assert result.json == {"error": "Only access tokens are allowed"}


def test_update_another_user_is_403(client, login):
    guest = login("guest", "guest")

    result = update_user(client, guest, user_id=1, name="hijacked", password="hijacked")

    assert result.status_code == 403
    assert result.json == FORBIDDEN
    assert client.simulate_get("/api/users/1").json == {"id": 1, "name": "user"}
    assert login("user", "password").access_token


def test_update_a_missing_user_is_403_for_someone_else(client, auth):
    result = update_user(client, auth, user_id=99)

    assert result.status_code == 403
    assert result.json == FORBIDDEN


# --- DELETE ----------------------------------------------------------------


# 204 without a body, then gone: test_delete.py, for ships and users alike.


def test_deleted_user_cannot_log_in(client, auth):
    client.simulate_delete("/api/users/1", headers=auth.headers)

    result = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    assert result.status_code == 401


def test_deleted_users_name_can_be_taken_again(client, auth):
    client.simulate_delete("/api/users/1", headers=auth.headers)

    assert create_user(client, "user", "password").status_code == 201


def test_delete_another_user_is_403(client, login):
    guest = login("guest", "guest")

    result = client.simulate_delete("/api/users/1", headers=guest.headers)

    assert result.status_code == 403
    assert result.json == FORBIDDEN
    assert client.simulate_get("/api/users/1").status_code == 200


def test_delete_user_without_token_is_401(client):
    result = client.simulate_delete("/api/users/1")

    assert result.status_code == 401
    assert result.json == {"error": "Missing Authorization Header"}
    assert client.simulate_get("/api/users/1").status_code == 200


def test_delete_user_with_refresh_token_is_422(client, auth):
    result = client.simulate_delete("/api/users/1", headers=auth.refresh_headers)

    assert result.status_code == 422
    assert client.simulate_get("/api/users/1").status_code == 200


def test_user_ids_are_not_reused_after_delete(client, login):
    third = create_user(client, "third", "secret").json["id"]
    session = login("third", "secret")
    assert client.simulate_delete(f"/api/users/{third}", headers=session.headers).status_code == 204

    fourth = create_user(client, "fourth", "secret").json["id"]

    assert third == 3
    assert fourth == 4


def test_seed_user_ids_are_not_reused_after_delete(client, login):
    guest = login("guest", "guest")
    client.simulate_delete("/api/users/2", headers=guest.headers)

    assert create_user(client, "new user").json["id"] == 3
