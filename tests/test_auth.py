"""POST /auth/login, POST /auth/refresh, DELETE /auth/logout and /auth/logout2,
the tokens they hand out, and how the bearer-token check answers (issue 2)."""

from __future__ import annotations

import secrets
import time

import falcon.testing
import jwt
import pytest
from conftest import Session
from support.answers import BAD_HEADER, DELETED_USER, EXPIRED, NO_HEADER, ONLY_ACCESS, ONLY_REFRESH, REVOKED
from support.bodies import TIE_FIGHTER as SHIP

from fleet_api.app import create_app
from fleet_api.settings import Settings

LOGGED_OUT = {"message": "Successfully logged out."}
MISSING = {"error": "Bad Request", "message": "Username or password missing."}
BARE_400 = {"error": "Bad Request"}
INVALID = {"error": "Unauthorized", "message": "Username or password invalid."}
BAD_SIGNATURE = {"error": "Signature verification failed"}
# ...except the refresh handler's own answer for a deleted user.
UNKNOWN_USER = {"error": "Unauthorized", "message": "Unknown user."}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str, settings: Settings) -> dict:
    return jwt.decode(token, settings.secret_key, algorithms=["HS256"])


def create_ship(client, headers):
    """An access-token route: 201 when the token is good."""
    return client.simulate_post("/api/ships", json=SHIP, headers=headers)


def refresh(client, headers):
    return client.simulate_post("/auth/refresh", headers=headers)


def change_password(client, session, user_id=1, name="user", password="new password"):
    return client.simulate_put(
        f"/api/users/{user_id}", json={"name": name, "password": password}, headers=session.headers
    )


def assert_unauthorized(result, body):
    assert result.status_code == 401, result.text
    assert result.json == body
    assert result.headers.get("WWW-Authenticate") == "Bearer"


def assert_unprocessable(result, body):
    assert result.status_code == 422, result.text
    assert result.json == body
    assert "WWW-Authenticate" not in result.headers


# --- login -----------------------------------------------------------------


def test_login_returns_an_access_and_a_refresh_token(client):
    result = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("application/json")
    assert set(result.json) == {"access_token", "refresh_token"}
    assert all(isinstance(token, str) and token for token in result.json.values())


def test_login_works_for_every_seed_user(client, settings):
    result = client.simulate_post("/auth/login", json={"username": "guest", "password": "guest"})

    assert result.status_code == 200
    assert claims_of(result.json["access_token"], settings)["sub"] == "2"


def test_login_response_is_not_cacheable(client):
    result = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})

    assert result.headers["Cache-Control"] == "no-store"


def test_login_without_username_or_password_is_400_missing(client, subtests):
    for body in (
        {},
        {"password": "password"},
        {"username": "user"},
        {"username": "", "password": "password"},
        {"username": "user", "password": ""},
        {"username": "", "password": ""},
    ):
        with subtests.test(body=body):
            result = client.simulate_post("/auth/login", json=body)

            assert result.status_code == 400
            assert result.json == MISSING


def test_login_without_a_body_is_a_bare_400(client):
    result = client.simulate_post("/auth/login")

    assert result.status_code == 400
    assert result.json == BARE_400


def test_login_with_an_empty_json_body_is_400_missing(client):
    result = client.simulate_post("/auth/login", body="", content_type="application/json")

    assert result.status_code == 400
    assert result.json == MISSING


def test_login_with_credentials_that_are_not_strings_is_401_invalid(client, subtests):
    for body in (
        {"username": 1, "password": "password"},
        {"username": "user", "password": 123},
        {"username": ["user"], "password": "password"},
    ):
        with subtests.test(body=body):
            assert_unauthorized(client.simulate_post("/auth/login", json=body), INVALID)


def test_login_with_a_body_not_declared_json_is_a_bare_400(client, subtests):
    for content_type, body in (
        ("application/x-www-form-urlencoded", "username=user&password=password"),
        ("text/plain", "user:password"),
        (None, "username=user&password=password"),
    ):
        with subtests.test(content_type=content_type):
            result = client.simulate_post("/auth/login", body=body, content_type=content_type)

            assert result.status_code == 400
            assert result.json == BARE_400


def test_login_as_unknown_user_is_401_invalid(client):
    result = client.simulate_post("/auth/login", json={"username": "nobody", "password": "password"})

    assert_unauthorized(result, INVALID)


def test_login_with_wrong_password_is_401_invalid(client):
    result = client.simulate_post("/auth/login", json={"username": "user", "password": "guest"})

    assert_unauthorized(result, INVALID)


def test_login_with_another_users_password_is_401_invalid(client):
    result = client.simulate_post("/auth/login", json={"username": "guest", "password": "password"})

    assert_unauthorized(result, INVALID)


