"""POST /auth/revoke (RFC 7009) and POST /auth/introspect (RFC 7662).

Both take `token=...` form-encoded, as the RFCs say (RFC 7009 section 2.1,
RFC 7662 section 2.1), or as a JSON object; a missing, repeated or
non-string `token` is 400 `invalid_request` (RFC 6749 sections 3.1, 5.2).
Form bodies are parsed here and nowhere else: the example's routes stay JSON only.
"""

from __future__ import annotations

import base64
import hmac

import falcon
import pydantic

from fleet_api.auth import ACCESS, AuthMiddleware, Tokens, bearer_token
from fleet_api.errors import TOKEN_ERRORS, OAuthError, invalid_request
from fleet_api.openapi import SECURITY_SCHEME, ok, operation, ref
from fleet_api.resources import media_type
from fleet_api.schemas import ActiveToken, InactiveToken, Revoked, TokenRequest
from fleet_api.sessions import Sessions

FORM = "application/x-www-form-urlencoded"
INACTIVE = {"active": False}

# RFC 7009 section 2.1 / RFC 7662 section 2.1: form-encoded. A JSON object with
# the same members is accepted too, but documented once only: a generated
# client (openapi-python-client) emits broken code for one body in two media types.
_TOKEN_BODY = {
    "required": True,
    "description": "Form-encoded, as the RFCs send it; a JSON object with the same members works too.",
    "content": {FORM: {"schema": ref(TokenRequest)}},
}
_INVALID_REQUEST = {"$ref": "#/components/responses/OAuthInvalidRequest"}


def token_parameters(req: falcon.Request) -> tuple[str, str | None]:
    """(token, token_type_hint) from a form or JSON body, checked by the model
    the document shows, else invalid_request."""
    media = media_type(req.content_type)
    if media == FORM:
        try:
            text = req.bounded_stream.read().decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request("The body is not UTF-8.") from None
        params = falcon.uri.parse_query_string(text, keep_blank=True, csv=False)
    elif media == falcon.MEDIA_JSON:
        try:
            params = req.get_media(default_when_empty=None)
        except falcon.MediaMalformedError:
            raise invalid_request("The body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise invalid_request("The body must be a JSON object.")
    else:
        raise invalid_request(f"Send the parameters as {FORM} (or {falcon.MEDIA_JSON}).")
    if isinstance(params.get("token"), list) or isinstance(params.get("token_type_hint"), list):
        raise invalid_request("A parameter was given more than once.")  # RFC 6749 section 3.1: at most once
    try:
        checked = TokenRequest.model_validate(params)
    except pydantic.ValidationError as exc:
        if any(error["loc"][:1] == ("token",) for error in exc.errors()):
            raise invalid_request("The token parameter is missing.") from None
        raise invalid_request("token_type_hint must be a string.") from None
    # RFC 7009 section 2.1: the hint may be ignored; each token names its own type.
    return checked.token, checked.token_type_hint


def _no_store(resp: falcon.Response) -> None:
    resp.cache_control = ["no-store"]


class Revoke:
    """Holding a token is the right to revoke it: no other authentication."""

    def __init__(self, tokens: Tokens, sessions: Sessions) -> None:
        self._tokens = tokens
        self._sessions = sessions

    @operation(
        "auth",
        "revokeToken",
        request_body=_TOKEN_BODY,
        responses={
            200: ok("Done, or the token was not valid anyway.", ref(Revoked), ("Cache-Control",)),
            400: _INVALID_REQUEST,
        },
        errors=(413,),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Revoke a token (RFC 7009)

        No other authentication: holding a token is the right to revoke it.
        A refresh token ends its whole session; an access token is revoked alone.
        """
        token, _ = token_parameters(req)
        try:
            claims = self._tokens.decode(token)
        except TOKEN_ERRORS:
            claims = None  # RFC 7009 section 2.2: an invalid token is not an error
        if claims is not None:
            self._sessions.revoke(claims)
        _no_store(resp)
        resp.media = {}


class Introspect:
    """RFC 7662. The caller authenticates with `Authorization: Bearer <access
    token>` (and then sees only its own user's tokens), or, as a resource
    server, with one of FLEET_INTROSPECTION_KEYS, either as `Authorization:
    Bearer <key>` or as the password of HTTP Basic (any user name; RFC 7662
    section 2.1 allows both)."""

    def __init__(self, auth: AuthMiddleware, sessions: Sessions, keys: tuple[str, ...]) -> None:
        self._auth = auth
        self._sessions = sessions
        self._keys = tuple(key.encode() for key in keys)

    def _is_key(self, presented: str) -> bool:
        given = presented.encode("utf-8", "surrogatepass")
        matched = False
        for key in self._keys:  # every key compared, in constant time each
            matched |= hmac.compare_digest(given, key)
        return matched

    def _caller(self, req: falcon.Request) -> int | None:
        """The calling user's id, or None for a resource server with a key."""
        # Split on whitespace, as bearer_token does (RFC 9110 section 11.4).
        scheme, value = ((req.get_header("Authorization") or "").split(None, 1) + ["", ""])[:2]
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
                password = ""
            if password and self._is_key(password):
                return None
            raise OAuthError(
                "invalid_client",
                "Unknown introspection key.",
                falcon.HTTP_401,
                ['Basic realm="introspection"'],
            )
        token = bearer_token(req)
        if self._keys and self._is_key(token):
            return None
        _, user = self._auth.check(token, ACCESS)
        return user.id

    @operation(
        "auth",
        "introspectToken",
        # No `auth` entry: it checks its caller itself (see _caller).
        security=(SECURITY_SCHEME, "introspectionKey", "introspectionBasic"),
        token_type=ACCESS,
        request_body=_TOKEN_BODY,
        responses={
            200: ok(
                'What the token is, or exactly `{"active": false}`.',
                {"oneOf": [ref(ActiveToken), ref(InactiveToken)]},
                ("Cache-Control",),
            ),
            400: _INVALID_REQUEST,
            401: ok(
                "No, or a bad, token or key.",
                {"anyOf": [ref("Error"), ref("OAuthError")]},
                ("WWW-Authenticate",),
            ),
        },
        errors=(413, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Introspect a token (RFC 7662)

        With an access token the caller sees only its own user's tokens; a resource
        server sends one of FLEET_INTROSPECTION_KEYS as `Authorization: Bearer <key>`
        or as the password of HTTP Basic.
        """
        caller = self._caller(req)
        token, _ = token_parameters(req)
        _no_store(resp)
        resp.media = self._describe(token, caller)

    def _describe(self, token: str, caller: int | None) -> dict:
        # RFC 7662 section 2.2: anything not live is exactly {"active": false},
        # with no hint of why.
        try:
            claims, user = self._auth.check(token, None)
        except TOKEN_ERRORS:
            return INACTIVE
        if caller is not None and user.id != caller:
            return INACTIVE
        if not self._sessions.is_live_refresh(claims):
            return INACTIVE
        body = {
            "active": True,
            "sub": claims["sub"],
            "username": user.name,
            "token_type": claims["type"],
            "jti": claims["jti"],
            "iat": claims["iat"],
            "exp": claims["exp"],
        }
        if claims.get("sid") is not None:
            body["sid"] = claims["sid"]
        return body
