"""Sessions through the app on every store backend: the `sid` claim, the
sessions API, refresh-token rotation with reuse detection and its grace
window, and what password changes and user deletions do to sessions.

Time is the fake clock the app is built with (conftest's `clock`), moved,
never slept.
"""

from __future__ import annotations

import datetime
import re

import jwt
import pytest
from support.bodies import TIE_FIGHTER

REVOKED = {"error": "Token has been revoked"}
SHIP = TIE_FIGHTER
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def client(make_client):
    """Rotation off, the default: the example's behaviour."""
    return make_client()


@pytest.fixture
def rotating(make_client):
    return make_client(refresh_rotation=True)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def log_in(client, user="user", password="password", **kwargs) -> dict:
    result = client.simulate_post("/auth/login", json={"username": user, "password": password}, **kwargs)
    assert result.status_code == 200, result.text
    return result.json


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def refresh(client, token: str):
    return client.simulate_post("/auth/refresh", headers=bearer(token))


def works(client, access: str) -> bool:
    """Whether an access token still passes the token layer (GET /api/sessions)."""
    result = client.simulate_get("/api/sessions", headers=bearer(access))
    assert result.status_code in (200, 401), result.text
    if result.status_code == 401:
        assert result.json == REVOKED
    return result.status_code == 200


def assert_revoked(result) -> None:
    assert result.status_code == 401, result.text
    assert result.json == REVOKED
    assert result.headers["WWW-Authenticate"] == "Bearer"


def sessions(client, access: str) -> list[dict]:
    result = client.simulate_get("/api/sessions", headers=bearer(access))
    assert result.status_code == 200, result.text
    return result.json


# --- a session per login -------------------------------------------------------
def test_login_answers_exactly_the_two_tokens_of_one_new_session(client):
    first, second = log_in(client), log_in(client)
    assert set(first) == {"access_token", "refresh_token"}
    sid = claims(first["access_token"])["sid"]
    assert claims(first["refresh_token"])["sid"] == sid
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", sid)  # 128 random bits
    assert claims(second["access_token"])["sid"] != sid


def test_refresh_with_rotation_off_is_the_examples_and_keeps_the_sid(client):
    tokens = log_in(client)
    results = [refresh(client, tokens["refresh_token"]) for _ in range(3)]
    for result in results:
        assert result.status_code == 200
        assert set(result.json) == {"access_token"}
        assert claims(result.json["access_token"])["sid"] == claims(tokens["refresh_token"])["sid"]
        assert works(client, result.json["access_token"])


def test_sessions_are_listed_newest_first_with_what_the_server_saw(make_client, clock):
    client = make_client(trusted_proxies="127.0.0.1")
    started = clock()
    old = log_in(client, headers={"User-Agent": "curl/8.5.0", "X-Forwarded-For": "203.0.113.9"})
    clock.advance(5)
    new = log_in(client, headers={"User-Agent": "x" * 1000}, remote_addr="198.51.100.7")
    guest = log_in(client, "guest", "guest")

    listed = sessions(client, old["access_token"])
    assert [s["id"] for s in listed] == [
        claims(new["access_token"])["sid"],
        claims(old["access_token"])["sid"],
    ]
    assert listed[1] == {
        "id": claims(old["access_token"])["sid"],
        "created_at": _rfc3339(started),
        "last_used_at": _rfc3339(started),
        "user_agent": "curl/8.5.0",
        "ip": "203.0.113.9",  # from a trusted proxy: its client
        "current": True,
    }
    assert listed[0]["user_agent"] == "x" * 256
    assert listed[0]["ip"] == "198.51.100.7"  # an untrusted peer's X-Forwarded-For is not believed
    assert listed[0]["current"] is False
    assert all(RFC3339.fullmatch(s["created_at"]) for s in listed)
    assert [s["current"] for s in sessions(client, new["access_token"])] == [True, False]
    assert len(sessions(client, guest["access_token"])) == 1  # one's own only


def test_a_session_without_user_agent_lists_null(client):
    tokens = log_in(client, headers={"User-Agent": ""})  # falcon.testing sends its own otherwise
    assert sessions(client, tokens["access_token"])[0]["user_agent"] is None


