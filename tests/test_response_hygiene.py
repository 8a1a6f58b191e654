"""Response headers every client can rely on, and error bodies that give
nothing away (issue 6, item 4).

test_auth.py already checks `Cache-Control: no-store` on login and refresh,
and test_errors.py that a 500 body is bare; this file adds the rest.
"""

from __future__ import annotations

import logging
import re

import pytest
from support.bodies import TIE_FIGHTER as SHIP

SECRET = "secret-internal-detail"
FRESH_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")  # per-process random prefix, counter
# Words that would betray the implementation in an error body.
INTERNALS = (
    "Traceback",
    'File "',
    ".py",
    "/work",
    "site-packages",
    "falcon",
    "orjson",
    "pydantic",
    "sqlite",
    "psycopg",
    "Exception",
    "Error:",
    SECRET,
)


def _explode(*args, **kwargs):
    raise RuntimeError(SECRET)


def responses(client, auth):
    """name -> a response: successes and every kind of error the app makes."""
    return {
        "200 list": client.simulate_get("/api/ships"),
        "200 login": client.simulate_post("/auth/login", json={"username": "user", "password": "password"}),
        "201 create": client.simulate_post("/api/ships", json=SHIP, headers=auth.headers),
        "204 delete": client.simulate_delete("/api/ships/1", headers=auth.headers),
        "400 missing": client.simulate_post("/auth/login", json={}),
        "400 malformed": client.simulate_post(
            "/api/users", body=b'{"name": ', content_type="application/json"
        ),
        "400 validation": client.simulate_post("/api/ships", json={**SHIP, "crew": -1}, headers=auth.headers),
        "400 bad query": client.simulate_get("/api/ships?sort=nope"),
        "401 no header": client.simulate_post("/api/ships", json=SHIP),
        "401 bad password": client.simulate_post("/auth/login", json={"username": "user", "password": "x"}),
        "403 forbidden": client.simulate_delete("/api/users/2", headers=auth.headers),
        "404 route": client.simulate_get("/nowhere"),
        "404 item": client.simulate_get("/api/ships/999999"),
        "405 method": client.simulate_request("TRACE", "/api/ships"),
        "413 too large": client.simulate_post(
            "/api/users", body=b"x" * 70_000, content_type="application/json"
        ),
        "415 media type": client.simulate_post("/api/users", body=b"x", content_type="text/plain"),
        "422 token": client.simulate_post("/api/ships", json=SHIP, headers={"Authorization": "Bearer a.b.c"}),
        "422 token type": client.simulate_post("/api/ships", json=SHIP, headers=auth.refresh_headers),
    }


# --- X-Content-Type-Options -------------------------------------------------------


def test_nosniff_on_success_and_error_responses(client, auth, subtests):
    for name, result in responses(client, auth).items():
        with subtests.test(response=name):
            assert result.headers.get("X-Content-Type-Options") == "nosniff", result.status


def test_nosniff_on_500(client, store, monkeypatch):
    monkeypatch.setattr(store, "find_ships", _explode)

    result = client.simulate_get("/api/ships")

    assert result.status_code == 500
    assert result.headers.get("X-Content-Type-Options") == "nosniff"


# --- X-Request-ID -------------------------------------------------------------


