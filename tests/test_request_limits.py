"""Hostile request bodies and request heads: capped, refused with a JSON 4xx,
never a 500, and nothing written (issue 6, item 4).

test_errors.py already covers 415 for POST/PUT on the JSON routes, malformed
and empty JSON, and non-object bodies; test_auth.py covers the login's
400 "Username or password missing." for non-JSON bodies.
"""

from __future__ import annotations

import http.client
import json
import socket

import pytest
from conftest import server_env
from support.bodies import TIE_FIGHTER as SHIP

from devtools.gunicorn import GunicornServer

MAX_BODY = 64 * 1024
SHIP_TEXT_FIELDS = ("affiliation", "category", "manufacturer", "model", "ship_class")
SHIP_INT_FIELDS = ("crew", "length")
USER = {"name": "newcomer", "password": "secret"}


def json_routes(auth):
    """(method, path, headers, valid body) for every route that writes a JSON body."""
    return [
        ("POST", "/api/ships", auth.headers, SHIP),
        ("PUT", "/api/ships/2", auth.headers, SHIP),
        ("PATCH", "/api/ships/2", auth.headers, SHIP),
        ("POST", "/api/users", {}, USER),
        ("PUT", "/api/users/1", auth.headers, {"name": "user", "password": "password"}),
        ("PATCH", "/api/users/1", auth.headers, {"name": "user", "password": "password"}),
    ]


def snapshot(client) -> tuple:
    return client.simulate_get("/api/ships").json, client.simulate_get("/api/users").json


def send(client, method, path, headers, body: bytes, content_type="application/json"):
    return client.simulate_request(method, path, body=body, headers={**headers, "Content-Type": content_type})


def assert_json_400(result) -> None:
    assert result.status_code == 400, (result.status_code, result.text)
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json["error"] == "Bad Request"
    assert set(result.json) == {"error", "message"}


def assert_field_error(result, field: str, words: str) -> None:
    assert_json_400(result)
    message = result.json["message"]
    assert isinstance(message, dict), message
    assert field in message, message
    assert any(words in text for text in message[field]), message


# --- body size cap -------------------------------------------------------------


def test_body_over_the_cap_is_413_json(client, auth, subtests):
    before = snapshot(client)
    big = json.dumps({**SHIP, "model": "x" * MAX_BODY}).encode()
    routes = [*json_routes(auth), ("POST", "/auth/login", {}, None)]
    for method, path, headers, _ in routes:
        with subtests.test(method=method, path=path):
            result = send(client, method, path, headers, big)

            assert result.status_code == 413, result.text
            assert result.json == {
                "error": "Request Entity Too Large",
                "message": f"The body may be at most {MAX_BODY} bytes.",
            }
    assert snapshot(client) == before


def test_body_at_the_cap_is_read(client, auth):
    body = json.dumps({**SHIP, "model": "x" * 300}).encode()
    body += b" " * (MAX_BODY - len(body))

    result = send(client, "POST", "/api/ships", auth.headers, body)

    assert_field_error(result, "model", "Longer than maximum length 256.")