def test_last_use_is_recorded_at_most_once_a_minute(client, clock):
    tokens = log_in(client)
    started = clock()
    clock.advance(30)
    assert sessions(client, tokens["access_token"])[0]["last_used_at"] == _rfc3339(started)
    clock.advance(31)  # 61 s after the last recorded use
    works(client, tokens["access_token"])
    touched = clock()
    assert sessions(client, tokens["access_token"])[0]["last_used_at"] == _rfc3339(touched)
    clock.advance(59)
    assert sessions(client, tokens["access_token"])[0]["last_used_at"] == _rfc3339(touched)


def test_sessions_need_an_access_token(client):
    tokens = log_in(client)
    assert client.simulate_get("/api/sessions").status_code == 401
    assert client.simulate_get("/api/sessions", headers=bearer(tokens["refresh_token"])).status_code == 422
    assert client.simulate_delete("/api/sessions").status_code == 401
    assert client.simulate_delete("/api/sessions/x").status_code == 401


# --- ending sessions -----------------------------------------------------------
def test_deleting_a_session_kills_its_tokens_and_only_its_own(client):
    doomed, kept = log_in(client), log_in(client)
    refreshed = refresh(client, doomed["refresh_token"]).json["access_token"]
    sid = claims(doomed["access_token"])["sid"]

    result = client.simulate_delete(f"/api/sessions/{sid}", headers=bearer(kept["access_token"]))

    assert result.status_code == 204
    assert result.content == b""
    for access in (doomed["access_token"], refreshed):
        assert_revoked(client.simulate_post("/api/ships", json=SHIP, headers=bearer(access)))
    assert_revoked(refresh(client, doomed["refresh_token"]))
    assert (
        client.simulate_post("/api/ships", json=SHIP, headers=bearer(kept["access_token"])).status_code == 201
    )
    assert refresh(client, kept["refresh_token"]).status_code == 200
    assert [s["id"] for s in sessions(client, kept["access_token"])] == [claims(kept["access_token"])["sid"]]


@pytest.mark.parametrize(
    "whose", ["already ended", "another user's", "never issued", "malformed", "too long"]
)
def test_deleting_an_unknown_or_foreign_session_is_404_and_ends_nothing(client, whose):
    mine, guest = log_in(client), log_in(client, "guest", "guest")
    ended = log_in(client)
    ended_sid = claims(ended["access_token"])["sid"]
    assert (
        client.simulate_delete(f"/api/sessions/{ended_sid}", headers=bearer(mine["access_token"])).status_code
        == 204
    )
    sid = {
        "already ended": ended_sid,
        "another user's": claims(guest["access_token"])["sid"],
        "never issued": "A" * 22,
        "malformed": "not a session",
        "too long": "A" * 500,
    }[whose]

    result = client.simulate_delete(f"/api/sessions/{sid}", headers=bearer(mine["access_token"]))

    assert result.status_code == 404
    assert result.json == {"error": "Not Found"}
    assert works(client, guest["access_token"])
    assert works(client, mine["access_token"])


def test_deleting_ones_current_session_logs_oneself_out(client):
    tokens = log_in(client)
    sid = claims(tokens["access_token"])["sid"]
    assert (
        client.simulate_delete(f"/api/sessions/{sid}", headers=bearer(tokens["access_token"])).status_code
        == 204
    )
    assert not works(client, tokens["access_token"])


def test_log_out_everywhere_else(client):
    current, first, second = log_in(client), log_in(client), log_in(client)
    guest = log_in(client, "guest", "guest")

    result = client.simulate_delete("/api/sessions", headers=bearer(current["access_token"]))

    assert result.status_code == 200
    assert result.json == {"revoked": 2}
    for tokens in (first, second):
        assert not works(client, tokens["access_token"])
        assert_revoked(refresh(client, tokens["refresh_token"]))
    assert works(client, current["access_token"])
    assert refresh(client, current["refresh_token"]).status_code == 200
    assert works(client, guest["access_token"])
    again = client.simulate_delete("/api/sessions", headers=bearer(current["access_token"]))
    assert again.json == {"revoked": 0}