def test_sane_request_id_is_echoed(client, subtests):
    for request_id in (
        "abc123",
        "req-2024.01_02:03@host/x+y=z",
        "0" * 128,
        "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    ):
        with subtests.test(request_id=request_id):
            result = client.simulate_get("/api/ships", headers={"X-Request-ID": request_id})

            assert result.headers["X-Request-ID"] == request_id


def test_insane_request_id_is_replaced_by_a_fresh_one(client, subtests):
    insane = {
        "spaces": "abc def",
        "200 chars": "a" * 200,
        "129 chars": "a" * 129,
        "CRLF attempt": "abc\r\nSet-Cookie: evil=1",
        "LF attempt": "abc\nX-Injected: 1",
        "quotes": 'abc"def',
        "html": "<script>alert(1)</script>",
        "non-ASCII": "r\u00e9quete",
        "empty": "",
        "semicolon": "a;b",
    }
    for name, request_id in insane.items():
        with subtests.test(request_id=name):
            result = client.simulate_get("/api/ships", headers={"X-Request-ID": request_id})

            assert FRESH_ID.fullmatch(result.headers["X-Request-ID"]), result.headers["X-Request-ID"]
            assert "Set-Cookie" not in result.headers
            assert "X-Injected" not in result.headers


def test_fresh_request_ids_differ(client):
    ids = {client.simulate_get("/api/ships").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5
    assert all(FRESH_ID.fullmatch(i) for i in ids)


def test_request_id_on_every_response(client, auth, subtests):
    for name, result in responses(client, auth).items():
        with subtests.test(response=name):
            assert FRESH_ID.fullmatch(result.headers.get("X-Request-ID", "")), result.headers


def test_request_id_is_echoed_on_errors(client, subtests):
    for path, status in (("/nowhere", 404), ("/api/ships/999999", 404)):
        with subtests.test(path=path):
            result = client.simulate_get(path, headers={"X-Request-ID": "trace-me-42"})

            assert result.status_code == status
            assert result.headers["X-Request-ID"] == "trace-me-42"


def test_request_id_on_500(client, store, monkeypatch):
    monkeypatch.setattr(store, "find_ships", _explode)

    echoed = client.simulate_get("/api/ships", headers={"X-Request-ID": "trace-500"})
    fresh = client.simulate_get("/api/ships")

    assert echoed.status_code == fresh.status_code == 500
    assert echoed.headers["X-Request-ID"] == "trace-500"
    assert FRESH_ID.fullmatch(fresh.headers["X-Request-ID"])


# --- error bodies give nothing away -------------------------------------------------


def test_error_bodies_carry_no_internal_detail(client, auth, subtests):
    for name, result in responses(client, auth).items():
        if result.status_code < 400:
            continue
        with subtests.test(response=name):
            assert result.headers["Content-Type"].startswith("application/json")
            assert set(result.json) <= {"error", "message"}
            for word in INTERNALS:
                assert word.lower() not in result.text.lower(), (word, result.text)


@pytest.mark.parametrize(
    "method, path, store_method",
    [
        ("GET", "/api/ships", "find_ships"),
        ("GET", "/api/users/1", "get_user"),
        ("POST", "/auth/login", "get_user_by_name"),
    ],
)
def test_500_body_carries_no_internal_detail(client, store, monkeypatch, method, path, store_method):
    monkeypatch.setattr(store, store_method, _explode)

    result = client.simulate_request(method, path, json={"username": "user", "password": "password"})

    assert result.status_code == 500
    assert result.json == {"error": "Internal Server Error"}
    for word in INTERNALS:
        assert word.lower() not in result.text.lower(), (word, result.text)


def test_500_is_logged_with_the_request_id_and_the_traceback(client, store, monkeypatch, caplog):
    monkeypatch.setattr(store, "find_ships", _explode)

    with caplog.at_level(logging.ERROR, logger="fleet_api.errors"):
        result = client.simulate_get("/api/ships", headers={"X-Request-ID": "trace-logged-500"})

    assert result.status_code == 500
    records = [r for r in caplog.records if r.name == "fleet_api.errors"]
    assert len(records) == 1
    record = records[0]
    assert "request_id=trace-logged-500" in record.getMessage()
    assert "GET /api/ships" in record.getMessage()
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
    assert SECRET in caplog.text  # the detail goes to the log, not to the client


def test_500_log_names_the_fresh_request_id_when_none_was_given(client, store, monkeypatch, caplog):
    monkeypatch.setattr(store, "find_ships", _explode)

    with caplog.at_level(logging.ERROR, logger="fleet_api.errors"):
        result = client.simulate_get("/api/ships")

    assert f"request_id={result.headers['X-Request-ID']}" in caplog.text


def test_client_errors_are_not_logged_as_errors(client, caplog):
    with caplog.at_level(logging.ERROR, logger="fleet_api.errors"):
        client.simulate_get("/nowhere")
        client.simulate_post("/auth/login", json={})

    assert not [r for r in caplog.records if r.name == "fleet_api.errors"]
