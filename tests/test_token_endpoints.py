"""POST /auth/revoke (RFC 7009) and POST /auth/introspect (RFC 7662) on
every store backend: form-encoded and JSON bodies, what each token kind does,
`{"active": false}` for anything not live, and who may introspect what."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import time
import urllib.parse

import falcon.testing
import jwt
import pytest
from support.bodies import TIE_FIGHTER

from fleet_api.app import create_app
from fleet_api.settings import Settings, SettingsError

KEY = secrets.token_urlsafe(32)
OTHER_KEY = secrets.token_urlsafe(32)
FORM = "application/x-www-form-urlencoded"
REVOKED = {"error": "Token has been revoked"}
INACTIVE = {"active": False}
SHIP = TIE_FIGHTER


@pytest.fixture
def make_client(settings, store):
    def make(**changes) -> falcon.testing.TestClient:
        config = dataclasses.replace(settings, introspection_keys=(KEY, OTHER_KEY), **changes)
        return falcon.testing.TestClient(create_app(config, store=store))

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def log_in(client, user="user", password="password") -> dict:
    result = client.simulate_post("/auth/login", json={"username": user, "password": password})
    assert result.status_code == 200, result.text
    return result.json


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def form(client, path: str, headers: dict | None = None, **params):
    return client.simulate_post(
        path, body=urllib.parse.urlencode(params), headers={"Content-Type": FORM, **(headers or {})}
    )


def ship_status(client, access: str) -> int:
    return client.simulate_post("/api/ships", json=SHIP, headers=bearer(access)).status_code


def refresh_status(client, token: str) -> int:
    return client.simulate_post("/auth/refresh", headers=bearer(token)).status_code


# --- revoke ------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["form", "json"])
def test_revoking_a_refresh_token_ends_its_whole_session(client, encoding):
    tokens, other = log_in(client), log_in(client)
    refreshed = client.simulate_post("/auth/refresh", headers=bearer(tokens["refresh_token"])).json
    if encoding == "form":
        result = form(client, "/auth/revoke", token=tokens["refresh_token"], token_type_hint="refresh_token")
    else:
        result = client.simulate_post("/auth/revoke", json={"token": tokens["refresh_token"]})

    assert result.status_code == 200
    assert result.json == {}
    assert result.headers["Cache-Control"] == "no-store"
    assert ship_status(client, tokens["access_token"]) == 401
    assert ship_status(client, refreshed["access_token"]) == 401
    assert refresh_status(client, tokens["refresh_token"]) == 401
    assert ship_status(client, other["access_token"]) == 201


def test_revoking_an_access_token_revokes_only_it(client):
    tokens = log_in(client)
    result = form(client, "/auth/revoke", token=tokens["access_token"])
    assert (result.status_code, result.json) == (200, {})
    answer = client.simulate_post("/api/ships", json=SHIP, headers=bearer(tokens["access_token"]))
    assert (answer.status_code, answer.json) == (401, REVOKED)
    assert refresh_status(client, tokens["refresh_token"]) == 200


def test_a_wrong_hint_is_ignored(client):
    tokens = log_in(client)
    assert (
        form(
            client, "/auth/revoke", token=tokens["refresh_token"], token_type_hint="access_token"
        ).status_code
        == 200
    )
    assert refresh_status(client, tokens["refresh_token"]) == 401


def _expired(settings) -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "sub": "1",
            "type": "access",
            "jti": "j",
            "iat": now - 100,
            "nbf": now - 100,
            "exp": now - 10,
            "sid": "s" * 22,
        },
        settings.secret_key,
        algorithm="HS256",
    )


@pytest.mark.parametrize("kind", ["garbage", "forged", "expired", "already revoked", "empty-ish"])
def test_revoking_an_invalid_token_is_200_and_changes_nothing(client, settings, kind):
    tokens = log_in(client)
    token = {
        "garbage": "not a token at all",
        "forged": jwt.encode(
            {**claims(tokens["refresh_token"])}, "another key of at least 32 bytes!", algorithm="HS256"
        ),
        "expired": _expired(settings),
        "already revoked": tokens["access_token"],
        "empty-ish": " ",
    }[kind]
    if kind == "already revoked":
        form(client, "/auth/revoke", token=token)
        tokens = log_in(client)

    result = form(client, "/auth/revoke", token=token)

    assert (result.status_code, result.json) == (200, {})  # RFC 7009 section 2.2
    assert ship_status(client, tokens["access_token"]) == 201
    assert refresh_status(client, tokens["refresh_token"]) == 200


BAD_BODIES = {
    "no body": ({"Content-Type": FORM}, b""),
    "no token": ({"Content-Type": FORM}, b"token_type_hint=access_token"),
    "empty token": ({"Content-Type": FORM}, b"token="),
    "token twice": ({"Content-Type": FORM}, b"token=a&token=b"),
    "hint twice": ({"Content-Type": FORM}, b"token=a&token_type_hint=x&token_type_hint=y"),
    "not utf-8": ({"Content-Type": FORM}, b"token=\xff\xfe"),
    "json without token": ({"Content-Type": "application/json"}, b'{"token_type_hint": "access_token"}'),
    "json token not a string": ({"Content-Type": "application/json"}, b'{"token": 12}'),
    "json hint not a string": (
        {"Content-Type": "application/json"},
        b'{"token": "a", "token_type_hint": []}',
    ),
    "json not an object": ({"Content-Type": "application/json"}, b'["token"]'),
    "malformed json": ({"Content-Type": "application/json"}, b'{"token": '),
    "another media type": ({"Content-Type": "text/plain"}, b"token=a"),
    "no media type": ({}, b"token=a"),
}


@pytest.mark.parametrize("path", ["/auth/revoke", "/auth/introspect"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_body_is_400_invalid_request(client, path, case):
    headers, body = BAD_BODIES[case]
    result = client.simulate_post(path, body=body, headers={**headers, **basic("rs", KEY)})
    assert result.status_code == 400, result.text
    assert result.json["error"] == "invalid_request"  # RFC 6749 section 5.2, via RFC 7009 section 2.2.1
    assert set(result.json) == {"error", "error_description"}


def test_a_form_login_is_still_refused_like_the_examples(client):
    result = form(client, "/auth/login", username="user", password="password")
    assert result.status_code == 400
    assert result.json == {"error": "Bad Request"}  # the example's `not request.is_json`


# --- introspect --------------------------------------------------------------
def test_an_own_live_access_token_is_described(client):
    tokens = log_in(client)
    result = form(client, "/auth/introspect", bearer(tokens["access_token"]), token=tokens["access_token"])
    assert result.status_code == 200
    assert result.headers["Cache-Control"] == "no-store"
    given = claims(tokens["access_token"])
    assert result.json == {
        "active": True,
        "sub": "1",
        "username": "user",
        "token_type": "access",
        "sid": given["sid"],
        "jti": given["jti"],
        "iat": given["iat"],
        "exp": given["exp"],
    }


def test_an_own_refresh_token_is_described_in_json_too(client):
    tokens = log_in(client)
    result = client.simulate_post(
        "/auth/introspect", json={"token": tokens["refresh_token"]}, headers=bearer(tokens["access_token"])
    )
    assert result.json["active"] is True
    assert result.json["token_type"] == "refresh"
    assert result.json["jti"] == claims(tokens["refresh_token"])["jti"]


def test_with_an_access_token_only_ones_own_users_tokens_are_active(client):
    mine, guest = log_in(client), log_in(client, "guest", "guest")
    assert (
        form(client, "/auth/introspect", bearer(mine["access_token"]), token=guest["access_token"]).json
        == INACTIVE
    )
    # The other session of the same user is one's own.
    second = log_in(client)
    assert form(client, "/auth/introspect", bearer(mine["access_token"]), token=second["refresh_token"]).json[
        "active"
    ]


@pytest.mark.parametrize("auth", ["bearer key", "basic key", "second key"])
def test_a_resource_server_with_a_key_sees_every_users_tokens(client, auth):
    guest = log_in(client, "guest", "guest")
    headers = {
        "bearer key": bearer(KEY),
        "basic key": basic("resource-server", KEY),
        "second key": bearer(OTHER_KEY),
    }[auth]
    result = form(client, "/auth/introspect", headers, token=guest["access_token"])
    assert result.status_code == 200
    assert result.json["active"] is True
    assert (result.json["sub"], result.json["username"]) == ("2", "guest")


def _not_live(client, settings, store, kind: str) -> str:
    tokens = log_in(client)
    if kind == "garbage":
        return "garbage"
    if kind == "bad signature":
        return tokens["access_token"][:-4] + (
            "AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB"
        )
    if kind == "expired":
        return _expired(settings)
    if kind == "revoked":
        client.simulate_delete("/auth/logout", headers=bearer(tokens["access_token"]))
        return tokens["access_token"]
    if kind == "ended session":
        sid = claims(tokens["access_token"])["sid"]
        client.simulate_delete(f"/api/sessions/{sid}", headers=bearer(tokens["access_token"]))
        return tokens["access_token"]
    if kind == "used-up refresh token":
        rotating = falcon.testing.TestClient(
            create_app(dataclasses.replace(settings, refresh_rotation=True), store=store)
        )
        rotating.simulate_post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
        return tokens["refresh_token"]
    if kind == "deleted user":
        user = client.simulate_post("/api/users", json={"name": "leaver", "password": "secret"}).json
        theirs = log_in(client, "leaver", "secret")
        client.simulate_delete(f"/api/users/{user['id']}", headers=bearer(theirs["access_token"]))
        return theirs["refresh_token"]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "bad signature",
        "expired",
        "revoked",
        "ended session",
        "used-up refresh token",
        "deleted user",
    ],
)
def test_anything_not_live_is_exactly_inactive(client, settings, store, kind):
    token = _not_live(client, settings, store, kind)
    result = form(client, "/auth/introspect", bearer(KEY), token=token)
    assert result.status_code == 200
    assert result.json == INACTIVE  # RFC 7662 section 2.2: nothing more


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 401),
        (bearer("not-a-key-and-not-a-jwt"), 422),
        (basic("resource-server", "wrong key"), 401),
        ({"Authorization": "Basic !!!"}, 401),
        ({"Authorization": "Basic \u00e9\u00e9"}, 401),  # not ASCII: was a 500
    ],
    ids=["no credentials", "unknown bearer", "wrong basic key", "malformed basic", "non-ascii basic"],
)
def test_introspection_needs_an_access_token_or_a_key(client, headers, status):
    tokens = log_in(client)
    result = form(client, "/auth/introspect", headers, token=tokens["access_token"])
    assert result.status_code == status
    assert "active" not in result.json
    assert (result.headers.get("WWW-Authenticate") is not None) == (status == 401)


def test_a_refresh_token_cannot_authenticate_an_introspection(client):
    tokens = log_in(client)
    result = form(client, "/auth/introspect", bearer(tokens["refresh_token"]), token=tokens["access_token"])
    assert result.status_code == 422
    assert result.json == {"error": "Only access tokens are allowed"}


def test_without_configured_keys_no_key_works(settings, store):
    client = falcon.testing.TestClient(create_app(settings, store=store))
    tokens = log_in(client)
    assert form(client, "/auth/introspect", basic("rs", KEY), token=tokens["access_token"]).status_code == 401
    assert form(client, "/auth/introspect", bearer(KEY), token=tokens["access_token"]).status_code == 422


# --- settings ----------------------------------------------------------------
@pytest.mark.parametrize(
    "env, field, value",
    [
        ({"FLEET_REFRESH_ROTATION": "on"}, "refresh_rotation", True),
        ({"FLEET_REFRESH_ROTATION": "OFF"}, "refresh_rotation", False),
        ({}, "refresh_rotation", False),
        ({"FLEET_REFRESH_REUSE_GRACE": "0"}, "refresh_reuse_grace", 0),
        ({"FLEET_REFRESH_REUSE_GRACE": "2.5"}, "refresh_reuse_grace", 2.5),
        ({}, "refresh_reuse_grace", 10),
        ({"FLEET_INTROSPECTION_KEYS": f"{KEY}, {OTHER_KEY}"}, "introspection_keys", (KEY, OTHER_KEY)),
        ({}, "introspection_keys", ()),
    ],
)
def test_session_settings_from_the_environment(env, field, value):
    settings = Settings.from_env({"FLEET_SECRET_KEY": "k" * 32, **env})
    assert getattr(settings, field) == value


@pytest.mark.parametrize(
    "env",
    [
        {"FLEET_REFRESH_ROTATION": "yes"},
        {"FLEET_REFRESH_REUSE_GRACE": "-1"},
        {"FLEET_REFRESH_REUSE_GRACE": "ten"},
        {"FLEET_REFRESH_REUSE_GRACE": "nan"},
        {"FLEET_INTROSPECTION_KEYS": "short"},
    ],
)
def test_bad_session_settings_refuse_to_start(env):
    with pytest.raises(SettingsError):
        Settings.from_env({"FLEET_SECRET_KEY": "k" * 32, **env})


def test_basic_is_read_whatever_whitespace_follows_the_scheme(client):
    """As the bearer check does: `Basic<TAB>credentials` is still Basic."""
    tokens = log_in(client)
    credentials = basic("resource-server", KEY)["Authorization"].split(" ", 1)[1]
    result = form(
        client, "/auth/introspect", {"Authorization": f"Basic\t{credentials}"}, token=tokens["access_token"]
    )
    assert result.status_code == 200
    assert result.json["active"] is True


@pytest.mark.parametrize("path", ["/auth/revoke", "/auth/introspect"])
def test_an_oversized_token_is_not_read(client, path):
    """Ours are ~400 characters; a 60 KiB one is refused before any parsing."""
    headers = bearer(log_in(client)["access_token"]) if path.endswith("introspect") else None
    result = form(client, path, headers, token="e" * 60_000)
    assert (result.status_code, result.json) == (200, {} if path.endswith("revoke") else {"active": False})


def test_an_oversized_bearer_token_is_a_token_error(client):
    result = client.simulate_post("/api/ships", json={}, headers=bearer("e" * 5000))
    assert (result.status_code, result.json) == (422, {"error": "Token is too long"})