def test_a_password_change_ends_every_other_session(client):
    changer, other = log_in(client), log_in(client)
    guest = log_in(client, "guest", "guest")

    result = client.simulate_put(
        "/api/users/1",
        json={"name": "user", "password": "a new password"},
        headers=bearer(changer["access_token"]),
    )

    assert result.status_code == 200
    listed = sessions(client, changer["access_token"])
    assert [s["id"] for s in listed] == [claims(changer["access_token"])["sid"]]
    assert_revoked(client.simulate_post("/api/ships", json=SHIP, headers=bearer(other["access_token"])))
    assert works(client, guest["access_token"])


def test_after_a_password_change_the_current_session_lasts_as_long_as_its_kept_token(client, store, clock):
    changer = log_in(client)
    client.simulate_put(
        "/api/users/1",
        json={"name": "user", "password": "a new password"},
        headers=bearer(changer["access_token"]),
    )
    # Its refresh token is refused like every older token (the version moved),
    # so the session ends with the access token that made the change.
    assert client.simulate_post("/auth/refresh", headers=bearer(changer["refresh_token"])).status_code == 401
    session = store.get_session(claims(changer["access_token"])["sid"])
    assert session.expires_at == claims(changer["access_token"])["exp"]
    assert works(client, changer["access_token"])


def test_a_rename_alone_ends_no_session(client):
    changer, other = log_in(client), log_in(client)
    result = client.simulate_patch(
        "/api/users/1", json={"name": "renamed"}, headers=bearer(changer["access_token"])
    )
    assert result.status_code == 200
    assert len(sessions(client, changer["access_token"])) == 2
    assert works(client, other["access_token"])


def test_deleting_a_user_ends_all_its_sessions(client, store, clock):
    tokens, other = log_in(client), log_in(client)
    assert client.simulate_delete("/api/users/1", headers=bearer(tokens["access_token"])).status_code == 204
    assert store.list_sessions(1, clock()) == []
    assert store.get_session(claims(other["access_token"])["sid"]) is None
    assert (
        client.simulate_post("/api/ships", json=SHIP, headers=bearer(other["access_token"])).status_code
        == 401
    )


def test_logout_and_logout2_still_revoke_only_their_own_token(client):
    tokens = log_in(client)
    assert client.simulate_delete("/auth/logout", headers=bearer(tokens["access_token"])).json == {
        "message": "Successfully logged out."
    }
    assert_revoked(client.simulate_post("/api/ships", json=SHIP, headers=bearer(tokens["access_token"])))
    fresh = refresh(client, tokens["refresh_token"]).json["access_token"]
    assert works(client, fresh)
    assert client.simulate_delete("/auth/logout2", headers=bearer(tokens["refresh_token"])).status_code == 200
    assert_revoked(refresh(client, tokens["refresh_token"]))
    assert works(client, fresh)  # the session's access tokens live on


# --- rotation ----------------------------------------------------------------
def test_rotation_answers_both_tokens_and_uses_up_the_refresh_token(rotating, clock):
    tokens = log_in(rotating)
    sid = claims(tokens["refresh_token"])["sid"]
    chain = [tokens["refresh_token"]]
    for _ in range(3):
        clock.advance(60)
        result = refresh(rotating, chain[-1])
        assert result.status_code == 200
        assert set(result.json) == {"access_token", "refresh_token"}
        assert result.headers["Cache-Control"] == "no-store"
        assert {claims(t)["sid"] for t in result.json.values()} == {sid}
        assert result.json["refresh_token"] not in chain
        assert works(rotating, result.json["access_token"])
        chain.append(result.json["refresh_token"])
    assert len({claims(t)["jti"] for t in chain}) == 4


def test_a_second_refresh_within_the_grace_window_gets_the_same_successor(rotating, clock):
    tokens = log_in(rotating)
    first = refresh(rotating, tokens["refresh_token"])
    clock.advance(9.5)  # the default grace window is 10 s

    second = refresh(rotating, tokens["refresh_token"])

    assert second.status_code == 200
    assert second.json["refresh_token"] == first.json["refresh_token"]  # one chain, not two
    assert second.json["access_token"] != first.json["access_token"]
    assert works(rotating, first.json["access_token"])
    assert works(rotating, second.json["access_token"])
    assert refresh(rotating, first.json["refresh_token"]).status_code == 200  # the chain goes on