# --- token claims ----------------------------------------------------------


def test_tokens_are_signed_hs256_with_the_secret_key(auth, settings):
    for token in (auth.access_token, auth.refresh_token):
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        claims_of(token, settings)  # verifies the signature or raises


@pytest.mark.parametrize(("kind", "lifetime"), [("access", 15 * 60), ("refresh", 30 * 24 * 3600)])
def test_token_claims(auth, settings, kind, lifetime):
    claims = claims_of(getattr(auth, f"{kind}_token"), settings)

    assert claims["sub"] == "1"
    assert claims["type"] == kind
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["exp"] - claims["iat"] == lifetime


def test_every_token_has_its_own_jti(login, settings):
    first, second = login(), login()
    tokens = [first.access_token, first.refresh_token, second.access_token, second.refresh_token]

    jtis = {claims_of(token, settings)["jti"] for token in tokens}

    assert len(jtis) == 4


def test_token_lifetimes_come_from_settings():
    settings = Settings(
        secret_key=secrets.token_urlsafe(48),
        store_url="memory://",
        scrypt_n=16,
        access_token_ttl=123,
        refresh_token_ttl=4567,
    )
    client = falcon.testing.TestClient(create_app(settings))
    tokens = client.simulate_post("/auth/login", json={"username": "user", "password": "password"}).json

    access = claims_of(tokens["access_token"], settings)
    refreshed = claims_of(tokens["refresh_token"], settings)

    assert access["exp"] - access["iat"] == 123
    assert refreshed["exp"] - refreshed["iat"] == 4567


# --- refresh ---------------------------------------------------------------


def test_refresh_returns_a_new_access_token(client, auth, settings):
    result = refresh(client, auth.refresh_headers)

    assert result.status_code == 200
    assert set(result.json) == {"access_token"}
    claims = claims_of(result.json["access_token"], settings)
    assert claims["type"] == "access"
    assert claims["sub"] == "1"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["jti"] != claims_of(auth.access_token, settings)["jti"]


def test_refreshed_access_token_works(client, auth):
    token = refresh(client, auth.refresh_headers).json["access_token"]

    assert create_ship(client, bearer(token)).status_code == 201


def test_refresh_response_is_not_cacheable(client, auth):
    result = refresh(client, auth.refresh_headers)

    assert result.headers["Cache-Control"] == "no-store"


def test_refresh_without_authorization_header_is_401(client):
    assert_unauthorized(refresh(client, {}), NO_HEADER)


def test_refresh_with_an_access_token_is_422_only_refresh(client, auth):
    assert_unprocessable(refresh(client, auth.headers), ONLY_REFRESH)


def test_refresh_for_a_deleted_user_is_401_unknown_user(client, auth):
    assert client.simulate_delete("/api/users/1", headers=auth.headers).status_code == 204

    assert_unauthorized(refresh(client, auth.refresh_headers), UNKNOWN_USER)


# --- logout ----------------------------------------------------------------


# DELETE /auth/logout revokes the access token it is given, /auth/logout2 the
# refresh token; each case runs for both, with the token kind it expects.
LOGOUTS = pytest.mark.parametrize(
    ("route", "kind"),
    [("/auth/logout", "access"), ("/auth/logout2", "refresh")],
    ids=["logout", "logout2"],
)
OTHER_KIND = {"access": "refresh", "refresh": "access"}
WRONG_KIND = {"access": ONLY_ACCESS, "refresh": ONLY_REFRESH}
USED = {"access": 201, "refresh": 200}  # the status of use_token() with a live token


def token_headers(auth, kind: str) -> dict:
    return auth.headers if kind == "access" else auth.refresh_headers


def use_token(client, auth, kind: str):
    """What the token is for: an access token creates a ship, a refresh token refreshes."""
    return create_ship(client, auth.headers) if kind == "access" else refresh(client, auth.refresh_headers)


@LOGOUTS
def test_logout_answers_successfully_logged_out(client, auth, route, kind):
    result = client.simulate_delete(route, headers=token_headers(auth, kind))

    assert result.status_code == 200
    assert result.json == LOGGED_OUT


@LOGOUTS
def test_logout_revokes_the_token_it_is_given(client, auth, route, kind):
    client.simulate_delete(route, headers=token_headers(auth, kind))

    assert_unauthorized(use_token(client, auth, kind), REVOKED)


@LOGOUTS
def test_logout_twice_is_401_revoked(client, auth, route, kind):
    client.simulate_delete(route, headers=token_headers(auth, kind))

    assert_unauthorized(client.simulate_delete(route, headers=token_headers(auth, kind)), REVOKED)


