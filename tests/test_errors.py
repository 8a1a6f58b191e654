"""Every error, Falcon's own included, is JSON {"error": <reason>, "message": ...},
with no message when there is nothing to add (issue 2)."""

from __future__ import annotations

import json

import falcon.testing
import pytest
from support.bodies import STAR_DESTROYER

from fleet_api.app import create_app

INTERNAL = "the cellar key is under the mat"


def assert_json_error(result, status, error):
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json["error"] == error
    assert set(result.json) <= {"error", "message"}


def json_write_routes(auth):
    """(method, path, headers) of every route that reads a JSON object body."""
    return [
        ("POST", "/api/users", {}),
        ("PUT", "/api/users/1", auth.headers),
        ("POST", "/api/ships", auth.headers),
        ("PUT", "/api/ships/2", auth.headers),
    ]


# --- 404 -------------------------------------------------------------------


def test_root_and_api_root_are_404_json_without_message(client, subtests):
    for path in ("/", "/api", "/api/"):
        with subtests.test(path=path):
            result = client.simulate_get(path)

            assert_json_error(result, 404, "Not Found")
            assert result.json == {"error": "Not Found"}


def test_unknown_route_is_404_json_without_message(client, subtests):
    for path in ("/auth", "/nowhere", "/api/planets", "/api/ships/1/crew", "/static/x.css"):
        with subtests.test(path=path):
            result = client.simulate_get(path)

            assert_json_error(result, 404, "Not Found")
            assert result.json == {"error": "Not Found"}


def test_writing_to_the_api_root_is_404(client, subtests):
    for method in ("POST", "PUT", "DELETE"):
        with subtests.test(method=method):
            result = client.simulate_request(method, "/api/")

            assert result.status_code == 404
            assert result.json == {"error": "Not Found"}


# --- 405 -------------------------------------------------------------------


WRONG_METHODS = [
    ("DELETE", "/api/ships", {"GET", "POST"}),
    ("PUT", "/api/ships", {"GET", "POST"}),
    ("POST", "/api/ships/1", {"GET", "PUT", "PATCH", "DELETE"}),
    ("PATCH", "/api/ships", {"GET", "POST"}),
    ("DELETE", "/api/users", {"GET", "POST"}),
    ("POST", "/api/users/1", {"GET", "PUT", "PATCH", "DELETE"}),
    ("POST", "/health", {"GET"}),
    ("GET", "/auth/login", {"POST"}),
    ("GET", "/auth/refresh", {"POST"}),
    ("POST", "/auth/logout", {"DELETE"}),
    ("GET", "/auth/logout2", {"DELETE"}),
]


def test_wrong_method_is_405_json_with_allow_header(client, subtests):
    for method, path, allowed in WRONG_METHODS:
        with subtests.test(method=method, path=path):
            result = client.simulate_request(method, path)

            assert_json_error(result, 405, "Method Not Allowed")
            assert result.json == {"error": "Method Not Allowed"}
            allow = {m.strip() for m in result.headers["Allow"].split(",")}
            assert allowed <= allow
            assert method not in allow


# --- request bodies --------------------------------------------------------


def test_non_json_body_is_415_json(client, auth, subtests):
    for method, path, headers in json_write_routes(auth):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            with subtests.test(method=method, path=path, content_type=content_type):
                result = client.simulate_request(
                    method, path, body="name=x", content_type=content_type, headers=headers
                )

                assert_json_error(result, 415, "Unsupported Media Type")


@pytest.mark.parametrize("body", ['{"name": "new', ""], ids=["malformed", "empty"])
def test_a_body_that_is_not_json_is_400_json(client, auth, subtests, body):
    for method, path, headers in json_write_routes(auth):
        with subtests.test(method=method, path=path):
            result = client.simulate_request(
                method, path, body=body, content_type="application/json", headers=headers
            )

            assert_json_error(result, 400, "Bad Request")
            assert isinstance(result.json.get("message"), str)


def test_malformed_json_login_is_400_json(client):
    result = client.simulate_post(
        "/auth/login", body='{"username": "user", "password": ', content_type="application/json"
    )

    assert_json_error(result, 400, "Bad Request")


def test_malformed_json_changes_nothing(client, auth):
    client.simulate_put(
        "/api/ships/2", body='{"crew": 5', content_type="application/json", headers=auth.headers
    )

    assert client.simulate_get("/api/ships/2").json["crew"] == 1


# JSON that is not an object: arrays (of nothing, of a user, of a ship) and scalars.
NOT_AN_OBJECT = {
    "array": ("[]", '[{"name": "new user", "password": "secret"}]', f"[{json.dumps(STAR_DESTROYER)}]"),
    "scalar": ('"hello"', "42", "true", "null"),
}


@pytest.mark.parametrize("bodies", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT)
def test_json_body_that_is_not_an_object_is_400_invalid_input_type(client, auth, subtests, bodies):
    for method, path, headers in json_write_routes(auth):
        for body in bodies:
            with subtests.test(method=method, path=path, body=body):
                result = client.simulate_request(
                    method, path, body=body, content_type="application/json", headers=headers
                )

                assert result.status_code == 400
                assert result.json == {
                    "error": "Bad Request",
                    "message": {"_schema": ["Invalid input type."]},
                }


def test_json_array_login_is_400_missing(client):
    result = client.simulate_post("/auth/login", json=[{"username": "user", "password": "password"}])

    assert result.status_code == 400
    assert result.json == {"error": "Bad Request", "message": "Username or password missing."}


# --- 403 / 500 ---------------------------------------------------------------


def test_forbidden_is_json_without_message(client, login):
    guest = login("guest", "guest")

    result = client.simulate_delete("/api/users/1", headers=guest.headers)

    assert_json_error(result, 403, "Forbidden")
    assert result.json == {"error": "Forbidden"}


def _explode(*args, **kwargs):
    raise RuntimeError(INTERNAL)


def test_unexpected_exception_on_read_is_500_json_without_internals(client, store, monkeypatch):
    monkeypatch.setattr(store, "find_ships", _explode)

    result = client.simulate_get("/api/ships")

    assert_json_error(result, 500, "Internal Server Error")
    assert result.json == {"error": "Internal Server Error"}
    assert INTERNAL not in result.text
    assert "RuntimeError" not in result.text
    assert "Traceback" not in result.text


def test_unexpected_exception_on_write_is_500_json_without_internals(client, auth, store, monkeypatch):
    monkeypatch.setattr(store, "create_ship", _explode)

    result = client.simulate_post("/api/ships", json=STAR_DESTROYER, headers=auth.headers)

    assert result.status_code == 500
    assert result.json == {"error": "Internal Server Error"}
    assert INTERNAL not in result.text


def test_unexpected_exception_in_the_token_check_is_500_json(settings, store, monkeypatch):
    # A store whose token lookup fails, handed to the app factory.
    monkeypatch.setattr(store, "token_subject", _explode)
    client = falcon.testing.TestClient(create_app(settings, store=store))
    tokens = client.simulate_post("/auth/login", json={"username": "user", "password": "password"}).json

    result = client.simulate_post(
        "/api/ships", json=STAR_DESTROYER, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    assert result.status_code == 500
    assert result.json == {"error": "Internal Server Error"}
    assert INTERNAL not in result.text


def test_error_bodies_have_sorted_keys_as_jsonify_sends_them(client):
    result = client.simulate_post("/api/users", json={"name": -1, "admin": True})

    assert result.status_code == 400
    assert result.text == (
        '{"error":"Bad Request","message":{"admin":["Unknown field."],'
        '"name":["Not a valid string."],"password":["Missing data for required field."]}}'
    )
