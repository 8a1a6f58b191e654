"""A misbehaving Fleet API for tests/test_locust.py: its tokens never work.

Anonymous reads answer like the real API (the seed data from data.json),
registration and login succeed, but every call that carries a token gets
401 "Token has been revoked". The load test must notice and exit non-zero.

Serve it with `gunicorn tests.support.bad_app:app` (GunicornServer(app=...)).
"""

from __future__ import annotations

import itertools
import json
import re

from fleet_api.settings import DEFAULT_DATA

DATA = json.loads(DEFAULT_DATA.read_text())
SHIPS = {ship["id"]: dict(sorted(ship.items())) for ship in DATA["ships"]}
USERS = {user["id"]: {"id": user["id"], "name": user["name"]} for user in DATA["users"]}
_ids = itertools.count(1000)
# Shaped like a JWT, signed by nobody.
FAKE_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.bm90LWEtcmVhbC1zaWduYXR1cmU"


def _reply(start_response, status: str, body=None, headers=()):
    data = b"" if body is None else json.dumps(body).encode()
    head = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers]
    start_response(status, head)
    return [data]


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if environ.get("HTTP_AUTHORIZATION"):
        return _reply(
            start_response,
            "401 Unauthorized",
            {"error": "Token has been revoked"},
            [("WWW-Authenticate", "Bearer")],
        )
    if method == "POST" and path == "/auth/login":
        return _reply(start_response, "200 OK", {"access_token": FAKE_TOKEN, "refresh_token": FAKE_TOKEN})
    if method == "POST" and path == "/api/users":
        user = {"id": next(_ids), "name": json.loads(raw or b"{}").get("name")}
        return _reply(start_response, "201 Created", user, [("Location", f"/api/users/{user['id']}")])
    if method == "GET" and path == "/api/ships":
        return _reply(start_response, "200 OK", list(SHIPS.values()))
    if method == "GET" and path == "/api/users":
        return _reply(start_response, "200 OK", list(USERS.values()))
    match = re.fullmatch(r"/api/(ships|users)/(\d+)", path)
    if method == "GET" and match:
        table = SHIPS if match[1] == "ships" else USERS
        item = table.get(int(match[2]))
        if item is not None:
            return _reply(start_response, "200 OK", item)
    return _reply(start_response, "404 Not Found", {"error": "Not Found"})