def test_a_lying_content_length_over_the_cap_is_413(client, auth):
    result = client.simulate_post(
        "/api/ships",
        body=b"{}",
        headers={**auth.headers, "Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)},
    )

    assert result.status_code == 413


# --- content type -----------------------------------------------------------------


def test_non_json_patch_is_415_json(client, auth, subtests):
    for path in ("/api/ships/2", "/api/users/1"):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            with subtests.test(path=path, content_type=content_type):
                result = send(client, "PATCH", path, auth.headers, b'{"crew": 2}', content_type)

                assert result.status_code == 415, result.text
                assert result.json["error"] == "Unsupported Media Type"


def test_login_with_a_non_json_content_type_is_a_bare_400(client, subtests):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        with subtests.test(content_type=content_type):
            result = client.simulate_post(
                "/auth/login", body=b'{"username": "user", "password": "password"}', content_type=content_type
            )

            # The example: `if not request.is_json: return error_response(400)`.
            assert result.status_code == 400
            assert result.json == {"error": "Bad Request"}


# --- hostile JSON -----------------------------------------------------------------


def test_deeply_nested_json_is_400(client, auth, subtests):
    before = snapshot(client)
    for method, path, headers, _ in json_routes(auth):
        for depth in (2000, MAX_BODY // 2 - 1):
            with subtests.test(method=method, path=path, depth=depth):
                body = b"[" * depth + b"]" * depth

                assert_json_400(send(client, method, path, headers, body))
    assert snapshot(client) == before


def test_deeply_nested_json_over_the_cap_is_413_not_500(client, auth, subtests):
    for method, path, headers, _ in json_routes(auth):
        with subtests.test(method=method, path=path):
            result = send(client, method, path, headers, b"[" * 100_000)

            assert result.status_code == 413, result.text


def test_deeply_nested_login_is_400(client):
    result = client.simulate_post("/auth/login", body=b"[" * 30_000, content_type="application/json")

    assert_json_400(result)


def test_out_of_range_integers_are_400_naming_the_field(client, auth, subtests):
    before = snapshot(client)
    for value in (2**70, -(2**70), 2**63, 2**31, 0, -1):
        for field in SHIP_INT_FIELDS:
            for method, path in (("POST", "/api/ships"), ("PUT", "/api/ships/2"), ("PATCH", "/api/ships/2")):
                with subtests.test(method=method, field=field, value=value):
                    body = json.dumps({**SHIP, field: value}).encode()

                    assert_field_error(send(client, method, path, auth.headers, body), field, "")
    assert snapshot(client) == before


def test_numbers_json_cannot_hold_are_400(client, auth, subtests):
    # Too big for a double: the parser refuses the document, naming the number.
    before = snapshot(client)
    for literal in (str(10**400), "1e400", "-1e400", "1" + "0" * 5000):
        for field in SHIP_INT_FIELDS:
            with subtests.test(field=field, literal=literal[:12]):
                body = (
                    json.dumps({**SHIP, field: 1}).replace(f'"{field}": 1', f'"{field}": {literal}').encode()
                )

                result = send(client, "POST", "/api/ships", auth.headers, body)

                assert_json_400(result)
                message = result.json["message"]
                if isinstance(message, dict):
                    assert field in message, message
                else:
                    assert "number" in message.lower() or "integer" in message.lower(), message
    assert snapshot(client) == before


def test_non_integer_numbers_are_400_naming_the_field(client, auth, subtests):
    for value in (1.5, 2.0, "3", True, None, [1]):
        for field in SHIP_INT_FIELDS:
            with subtests.test(field=field, value=value):
                body = json.dumps({**SHIP, field: value}).encode()

                assert_field_error(send(client, "POST", "/api/ships", auth.headers, body), field, "")


def test_nul_bytes_are_400_in_every_string_field(client, auth, subtests):
    before = snapshot(client)
    for field in SHIP_TEXT_FIELDS:
        for method, path in (("POST", "/api/ships"), ("PUT", "/api/ships/2"), ("PATCH", "/api/ships/2")):
            with subtests.test(method=method, field=field):
                body = json.dumps({**SHIP, field: "X-Wing\x00; DROP TABLE ships"}).encode()

                result = send(client, method, path, auth.headers, body)

                assert_field_error(result, field, "Must not contain NUL characters.")
    for user_field in ("name", "password"):
        for method, path, headers in (
            ("POST", "/api/users", {}),
            ("PUT", "/api/users/1", auth.headers),
            ("PATCH", "/api/users/1", auth.headers),
        ):
            with subtests.test(method=method, field=user_field):
                body = json.dumps({"name": "someone", "password": "secret", user_field: "ab\x00cd"}).encode()

                result = send(client, method, path, headers, body)

                assert_field_error(result, user_field, "Must not contain NUL characters.")
    assert snapshot(client) == before


def test_nul_bytes_are_400_in_roles_items(client, auth, subtests):
    before = snapshot(client)
    for roles in (["\x00"], ["Escort", "Bomber\x00"], ["ok", "ok", "\x00x"]):
        with subtests.test(roles=roles):
            result = send(
                client, "POST", "/api/ships", auth.headers, json.dumps({**SHIP, "roles": roles}).encode()
            )

            assert result.status_code == 400, result.text
            assert result.json == {
                "error": "Bad Request",
                "message": {"roles": {str(len(roles) - 1): ["Must not contain NUL characters."]}},
            }
    assert snapshot(client) == before


def test_over_long_strings_are_400_in_every_field(client, auth, subtests):
    before = snapshot(client)
    for field in SHIP_TEXT_FIELDS:
        with subtests.test(field=field):
            body = json.dumps({**SHIP, field: "x" * 257}).encode()

            assert_field_error(send(client, "POST", "/api/ships", auth.headers, body), field, "256")
    with subtests.test(field="roles item"):
        body = json.dumps({**SHIP, "roles": ["x" * 257]}).encode()
        result = send(client, "POST", "/api/ships", auth.headers, body)

        assert result.status_code == 400, result.text
        assert result.json["message"] == {"roles": {"0": ["Longer than maximum length 256."]}}
    for field, length, limit in (("name", 65, "64"), ("password", 1025, "1024")):
        with subtests.test(field=field):
            body = json.dumps({**USER, field: "x" * length}).encode()

            assert_field_error(send(client, "POST", "/api/users", {}, body), field, limit)
    assert snapshot(client) == before


def test_strings_at_the_limit_are_accepted(client, auth):
    ship = {**SHIP, **{field: "x" * 256 for field in SHIP_TEXT_FIELDS}, "roles": ["r" * 256] * 32}

    assert send(client, "POST", "/api/ships", auth.headers, json.dumps(ship).encode()).status_code == 201


def test_33_roles_are_400(client, auth):
    before = snapshot(client)
    body = json.dumps({**SHIP, "roles": ["Escort"] * 33}).encode()

    assert_field_error(send(client, "POST", "/api/ships", auth.headers, body), "roles", "32")
    assert snapshot(client) == before


def test_invalid_utf8_is_400(client, auth, subtests):
    before = snapshot(client)
    for method, path, headers, valid in json_routes(auth):
        for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"):
            with subtests.test(method=method, path=path, bad=bad):
                # The first string value carries the bad bytes.
                body = json.dumps(valid).encode().replace(b'": "', b'": "' + bad, 1)

                assert_json_400(send(client, method, path, headers, body))
    assert snapshot(client) == before


def test_invalid_utf8_login_is_400(client):
    result = client.simulate_post(
        "/auth/login",
        body=b'{"username": "us\xffer", "password": "password"}',
        content_type="application/json",
    )

    assert_json_400(result)


def test_utf8_bom_is_400(client, auth, subtests):
    before = snapshot(client)
    for method, path, headers, valid in json_routes(auth):
        with subtests.test(method=method, path=path):
            body = b"\xef\xbb\xbf" + json.dumps(valid).encode()

            result = send(client, method, path, headers, body)

            assert_json_400(result)
            assert "BOM" in result.json["message"] or "byte order mark" in result.json["message"]
    assert snapshot(client) == before


def test_duplicate_keys_are_400(client, auth, subtests):
    before = snapshot(client)
    cases = [
        ("POST", "/api/ships", auth.headers, b'{"model": "first", ' + json.dumps(SHIP).encode()[1:], "model"),
        ("PUT", "/api/ships/2", auth.headers, b'{"crew": 9, ' + json.dumps(SHIP).encode()[1:], "crew"),
        ("PATCH", "/api/ships/2", auth.headers, b'{"crew": 9, "crew": 8}', "crew"),
        ("POST", "/api/users", {}, b'{"name": "alice", "name": "mallory", "password": "secret"}', "name"),
        ("PATCH", "/api/users/1", auth.headers, b'{"name": "bob", "name": "eve"}', "name"),
    ]
    for method, path, headers, body, key in cases:
        with subtests.test(method=method, path=path):
            result = send(client, method, path, headers, body)

            assert_json_400(result)
            assert key in json.dumps(result.json["message"]), result.json
    assert snapshot(client) == before


def test_duplicate_keys_in_login_are_400(client):
    body = b'{"username": "guest", "username": "user", "password": "password"}'

    result = client.simulate_post("/auth/login", body=body, content_type="application/json")

    assert_json_400(result)


# --- over real HTTP: chunked bodies and gunicorn's limits ----------------------------


@pytest.fixture(scope="module")
def server():
    with GunicornServer(workers=2, env=server_env()) as server:
        yield server


def chunked_post(server, path: str, body: bytes, chunk: int = 4096) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=(body[i : i + chunk] for i in range(0, len(body), chunk)),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def raw_request(server, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_chunked_body_over_the_cap_is_413_json(server):
    body = json.dumps({"name": "x" * (MAX_BODY + 1000), "password": "secret"}).encode()

    status, headers, payload = chunked_post(server, "/api/users", body)

    assert status == 413, payload
    assert json.loads(payload)["error"] == "Request Entity Too Large"


def test_small_chunked_json_body_works(server):
    status, _, payload = chunked_post(
        server, "/api/users", json.dumps({"name": "chunky", "password": "secret"}).encode(), chunk=7
    )

    assert status == 201, payload
    assert json.loads(payload)["name"] == "chunky"


def test_small_chunked_login_works(server):
    body = json.dumps({"username": "user", "password": "password"}).encode()

    status, _, payload = chunked_post(server, "/auth/login", body, chunk=5)

    assert status == 200, payload
    assert "access_token" in json.loads(payload)


def test_over_long_request_line_is_refused_by_gunicorn(server):
    response = raw_request(
        server, b"GET /api/ships?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )

    assert status_of(response) in (400, 414), response[:200]


def test_too_many_headers_are_refused_by_gunicorn(server):
    headers = b"".join(b"X-Filler-%d: %d\r\n" % (i, i) for i in range(60))

    response = raw_request(
        server, b"GET /api/ships HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n"
    )

    # gunicorn 27 answers 431 Request Header Fields Too Large (RFC 6585).
    assert status_of(response) in (400, 431), response[:200]


def test_over_long_header_is_refused_by_gunicorn(server):
    response = raw_request(
        server,
        b"GET /api/ships HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n",
    )

    assert 400 <= status_of(response) < 500, response[:200]