@LOGOUTS
def test_logout_leaves_the_other_token_of_the_pair_working(client, auth, route, kind):
    client.simulate_delete(route, headers=token_headers(auth, kind))

    assert use_token(client, auth, OTHER_KIND[kind]).status_code == USED[OTHER_KIND[kind]]


def test_logout_leaves_other_sessions_working(client, login):
    mine, other = login(), login()
    client.simulate_delete("/auth/logout", headers=mine.headers)

    assert create_ship(client, other.headers).status_code == 201


@LOGOUTS
def test_logout_with_the_other_kind_of_token_is_422(client, auth, route, kind):
    result = client.simulate_delete(route, headers=token_headers(auth, OTHER_KIND[kind]))

    assert_unprocessable(result, WRONG_KIND[kind])


@LOGOUTS
def test_logout_without_authorization_header_is_401(client, route, kind):
    assert_unauthorized(client.simulate_delete(route), NO_HEADER)


# --- the bearer-token check --------------------------------------------------


def test_access_route_without_authorization_header_is_401_missing_header(client):
    assert_unauthorized(create_ship(client, {}), NO_HEADER)


def test_access_route_with_a_refresh_token_is_422_only_access(client, auth):
    assert_unprocessable(create_ship(client, auth.refresh_headers), ONLY_ACCESS)


def _reissued(token: str, settings: Settings, key: str | None = None, **changes) -> str:
    """The same token's claims with `changes`, signed with `key` (the app's by default)."""
    claims = {**claims_of(token, settings), **changes}
    return jwt.encode(claims, key or settings.secret_key, algorithm="HS256")


def test_expired_access_token_is_401_token_has_expired(client, auth, settings):
    now = int(time.time())
    token = _reissued(auth.access_token, settings, iat=now - 1000, nbf=now - 1000, exp=now - 100)

    assert_unauthorized(create_ship(client, bearer(token)), EXPIRED)


def test_expired_refresh_token_is_401_token_has_expired(client, auth, settings):
    now = int(time.time())
    token = _reissued(auth.refresh_token, settings, iat=now - 1000, nbf=now - 1000, exp=now - 100)

    assert_unauthorized(refresh(client, bearer(token)), EXPIRED)


def test_access_token_expires_after_its_configured_lifetime(make_client, clock):
    client = make_client(access_token_ttl=60)
    token = Session(client).access_token
    clock.advance(59)
    assert create_ship(client, bearer(token)).status_code == 201

    clock.advance(1)  # the lifetime is up: expired on or after exp (RFC 7519 section 4.1.4)

    assert_unauthorized(create_ship(client, bearer(token)), EXPIRED)


def test_token_signed_with_another_key_is_422(client, auth, settings):
    forged = _reissued(auth.access_token, settings, key=secrets.token_urlsafe(48))

    assert_unprocessable(create_ship(client, bearer(forged)), BAD_SIGNATURE)


def test_token_with_tampered_claims_is_422(client, login, settings):
    guest = login("guest", "guest")
    header, _, signature = guest.access_token.split(".")
    as_user = _reissued(guest.access_token, settings, sub="1").split(".")[1]
    tampered = f"{header}.{as_user}.{signature}"

    assert_unprocessable(client.simulate_delete("/api/users/1", headers=bearer(tampered)), BAD_SIGNATURE)
    assert client.simulate_get("/api/users/1").status_code == 200


def test_unsigned_token_is_422(client, auth, settings):
    unsigned = jwt.encode(claims_of(auth.access_token, settings), None, algorithm="none")

    assert_unprocessable(
        create_ship(client, bearer(unsigned)), {"error": "The specified alg value is not allowed"}
    )


def test_token_missing_a_claim_is_422(client, auth, settings, subtests):
    for claim in ("sub", "type", "jti", "iat", "nbf", "exp"):
        with subtests.test(claim=claim):
            claims = claims_of(auth.access_token, settings)
            del claims[claim]
            token = jwt.encode(claims, settings.secret_key, algorithm="HS256")

            assert_unprocessable(
                create_ship(client, bearer(token)), {"error": f'Token is missing the "{claim}" claim'}
            )