def test_reuse_after_the_grace_window_ends_the_whole_session(rotating, clock):
    tokens = log_in(rotating)
    other = log_in(rotating)
    successor = refresh(rotating, tokens["refresh_token"]).json
    clock.advance(10)

    assert_revoked(refresh(rotating, tokens["refresh_token"]))

    for access in (tokens["access_token"], successor["access_token"]):
        assert_revoked(rotating.simulate_post("/api/ships", json=SHIP, headers=bearer(access)))
    assert_revoked(refresh(rotating, successor["refresh_token"]))
    assert_revoked(refresh(rotating, tokens["refresh_token"]))
    assert [s["id"] for s in sessions(rotating, other["access_token"])] == [
        claims(other["access_token"])["sid"]
    ]


def test_an_older_used_up_token_is_reuse_even_within_the_grace_window(rotating, clock):
    tokens = log_in(rotating)
    second = refresh(rotating, tokens["refresh_token"]).json
    third = refresh(rotating, second["refresh_token"]).json
    clock.advance(1)

    assert_revoked(refresh(rotating, tokens["refresh_token"]))  # two steps back
    assert_revoked(refresh(rotating, third["refresh_token"]))


def test_zero_grace_makes_any_second_use_reuse(make_client):
    client = make_client(refresh_rotation=True, refresh_reuse_grace=0)
    tokens = log_in(client)
    successor = refresh(client, tokens["refresh_token"]).json
    assert_revoked(refresh(client, tokens["refresh_token"]))
    assert_revoked(refresh(client, successor["refresh_token"]))


def test_turning_rotation_off_keeps_used_up_tokens_used_up(make_client, clock):
    on = make_client(refresh_rotation=True)
    tokens = log_in(on)
    successor = refresh(on, tokens["refresh_token"]).json
    off = make_client()
    assert set(refresh(off, successor["refresh_token"]).json) == {"access_token"}
    clock.advance(11)
    assert_revoked(refresh(off, tokens["refresh_token"]))
    assert_revoked(refresh(off, successor["refresh_token"]))


def test_a_token_from_before_sessions_still_refreshes(rotating, settings, clock):
    # Signed with the server's key, as tokens issued before this release are.
    now = int(clock())
    legacy = jwt.encode(
        {
            "sub": "1",
            "type": "refresh",
            "jti": "legacy-jti",
            "ver": 0,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        },
        settings.secret_key,
        algorithm="HS256",
    )
    result = refresh(rotating, legacy)
    assert result.status_code == 200
    assert set(result.json) == {"access_token"}
    assert "sid" not in claims(result.json["access_token"])


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the document says what the server answers --------------------------------
@pytest.mark.parametrize("rotation, model", [(False, "AccessToken"), (True, "TokenPair")])
def test_openapi_describes_the_refresh_this_server_gives(make_client, rotation, model):
    import jsonschema

    client = make_client(refresh_rotation=rotation, introspection_keys=("k" * 32,))
    doc = client.simulate_get("/openapi.json").json
    tokens = log_in(client)

    def validate(path, method, status, body):
        schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)

    refresh_schema = doc["paths"]["/auth/refresh"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    assert refresh_schema == {"$ref": f"#/components/schemas/{model}"}
    validate("/auth/refresh", "post", "200", refresh(client, tokens["refresh_token"]).json)
    validate("/api/sessions", "get", "200", sessions(client, tokens["access_token"]))
    for token in (tokens["access_token"], "garbage"):
        answer = client.simulate_post(
            "/auth/introspect", json={"token": token}, headers=bearer(tokens["access_token"])
        )
        validate("/auth/introspect", "post", "200", answer.json)
    deleted = client.simulate_delete("/api/sessions", headers=bearer(tokens["access_token"]))
    validate("/api/sessions", "delete", "200", deleted.json)
    validate("/auth/revoke", "post", "200", client.simulate_post("/auth/revoke", json={"token": "x"}).json)
    bad = client.simulate_post("/auth/revoke", json={})
    schema = doc["components"]["responses"]["OAuthInvalidRequest"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(bad.json)
