"""Login, token refresh and logout (revoking the token that calls it)."""

from __future__ import annotations

import falcon
import pydantic

from fleet_api.auth import ACCESS, REFRESH
from fleet_api.errors import bad_request, unauthorized
from fleet_api.metrics import Metrics
from fleet_api.openapi import Operation, body, ok, operation, ref
from fleet_api.passwords import PasswordHasher
from fleet_api.resources import media_type
from fleet_api.schemas import AccessToken, Credentials, Message, TokenPair
from fleet_api.sessions import Sessions
from fleet_api.store import Store
from fleet_api.throttle import LoginThrottle, TooManyAttempts

LOGGED_OUT = {"message": "Successfully logged out."}
MISSING = "Username or password missing."
INVALID = "Username or password invalid."


def _no_store(resp: falcon.Response) -> None:
    resp.cache_control = ["no-store"]


class Login:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._hasher = hasher
        self._throttle = throttle
        self._metrics = metrics

    @operation(
        "auth",
        "login",
        request_body=body(Credentials),
        responses={
            200: ok("The tokens.", ref(TokenPair), ("Cache-Control", "RateLimit-Policy", "RateLimit"))
        },
        errors=(400, 401, 413, 429),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Log in: an access token and a refresh token

        A body that is not JSON counts as missing credentials (400). Failed logins
        are counted per user name and per client address: past the limit, 429 with
        Retry-After, even for the right password.
        """
        credentials = _credentials(req)
        username, password = credentials.username, credentials.password
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
            raise unauthorized(INVALID, self._throttle.headers(quota))
        quota = self._throttle.succeeded(keys, quota)
        self._metrics.login("ok")
        req.context.user = user  # for the access log's user id
        resp.set_headers(self._throttle.headers(quota))
        _no_store(resp)
        resp.media = self._sessions.start(req, user)  # exactly {access_token, refresh_token}


def _credentials(req: falcon.Request) -> Credentials:
    """The login body, checked by the model the document shows, its failures
    in the example's words. Like the example (`if not request.is_json`), a body
    not declared JSON is a bare 400; a JSON one that isn't an object counts as
    missing credentials (the example answers those with an HTML page or a 500)."""
    if not _is_json(req.content_type):
        raise falcon.HTTPBadRequest()
    try:
        data = req.get_media(default_when_empty=None)
    except (falcon.HTTPUnsupportedMediaType, falcon.MediaMalformedError):
        data = None
    try:
        return Credentials.model_validate(data if isinstance(data, dict) else {})
    except pydantic.ValidationError as exc:
        # The example's `if not username or not password` comes first: absent,
        # empty or any falsy value is "missing"; another non-string it looks up
        # as a name and finds no one.
        if any(error["type"] == "missing" or not error["input"] for error in exc.errors()):
            raise bad_request(MISSING) from None
        raise unauthorized(INVALID) from None


def _is_json(content_type: str | None) -> bool:
    """Werkzeug's `is_json`: application/json or any application/*+json."""
    media = media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


_REFRESH = Operation(
    "auth",
    "refreshToken",
    "A new access token for a refresh token",
    responses={200: ok("The new access token.", ref(AccessToken), ("Cache-Control",))},
)
_ROTATING_REFRESH = Operation(
    "auth",
    "refreshToken",
    "A new access token and the successor refresh token (rotation on)",
    "The presented refresh token is used up. Presented again within "
    "FLEET_REFRESH_REUSE_GRACE seconds it answers the same successor; after that it is reuse: "
    "401 `Token has been revoked`, and every token of its session is dead.",
    responses={200: ok("The new tokens.", ref(TokenPair), ("Cache-Control",))},
)


class Refresh:
    """The example's `{access_token}`; with rotation on also the successor
    `refresh_token` (see fleet_api/sessions.py for reuse and the grace window)."""

    auth = {"POST": REFRESH}
    # The example's handler, not its token layer, refuses a deleted user, so
    # the answer has the handler shape {"error": "Unauthorized", "message": ...}.
    handles_unknown_user = True

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self.operations = {"POST": _ROTATING_REFRESH if sessions.rotation else _REFRESH}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.context.user is None:
            raise unauthorized("Unknown user.")
        body = self._sessions.refresh(req.context.claims, req.context.user)
        _no_store(resp)
        resp.media = body


class Logout:
    """DELETE revokes the presented token: access on /auth/logout, refresh on /auth/logout2."""

    def __init__(self, store: Store, token_type: str, metrics: Metrics) -> None:
        self._store = store
        self.auth = {"DELETE": token_type}
        self._metrics = metrics
        self._reason = "logout" if token_type == ACCESS else "logout2"
        self.operations = {
            "DELETE": Operation(
                "auth",
                "logout" if token_type == ACCESS else "logoutRefresh",
                f"Log out: revoke the {token_type} token that calls this",
                responses={200: ok("The token is revoked.", ref(Message))},
            )
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        claims = req.context.claims
        self._store.revoke_token(claims["jti"], claims["exp"])
        self._metrics.token_revoked(self._reason)
        resp.media = LOGGED_OUT
