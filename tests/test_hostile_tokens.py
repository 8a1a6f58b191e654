"""Hostile bearer tokens are refused, never accepted and never a 500; a new
password revokes the user's older tokens on every worker (issue 6, items 1-2).

test_auth.py already covers: `alg: none` with an empty signature, a token
signed with a foreign key, a tampered payload with the signature kept, each
missing claim, a few malformed strings, and PUT password changes over
falcon.testing. This file adds the rest of the hostile table, PATCH, and
real gunicorn workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request

import jwt
from support.bodies import STAR_DESTROYER
from support.bodies import TIE_FIGHTER as SHIP

from devtools.http import call, login

REVOKED = {"error": "Token has been revoked"}
# The refresh handler's own answer for a user that no longer exists.
REFRESH_UNKNOWN_USER = {"error": "Unauthorized", "message": "Unknown user."}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(text: str) -> str:
    return b64(text.encode())


def claims_of(token: str, key: str) -> dict:
    return jwt.decode(token, key, algorithms=["HS256"])


def hand_signed(header: dict, claims: dict, key: str, digest=hashlib.sha256) -> str:
    """A JWT built by hand, so any header (RS256, non-ASCII...) can be signed with HMAC."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def hostile_tokens(token: str, key: str) -> dict[str, str]:
    """name -> a bearer token (or raw Authorization value when it starts with '!')."""
    now = int(time.time())
    good = claims_of(token, key)
    head, body, sig = token.split(".")

    def signed(**changes) -> str:
        return jwt.encode({**good, **changes}, key, algorithm="HS256")

    def without(claim: str) -> str:
        return jwt.encode({k: v for k, v in good.items() if k != claim}, key, algorithm="HS256")

    return {
        "alg none, original signature kept": seg('{"alg":"none","typ":"JWT"}') + f".{body}.{sig}",
        "alg None capitalised, unsigned": seg('{"alg":"None","typ":"JWT"}') + f".{body}.",
        "alg NONE, unsigned": seg('{"alg":"NONE"}') + f".{body}.",
        "no alg at all": hand_signed({"typ": "JWT"}, good, key),
        "HS384 with the right secret": jwt.encode(good, key, algorithm="HS384"),
        "HS512 with the right secret": jwt.encode(good, key, algorithm="HS512"),
        "HS384 header, HS256 signature": hand_signed({"alg": "HS384", "typ": "JWT"}, good, key),
        "RS256 header, HMAC signature with the secret": hand_signed(
            {"alg": "RS256", "typ": "JWT"}, good, key
        ),
        "RS256 header, random signature": seg('{"alg":"RS256","typ":"JWT"}')
        + f".{body}.{b64(secrets.token_bytes(256))}",
        "ES256 header, signature kept": seg('{"alg":"ES256"}') + f".{body}.{sig}",
        "missing exp": without("exp"),
        "missing jti": without("jti"),
        "missing type": without("type"),
        "missing sub": without("sub"),
        "iat in the future": signed(iat=now + 3600),
        "nbf in the future": signed(nbf=now + 3600),
        "exp not a number": signed(exp="tomorrow"),
        "sub not a digit string": signed(sub="user"),
        "sub an integer, not a string": signed(sub=1),
        "sub negative": signed(sub="-1"),
        "sub with spaces": signed(sub=" 1"),
        "sub non-ASCII digits": signed(sub="\u0661"),
        "sub huge digits": signed(sub="9" * 40),
        "sub 19 digits, past int64": signed(sub="9" * 19),
        "sub 18 digits, no such user": signed(sub="9" * 18),
        "sub null": signed(sub=None),
        "ver a string": signed(ver="0"),
        "ver a float": signed(ver=0.0),
        "ver a bool": signed(ver=False),
        "ver null": signed(ver=None),
        "ver a list": signed(ver=[0]),
        "ver huge": signed(ver=10**30),
        "type unknown": signed(type="admin"),
        "the other token type": signed(type="access" if good["type"] == "refresh" else "refresh"),
        "type a list": signed(type=["access"]),
        "jti a number": signed(jti=12345),
        "garbage": "garbage",
        "three dots": "...",
        "empty segments": "..",
        "empty header segment": f".{body}.{sig}",
        "empty payload segment": f"{head}..{sig}",
        "empty signature": f"{head}.{body}.",
        "four segments": f"{head}.{body}.{sig}.{sig}",
        "non-base64 header": f"!!!!.{body}.{sig}",
        "non-base64 payload": f"{head}.$$$$.{sig}",
        "non-base64 signature": f"{head}.{body}.~~~~",
        "header not JSON": f"{b64(b'not json')}.{body}.{sig}",
        "header a JSON list": f"{b64(b'[1,2]')}.{body}.{sig}",
        "payload not JSON": hand_signed({"alg": "HS256"}, good, key).split(".")[0] + f".{b64(b'nope')}.{sig}",
        "payload a JSON list, signed": _signed_raw({"alg": "HS256", "typ": "JWT"}, b"[1,2,3]", key),
        "payload invalid UTF-8, signed": _signed_raw({"alg": "HS256", "typ": "JWT"}, b'{"sub":"\xff"}', key),
        "header invalid UTF-8": f"{b64(bytes([0xFF, 0xFE]) + b'{}')}.{body}.{sig}",
        "extremely long (6000 chars)": f"{head}.{body}{'A' * 6000}.{sig}",
        "extremely long garbage (6000 chars)": "x" * 6000,
        "non-ASCII in the token": f"{head}.{body}.\u00e9\u00e9\u00e9",
        "!non-ASCII in the header value": "Bearer \u00e9\u00e8\u00ea.\u00f1.\u00fc",
        "!two tokens": f"Bearer {token} {token}",
        "!NUL in the token": f"Bearer {head}\x00.{body}.{sig}",
        # (A tab between "Bearer" and the genuine token is accepted, as
        # flask-jwt-extended's str.split() accepts it: test_auth.py.)
    }


