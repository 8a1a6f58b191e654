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

from fleet_api.errors import TokenUnauthorized, TokenUnprocessable, unauthorized
from fleet_api.store import Store, TokenId, User

ACCESS = "access"
REFRESH = "refresh"
ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "jti", "sub", "type"]
VERIFIED_CACHE_SIZE = 4096  # tokens per worker whose signature we already checked
MAX_SID_LENGTH = 64


class Tokens:
    """Issues and verifies tokens signed with one secret and one algorithm."""

    def __init__(self, secret_key: str, access_ttl: int, refresh_ttl: int, clock=time.time) -> None:
        self._key = secret_key
        self._ttl = {ACCESS: access_ttl, REFRESH: refresh_ttl}
        self._clock = clock
        # A client sends the same token many times; its signature and claims
        # can't change, so they are checked once (keyed by the exact token
        # text) and only expiry is checked again. Revocation and the user are
        # still asked of the store on every request.
        self._verified: dict[str, dict] = {}

    def new_id(self, token_type: str) -> TokenId:
        """A fresh jti with this type's lifetime from now."""
        now = int(self._clock())
        return TokenId(str(uuid.uuid4()), now, now + self._ttl[token_type])

    def issue(self, user: User, token_type: str, sid: str | None = None) -> str:
        return self.encode(user, token_type, self.new_id(token_type), sid)

    def encode(self, user: User, token_type: str, ident: TokenId, sid: str | None = None) -> str:
        """The token for `ident`; the same arguments give the same bytes
        (HS256 is deterministic), which is how a refresh within the grace
        window hands out the very successor the first one got."""
        claims = {
            "sub": str(user.id),
            "type": token_type,
            "jti": ident.jti,
            "ver": user.token_version,
            "iat": ident.iat,
            "nbf": ident.iat,
            "exp": ident.exp,
        }
        if sid is not None:
            claims["sid"] = sid
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str) -> dict:
        """Verified claims, or the documented 401/422 error."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] <= self._clock():  # PyJWT's rule, with no leeway
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
        sid = claims.get("sid")
        if sid is not None and not (isinstance(sid, str) and 0 < len(sid) <= MAX_SID_LENGTH):
            raise TokenUnprocessable("Invalid session id")
        return claims


class AuthMiddleware:
    """Checks the bearer token for responders that declare they need one.

    On success `req.context.claims` holds the verified claims and
    `req.context.user` the current user.
    """

    def __init__(self, tokens: Tokens, store: Store, clock=time.time) -> None:
        self._tokens = tokens
        self._store = store
        self._clock = clock

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        required = getattr(resource, "auth", {}).get(req.method)
        if required is None:
            return
        req.context.claims, req.context.user = self.check(bearer_token(req), required)

    def check(self, token: str, required: str | None) -> tuple[dict, User]:
        """(claims, user) of a live token of type `required` (any type when
        None), or the token layer's error. A token of an ended session is
        revoked: its `sid` is checked in the same store query as its jti."""
        claims = self._tokens.decode(token)
        if required is not None and claims["type"] != required:
            raise TokenUnprocessable(f"Only {required} tokens are allowed")
        user, revoked = self._store.token_subject(
            int(claims["sub"]), claims["jti"], claims.get("sid"), self._clock()
        )
        if revoked:
            raise TokenUnauthorized("Token has been revoked")
        if user is None:
            # The example's own refresh handler answers a deleted user in its
            # handler shape; everywhere else this is the token layer's word.
            if required == REFRESH:
                raise unauthorized("Unknown user.")
            raise TokenUnauthorized("Unknown user.")
        if claims.get("ver", 0) != user.token_version and claims["jti"] != user.kept_jti:
            raise TokenUnauthorized("Token has been revoked")
        return claims, user


def bearer_token(req: falcon.Request) -> str:
    header = req.get_header("Authorization")
    if not header:
        raise TokenUnauthorized("Missing Authorization Header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise TokenUnprocessable("Bad Authorization header. Expected value 'Bearer <JWT>'")
    return token.strip()
