"""Login, token refresh and logout (revoking the token that calls it)."""

from __future__ import annotations

import falcon

from fleet_api.auth import ACCESS, REFRESH, Tokens
from fleet_api.errors import bad_request, unauthorized
from fleet_api.passwords import PasswordHasher
from fleet_api.store import Store
from fleet_api.throttle import LoginThrottle

LOGGED_OUT = {"message": "Successfully logged out."}


def _no_store(resp: falcon.Response) -> None:
    resp.cache_control = ["no-store"]


class Login:
    def __init__(self, store: Store, tokens: Tokens, hasher: PasswordHasher, throttle: LoginThrottle) -> None:
        self._store = store
        self._tokens = tokens
        self._hasher = hasher
        self._throttle = throttle

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _credentials(req)
        username, password = body.get("username"), body.get("password")
        if not (username and password and isinstance(username, str) and isinstance(password, str)):
            raise bad_request("Username or password missing.")
        keys = self._throttle.keys(req, username)
        failures = self._throttle.check(keys)
        user = self._store.get_user_by_name(username)
        # Verify even for an unknown name, so timing does not tell names apart.
        if not self._hasher.verify(password, user.password_hash if user else None):
            self._throttle.failed(keys)
            raise unauthorized("Username or password invalid.")
        self._throttle.succeeded(keys, failures)
        _no_store(resp)
        resp.media = {
            "access_token": self._tokens.issue(user, ACCESS),
            "refresh_token": self._tokens.issue(user, REFRESH),
        }


def _credentials(req: falcon.Request) -> dict:
    """The login body; like the example, a non-JSON one counts as missing."""
    try:
        body = req.get_media(default_when_empty=None)
    except (falcon.HTTPUnsupportedMediaType, falcon.MediaMalformedError):
        body = None
    return body if isinstance(body, dict) else {}


class Refresh:
    auth = {"POST": REFRESH}

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _no_store(resp)
        resp.media = {"access_token": self._tokens.issue(req.context.user, ACCESS)}


class Logout:
    """DELETE revokes the presented token: access on /auth/logout, refresh on /auth/logout2."""

    def __init__(self, store: Store, token_type: str) -> None:
        self._store = store
        self.auth = {"DELETE": token_type}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        claims = req.context.claims
        self._store.revoke_token(claims["jti"], claims["exp"])
        resp.media = LOGGED_OUT
