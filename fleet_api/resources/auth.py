"""Login, token refresh and logout (revoking the token that calls it)."""

from __future__ import annotations

import falcon

from fleet_api.auth import ACCESS, REFRESH, Tokens
from fleet_api.errors import bad_request, unauthorized
from fleet_api.metrics import Metrics
from fleet_api.passwords import PasswordHasher
from fleet_api.store import Store
from fleet_api.throttle import LoginThrottle, TooManyAttempts

LOGGED_OUT = {"message": "Successfully logged out."}


def _no_store(resp: falcon.Response) -> None:
    resp.cache_control = ["no-store"]


class Login:
    def __init__(
        self, store: Store, tokens: Tokens, hasher: PasswordHasher, throttle: LoginThrottle, metrics: Metrics,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._hasher = hasher
        self._throttle = throttle
        self._metrics = metrics

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _credentials(req)
        username, password = body.get("username"), body.get("password")
        if not (username and password and isinstance(username, str) and isinstance(password, str)):
            raise bad_request("Username or password missing.")
        keys = self._throttle.keys(req, username)
        try:
            quota = self._throttle.check(keys)
        except TooManyAttempts:
            self._metrics.login("throttled")
            raise
        user = self._store.get_user_by_name(username)
        # Verify even for an unknown name, so timing does not tell names apart.
        if not self._hasher.verify(password, user.password_hash if user else None):
            quota = self._throttle.failed(keys)
            self._metrics.login("invalid")
            raise unauthorized("Username or password invalid.", self._throttle.headers(quota))
        quota = self._throttle.succeeded(keys, quota)
        self._metrics.login("ok")
        req.context.user = user  # for the access log's user id
        resp.set_headers(self._throttle.headers(quota))
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

    def __init__(self, store: Store, token_type: str, metrics: Metrics) -> None:
        self._store = store
        self.auth = {"DELETE": token_type}
        self._metrics = metrics
        self._reason = "logout" if token_type == ACCESS else "logout2"

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        claims = req.context.claims
        self._store.revoke_token(claims["jti"], claims["exp"])
        self._metrics.token_revoked(self._reason)
        resp.media = LOGGED_OUT