def _signed_raw(header: dict, payload: bytes, key: str) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def authorization(value: str) -> dict:
    return {"Authorization": value[1:] if value.startswith("!") else f"Bearer {value}"}


def assert_refused(result) -> None:
    """The token layer's one-member body {"error": <message>}; a 401 names Bearer."""
    assert result.status_code in (401, 422), (result.status_code, result.text)
    assert result.headers["Content-Type"].startswith("application/json")
    if result.status_code == 401:
        assert result.headers["WWW-Authenticate"] == "Bearer"
    if result.json == REFRESH_UNKNOWN_USER:
        return
    assert set(result.json) == {"error"}, result.json
    assert isinstance(result.json["error"], str) and result.json["error"]
    assert result.json["error"] not in ("Unauthorized", "Unprocessable Entity"), result.json


# --- hostile tokens -----------------------------------------------------------


def test_hostile_refresh_tokens_are_refused_with_401_or_422_json(client, auth, settings, subtests):
    for name, token in hostile_tokens(auth.refresh_token, settings.secret_key).items():
        with subtests.test(token=name):
            assert_refused(client.simulate_post("/auth/refresh", headers=authorization(token)))


def test_hostile_access_tokens_are_refused_with_401_or_422_json(client, auth, settings, subtests):
    # DELETE /api/users/1: had any token been accepted, the user would be gone.
    for name, token in hostile_tokens(auth.access_token, settings.secret_key).items():
        with subtests.test(token=name):
            assert_refused(client.simulate_delete("/api/users/1", headers=authorization(token)))
    assert client.simulate_get("/api/users/1").status_code == 200


def test_the_genuine_hs256_token_is_accepted(client, auth):
    # The control for the tables above: the token they start from works.
    assert client.simulate_post("/api/ships", json=SHIP, headers=auth.headers).status_code == 201


# --- password change over PATCH (PUT is covered in test_auth.py) ---------------


def patch_user(client, session, body):
    return client.simulate_patch("/api/users/1", json=body, headers=session.headers)


def test_patch_with_a_new_password_revokes_older_access_and_refresh_tokens(client, login):
    changer, other = login(), login()

    assert patch_user(client, changer, {"password": "brand new"}).status_code == 200

    assert client.simulate_post("/api/ships", json=SHIP, headers=other.headers).json == REVOKED
    assert client.simulate_post("/auth/refresh", headers=other.refresh_headers).json == REVOKED
    assert client.simulate_post("/auth/refresh", headers=changer.refresh_headers).json == REVOKED


def test_patch_with_a_new_password_keeps_the_access_token_that_made_it(client, auth):
    assert patch_user(client, auth, {"password": "brand new"}).status_code == 200

    assert client.simulate_post("/api/ships", json=SHIP, headers=auth.headers).status_code == 201


def test_patch_renaming_with_the_same_password_revokes_nothing(client, login):
    changer, other = login(), login()

    result = patch_user(client, changer, {"name": "renamed", "password": "password"})

    assert result.status_code == 200
    assert client.simulate_post("/api/ships", json=SHIP, headers=other.headers).status_code == 201
    assert client.simulate_post("/auth/refresh", headers=other.refresh_headers).status_code == 200


def test_patch_renaming_without_a_password_revokes_nothing(client, login):
    changer, other = login(), login()

    assert patch_user(client, changer, {"name": "renamed"}).status_code == 200

    assert client.simulate_post("/api/ships", json=SHIP, headers=other.headers).status_code == 201


# --- real gunicorn workers ----------------------------------------------------

REPEAT = 20


def test_password_change_revokes_old_tokens_on_every_worker(server):
    changer, old = login(server.url), login(server.url)
    changed = call(
        "PUT", f"{server.url}/api/users/1", {"name": "user", "password": "rotated"}, changer["access_token"]
    )
    assert changed.status == 200, changed.body

    access = [
        call("POST", f"{server.url}/api/ships", STAR_DESTROYER, old["access_token"]) for _ in range(REPEAT)
    ]
    refresh = [call("POST", f"{server.url}/auth/refresh", token=old["refresh_token"]) for _ in range(REPEAT)]

    assert [r.status for r in access] == [401] * REPEAT
    assert [r.status for r in refresh] == [401] * REPEAT
    assert all(r.json == REVOKED for r in access + refresh), [r.json for r in access + refresh]
    kept = [call("GET", f"{server.url}/api/users/1").status for _ in range(2)]
    assert kept == [200, 200]
    assert call("POST", f"{server.url}/api/ships", STAR_DESTROYER, changer["access_token"]).status == 201


def test_hostile_tokens_over_real_http_are_never_5xx(server):
    token = login(server.url, "guest", "guest")["access_token"]
    head, body, sig = token.split(".")
    values = [
        "Bearer " + seg('{"alg":"none"}') + f".{body}.",
        f"Bearer {head}.{body}{'A' * 6000}.{sig}",
        "Bearer " + "x" * 6000,
        f"Bearer {head}.{body}.{sig}x",
    ]
    for value in values:
        request = urllib.request.Request(
            f"{server.url}/auth/logout", method="DELETE", headers={"Authorization": value}
        )
        body = None
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status, body = err.code, json.loads(err.read())
        assert body is not None and body.keys() == {"error"}, (value[:40], status, body)
        assert status in (401, 422), (value[:40], status)
    assert call("DELETE", f"{server.url}/auth/logout", token=token).status == 200