@pytest.mark.parametrize(
    "token, message",
    [
        ("not-a-jwt", "Not enough segments"),
        ("abc.def", "Not enough segments"),
        ("a.b.c", "Invalid header padding"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.", "Signature verification failed"),
    ],
)
def test_malformed_token_is_422_with_pyjwts_message(client, token, message):
    assert_unprocessable(create_ship(client, bearer(token)), {"error": message})


def test_token_under_another_scheme_is_422_bad_header(client, auth):
    assert_unprocessable(create_ship(client, {"Authorization": f"Basic {auth.access_token}"}), BAD_HEADER)


def test_bearer_without_a_token_is_422_bad_header(client):
    assert_unprocessable(create_ship(client, {"Authorization": "Bearer"}), BAD_HEADER)


def test_bearer_with_two_words_after_it_is_422_bad_header(client, auth):
    assert_unprocessable(create_ship(client, bearer(f"{auth.access_token} extra")), BAD_HEADER)


def test_bearer_and_token_may_be_split_by_any_whitespace(client, auth):
    # flask-jwt-extended splits the header with str.split()
    assert create_ship(client, {"Authorization": f"Bearer \t {auth.access_token}"}).status_code == 201


# --- deleted users -----------------------------------------------------------


def test_deleted_users_access_token_is_401_at_once(client, auth):
    assert client.simulate_delete("/api/users/1", headers=auth.headers).status_code == 204

    assert_unauthorized(create_ship(client, auth.headers), DELETED_USER)


def test_deleted_users_other_sessions_are_401(client, login):
    first, second = login(), login()
    client.simulate_delete("/api/users/1", headers=first.headers)

    assert_unauthorized(create_ship(client, second.headers), DELETED_USER)
    assert_unauthorized(refresh(client, second.refresh_headers), UNKNOWN_USER)


def test_logout2_with_a_deleted_users_refresh_token_is_401_in_the_token_shape(client, auth):
    client.simulate_delete("/api/users/1", headers=auth.headers)

    assert_unauthorized(client.simulate_delete("/auth/logout2", headers=auth.refresh_headers), DELETED_USER)


def test_deleted_users_token_does_not_work_for_a_new_user_of_the_same_name(client, auth):
    client.simulate_delete("/api/users/1", headers=auth.headers)
    assert (
        client.simulate_post("/api/users", json={"name": "user", "password": "password"}).status_code == 201
    )

    assert_unauthorized(create_ship(client, auth.headers), DELETED_USER)
    assert_unauthorized(refresh(client, auth.refresh_headers), UNKNOWN_USER)


# --- password changes ------------------------------------------------------


def test_password_change_keeps_the_access_token_that_made_it(client, auth):
    assert change_password(client, auth).status_code == 200

    assert create_ship(client, auth.headers).status_code == 201


def test_password_change_revokes_the_users_other_access_tokens(client, login):
    changer, other = login(), login()
    change_password(client, changer)

    assert_unauthorized(create_ship(client, other.headers), REVOKED)


def test_password_change_revokes_the_users_refresh_tokens(client, login):
    changer, other = login(), login()
    change_password(client, changer)

    assert_unauthorized(refresh(client, changer.refresh_headers), REVOKED)
    assert_unauthorized(refresh(client, other.refresh_headers), REVOKED)


def test_password_change_revokes_access_tokens_from_an_earlier_refresh(client, login):
    changer, other = login(), login()
    refreshed = refresh(client, other.refresh_headers).json["access_token"]
    change_password(client, changer)

    assert_unauthorized(create_ship(client, bearer(refreshed)), REVOKED)


def test_password_change_leaves_other_users_tokens_working(client, login):
    changer, guest = login(), login("guest", "guest")
    change_password(client, changer)

    assert create_ship(client, guest.headers).status_code == 201
    assert refresh(client, guest.refresh_headers).status_code == 200


def test_password_change_lets_the_new_password_log_in_and_not_the_old(client, auth):
    change_password(client, auth, password="new password")

    old = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    new = client.simulate_post("/auth/login", json={"username": "user", "password": "new password"})
    assert_unauthorized(old, INVALID)
    assert new.status_code == 200


def test_tokens_issued_after_a_password_change_work(client, auth, login):
    change_password(client, auth, password="new password")
    fresh = login("user", "new password")

    assert create_ship(client, fresh.headers).status_code == 201
    assert refresh(client, fresh.refresh_headers).status_code == 200


def test_second_password_change_revokes_tokens_issued_after_the_first(client, login):
    changer = login()
    change_password(client, changer, password="second")
    between = login("user", "second")
    change_password(client, changer, password="third")

    assert_unauthorized(create_ship(client, between.headers), REVOKED)
    assert create_ship(client, changer.headers).status_code == 201


def test_resending_the_same_password_revokes_nothing(client, login):
    changer, other = login(), login()
    result = change_password(client, changer, name="renamed", password="password")

    assert result.status_code == 200
    assert create_ship(client, other.headers).status_code == 201
    assert refresh(client, other.refresh_headers).status_code == 200
    assert refresh(client, changer.refresh_headers).status_code == 200
