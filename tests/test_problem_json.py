"""RFC 9457 problem details on request (issue 16, item 5): a client that
prefers application/problem+json gets one; everyone else keeps the example's
error bodies exactly."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

import falcon.testing
import pytest
from conftest import server_env
from support.bodies import STAR_DESTROYER

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call
from fleet_api.app import create_app
from fleet_api.errors import ABOUT_BLANK, INVALID_TOKEN, PROBLEM_TYPES, QUOTA_EXCEEDED, VALIDATION_FAILED

PROBLEM = "application/problem+json"


def problem(result, status: int) -> dict:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"] == PROBLEM
    body = result.json
    assert body["status"] == status
    assert body["instance"] == result.headers["X-Request-ID"]
    assert body["type"] in PROBLEM_TYPES
    assert isinstance(body["title"], str) and body["title"]
    return body


# --- content negotiation ----------------------------------------------------------


@pytest.mark.parametrize(
    "accept, wants_problem",
    [
        (PROBLEM, True),
        ("Application/Problem+JSON", True),  # media types are case-insensitive
        (f"{PROBLEM}, application/json;q=0.5", True),
        (f"application/json;q=0.9, {PROBLEM}", True),
        (f"{PROBLEM}, */*;q=0.1", True),
        ("application/*;q=0.2, application/problem+json;q=0.3", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/*", False),
        # a tie goes to the example's JSON
        (f"application/json, {PROBLEM}", False),
        (f"{PROBLEM}, application/json", False),
        (f"{PROBLEM};q=0.5, */*", False),
        (f"{PROBLEM};q=0", False),
        ("text/html", False),
        ("this is not a media range;;;", False),
    ],
    ids=lambda value: repr(value),
)
def test_problem_json_only_when_the_client_prefers_it(client, accept, wants_problem):
    headers = {"Accept": accept} if accept is not None else {}

    result = client.simulate_get("/api/ships/999", headers=headers)

    assert result.status_code == 404
    assert "Accept" in result.headers.get("Vary", "")
    if wants_problem:
        assert problem(result, 404) == {
            "type": ABOUT_BLANK,
            "title": "Not Found",
            "status": 404,
            "instance": result.headers["X-Request-ID"],
        }
    else:
        assert result.headers["Content-Type"] == "application/json"
        assert result.json == {"error": "Not Found"}


# --- shapes -----------------------------------------------------------------------


def test_validation_errors_name_each_field(client, auth):
    headers = {**auth.headers, "Accept": PROBLEM}

    result = client.simulate_post(
        "/api/ships", json={"name": "", "crew": "many", "surprise": 1}, headers=headers
    )

    body = problem(result, 400)
    assert body["type"] == VALIDATION_FAILED
    fields = {entry["field"] for entry in body["errors"]}
    assert {"name", "crew", "surprise", "model", "length"} <= fields
    assert all(isinstance(entry["detail"], str) and entry["detail"] for entry in body["errors"])
    # the same request without the header: the example's shape, every field again
    plain = client.simulate_post(
        "/api/ships", json={"name": "", "crew": "many", "surprise": 1}, headers=auth.headers
    )
    assert plain.json["error"] == "Bad Request"
    assert set(plain.json["message"]) == fields
    assert sum(len(messages) for messages in plain.json["message"].values()) == len(body["errors"])


def test_a_list_items_errors_name_the_item_and_keep_its_message(client, auth):
    """Plain JSON keys a list's bad items by index, {"roles": {"1": [...]}}:
    problem+json names the item, `roles.1`, with the message itself."""
    ship = {
        "affiliation": "Empire",
        "category": "Starfighters",
        "crew": 1,
        "length": 7,
        "manufacturer": "Sienar",
        "model": "TIE",
        "roles": ["ok", 5],
        "ship_class": "Starfighter",
    }
    plain = client.simulate_post("/api/ships", json=ship, headers=auth.headers)
    result = client.simulate_post("/api/ships", json=ship, headers={**auth.headers, "Accept": PROBLEM})

    (message,) = plain.json["message"]["roles"]["1"]
    assert problem(result, 400)["errors"] == [{"field": "roles.1", "detail": message}]


def test_bad_query_parameters_are_field_errors_too(client):
    result = client.simulate_get(
        "/api/ships", params={"limit": "-3", "colour": "red"}, headers={"Accept": PROBLEM}
    )

    body = problem(result, 400)
    assert body["type"] == VALIDATION_FAILED
    assert {entry["field"] for entry in body["errors"]} == {"limit", "colour"}


def test_token_errors_keep_their_message_as_detail(client, auth):
    missing = client.simulate_post("/api/ships", json={}, headers={"Accept": PROBLEM})
    malformed = client.simulate_post(
        "/api/ships", json={}, headers={"Accept": PROBLEM, "Authorization": "Bearer not.a.token"}
    )

    body = problem(missing, 401)
    assert body["type"] == INVALID_TOKEN
    assert body["detail"] == "Missing Authorization Header"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert problem(malformed, 422)["type"] == INVALID_TOKEN
    # without the header, the token layer's one-member body
    assert client.simulate_post("/api/ships", json={}).json == {"error": "Missing Authorization Header"}


def test_handler_errors_carry_their_message_as_detail(client, auth):
    result = client.simulate_put(
        "/api/ships/2", json={**STAR_DESTROYER, "id": 3}, headers={**auth.headers, "Accept": PROBLEM}
    )

    body = problem(result, 400)
    assert body["type"] == ABOUT_BLANK and body["title"] == "Bad Request"
    assert body["detail"] == "Request data id has to match resource id."


def test_status_titles_are_rfc_9110_phrases(client):
    big = client.simulate_post(
        "/api/users", body=b"x" * (70 * 1024), headers={"Accept": PROBLEM, "Content-Type": "application/json"}
    )
    method = client.simulate_request("TRACE", "/api/ships", headers={"Accept": PROBLEM})

    assert problem(big, 413)["title"] == "Content Too Large"
    assert problem(method, 405)["title"] == "Method Not Allowed"
    assert "Allow" in method.headers


def test_throttled_login_names_the_violated_policy(settings, store):
    client = falcon.testing.TestClient(
        create_app(dataclasses.replace(settings, login_user_limit=2), store=store)
    )
    for _ in range(2):
        client.simulate_post("/auth/login", json={"username": "user", "password": "wrong"})

    result = client.simulate_post(
        "/auth/login", json={"username": "user", "password": "password"}, headers={"Accept": PROBLEM}
    )

    body = problem(result, 429)
    assert body["type"] == QUOTA_EXCEEDED
    assert body["violated-policies"] == ["user"]
    assert int(result.headers["Retry-After"]) > 0


def test_500_is_a_problem_with_the_request_id(client, store, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("the cellar key is under the mat")

    monkeypatch.setattr(store, "find_ships", explode)

    result = client.simulate_get("/api/ships", headers={"Accept": PROBLEM, "X-Request-ID": "trace-500"})

    body = problem(result, 500)
    assert body == {
        "type": ABOUT_BLANK,
        "title": "Internal Server Error",
        "status": 500,
        "instance": "trace-500",
    }


def test_every_problem_type_is_documented_in_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for problem_type in PROBLEM_TYPES:
        assert f"`{problem_type}`" in readme, problem_type


def test_problem_json_over_real_gunicorn():
    with GunicornServer(workers=2, env=server_env()) as server:
        request = urllib.request.Request(f"{server.url}/api/ships/12345", headers={"Accept": PROBLEM})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        plain = call("GET", f"{server.url}/api/ships/12345")

    err = raised.value
    assert err.code == 404
    assert err.headers["Content-Type"] == PROBLEM
    body = json.loads(err.read())
    assert body == {
        "type": ABOUT_BLANK,
        "title": "Not Found",
        "status": 404,
        "instance": err.headers["X-Request-ID"],
    }
    assert plain.status == 404 and plain.json == {"error": "Not Found"}
