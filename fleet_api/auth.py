"""JWT access and refresh tokens, and the middleware that checks them.

Resources declare which token each responder needs in a class attribute,
`auth = {"POST": ACCESS}`; the middleware does the rest, in the order
flask-jwt-extended uses: decode and verify -> token type -> blocklist -> user.
"""

from __future__ import annotations

import time
import uuid

import falcon
import jwt

from fleet_api.errors import TokenUnauthorized, TokenUnprocessable
from fleet_api.store import Store, User

ACCESS = "access"
REFRESH = "refresh"
ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "jti", "sub", "type"]
VERIFIED_CACHE_SIZE = 4096  # tokens per worker whose signature we already checked


class Tokens:
    """Issues and verifies tokens signed with one secret and one algorithm."""

    def __init__(self, secret_key: str, access_ttl: int, refresh_ttl: int) -> None:
        self._key = secret_key
        self._ttl = {ACCESS: access_ttl, REFRESH: refresh_ttl}
        # A client sends the same token many times; its signature and claims
        # can't change, so they are checked once (keyed by the exact token
        # text) and only expiry is checked again. Revocation and the user are
        # still asked of the store on every request.
        self._verified: dict[str, dict] = {}

    def issue(self, user: User, token_type: str) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user.id),
            "type": token_type,
            "jti": str(uuid.uuid4()),
            "ver": user.token_version,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl[token_type],
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str) -> dict:
        """Verified claims, or the documented 401/422 error."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] <= time.time():  # PyJWT's rule, with no leeway
                self._verified.pop(token, None)
                raise TokenUnauthorized("Token has expired")
            return claims
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenUnauthorized("Token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenUnprocessable(str(exc) or "Invalid token") from None
        sub = claims["sub"]
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 18):
            raise TokenUnprocessable("Invalid subject")
        if type(claims.get("ver", 0)) is not int:
            raise TokenUnprocessable("Invalid token version")
        return claims


class AuthMiddleware:
    """Checks the bearer token for responders that declare they need one.

    On success `req.context.claims` holds the verified claims and
    `req.context.user` the current user.
    """

    def __init__(self, tokens: Tokens, store: Store) -> None:
        self._tokens = tokens
        self._store = store

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        required = getattr(resource, "auth", {}).get(req.method)
        if required is None:
            return
        claims = self._tokens.decode(_bearer_token(req))
        if claims["type"] != required:
            raise TokenUnprocessable(f"Only {required} tokens are allowed")
        user, revoked = self._store.token_subject(int(claims["sub"]), claims["jti"])
        if revoked:
            raise TokenUnauthorized("Token has been revoked")
        if user is None:
            # A resource that answers a deleted user itself (the example's
            # refresh handler does) gets `user = None`; everywhere else a
            # deleted user's token dies here, in the token layer's shape.
            if not getattr(resource, "handles_unknown_user", False):
                raise TokenUnauthorized("Unknown user.")
        elif claims.get("ver", 0) != user.token_version and claims["jti"] != user.kept_jti:
            raise TokenUnauthorized("Token has been revoked")
        req.context.claims = claims
        req.context.user = user


def _bearer_token(req: falcon.Request) -> str:
    header = req.get_header("Authorization")
    if not header:
        raise TokenUnauthorized("Missing Authorization Header")
    # Split on any whitespace, as flask-jwt-extended does; the scheme itself
    # is case-insensitive (RFC 9110 section 11.1).
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise TokenUnprocessable("Bad Authorization header. Expected value 'Bearer <JWT>'")
    return parts[1]
