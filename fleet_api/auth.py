"""JWT access and refresh tokens, and the middleware that checks them.

Resources declare which token each responder needs in a class attribute,
`auth = {"POST": ACCESS}`; the middleware does the rest, in the order
flask-jwt-extended uses: decode and verify -> token type -> blocklist -> user.
"""

from __future__ import annotations

import re
import time
import uuid

import falcon
import jwt

from fleet_api.errors import TokenUnauthorized, TokenUnprocessable
from fleet_api.keys import KeyRing, SigningKey
from fleet_api.settings import HS256
from fleet_api.store import Store, TokenId, User

ACCESS = "access"
REFRESH = "refresh"
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "jti", "sub", "type"]
VERIFIED_CACHE_SIZE = 4096  # tokens per worker whose signature we already checked
# Header parameters that bring their own key, or point at one: trusting them
# would let the token choose what verifies it (RFC 8725 section 3.10), so a
# token carrying any of them is refused, whatever it is signed with.
FOREIGN_KEY_HEADERS = ("jwk", "jku", "x5u", "x5c")
SID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")  # a session id: what secrets.token_urlsafe(16) makes
# Ours are ~400 characters. PyJWT's base64 checks run in Python over the whole
# text (twice for a new token), so an anonymous 64 KiB "token" on /auth/revoke
# would cost milliseconds: anything longer than this is refused unread.
MAX_TOKEN_LENGTH = 4096


class Tokens:
    """Issues tokens signed with the key ring's signing key and `kid`, and
    verifies them with the key their `kid` names, in the ring's one algorithm.

    A token without `kid` (issued before kids existed) is accepted under HS256
    only, and checked against each secret in turn; under EdDSA and ES256 every
    token we ever issued has a `kid`, so one without is refused.
    """

    def __init__(self, keys: KeyRing, access_ttl: int, refresh_ttl: int, clock=time.time) -> None:
        self._keys = keys
        self._signer = self._keys.signer
        self._algorithms = [self._keys.algorithm]
        self._ttl = {ACCESS: access_ttl, REFRESH: refresh_ttl}
        self._clock = clock
        # A client sends the same token many times; its signature and claims
        # can't change, so they are checked once (keyed by the exact token
        # text) and only expiry is checked again. Revocation and the user are
        # still asked of the store on every request. Keys change only when
        # workers are replaced (restart, HUP), so no entry outlives its key.
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
        return jwt.encode(
            claims, self._signer.signing, algorithm=self._keys.algorithm, headers={"kid": self._signer.kid}
        )

    def decode(self, token: str) -> dict:
        """Verified claims, or the documented 401/422 error."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] <= self._clock():  # PyJWT's rule, with no leeway
                self._verified.pop(token, None)
                raise TokenUnauthorized("Token has expired")
            return claims
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenUnprocessable("Token is too long")
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict:
        try:
            candidates = self._keys_for(jwt.get_unverified_header(token))
            for key in candidates[:-1]:  # several only for a kid-less HS256 token
                try:
                    return self._checked(self._decode(token, key))
                except jwt.InvalidSignatureError:
                    continue
            claims = self._decode(token, candidates[-1])
        except jwt.ExpiredSignatureError:
            raise TokenUnauthorized("Token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenUnprocessable(str(exc) or "Invalid token") from None
        return self._checked(claims)

    def _keys_for(self, header: dict) -> list[SigningKey]:
        """The keys that may verify a token with this (unverified) header.
        The algorithm is pinned: the header must name ours, exactly."""
        if header.get("alg") != self._keys.algorithm:
            raise TokenUnprocessable("The specified alg value is not allowed")
        for name in FOREIGN_KEY_HEADERS:
            if name in header:
                raise TokenUnprocessable(f"The {name!r} header parameter is not accepted")
        if "crit" in header:
            # RFC 7515 section 4.1.11: we understand no extension, so must refuse.
            raise TokenUnprocessable("The 'crit' header parameter is not accepted")
        kid = header.get("kid")
        if kid is None:
            if self._keys.algorithm == HS256:
                return list(self._keys.keys)
            raise TokenUnprocessable("The token has no key id (kid)")
        key = self._keys.get(kid)
        if key is None:
            raise TokenUnprocessable("The token is signed with an unknown key (kid)")
        return [key]

    def _decode(self, token: str, key: SigningKey) -> dict:
        claims = jwt.decode(token, key.verifying, algorithms=self._algorithms, options=_DECODE_OPTIONS)
        _check_times(claims, self._clock())
        return claims

    @staticmethod
    def _checked(claims: dict) -> dict:
        sub = claims["sub"]
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 18):
            raise TokenUnprocessable("Invalid subject")
        if type(claims.get("ver", 0)) is not int:
            raise TokenUnprocessable("Invalid token version")
        sid = claims.get("sid")
        if sid is not None and not (isinstance(sid, str) and SID_PATTERN.fullmatch(sid)):
            raise TokenUnprocessable("Invalid session id")
        return claims


# PyJWT reads the wall clock for exp/nbf/iat; we check them against the
# injected clock instead (same rules and messages), so tests move time.
_DECODE_OPTIONS = {"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


def _check_times(claims: dict, now: float) -> None:
    """PyJWT's iat, nbf and exp checks (RFC 7519 sections 4.1.4-4.1.6), no leeway."""
    for claim, error, message in (
        ("iat", jwt.InvalidIssuedAtError, "Issued At claim (iat) must be an integer."),
        ("nbf", jwt.DecodeError, "Not Before claim (nbf) must be an integer."),
        ("exp", jwt.DecodeError, "Expiration Time claim (exp) must be an integer."),
    ):
        try:
            moment = int(claims[claim])
        except (ValueError, TypeError, OverflowError):
            raise error(message) from None
        if claim == "exp":
            if moment <= now:
                raise jwt.ExpiredSignatureError("Signature has expired")
        elif moment > now:
            raise jwt.ImmatureSignatureError(f"The token is not yet valid ({claim})")


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
        req.context.claims, req.context.user = self.check(
            bearer_token(req), required, getattr(resource, "handles_unknown_user", False)
        )

    def check(self, token: str, required: str | None, unknown_user_ok: bool = False) -> tuple[dict, User]:
        """(claims, user) of a live token of type `required` (any type when
        None), or the token layer's error. A token of an ended session is
        revoked: its `sid` is checked in the same store query as its jti.
        `unknown_user_ok`: the caller answers a deleted user itself (user None)."""
        claims = self._tokens.decode(token)
        if required is not None and claims["type"] != required:
            raise TokenUnprocessable(f"Only {required} tokens are allowed")
        user, revoked = self._store.token_subject(
            int(claims["sub"]), claims["jti"], claims.get("sid"), self._clock()
        )
        if revoked:
            raise TokenUnauthorized("Token has been revoked")
        if user is None:
            # A resource that answers a deleted user itself (the example's
            # refresh handler does) gets `user = None`; everywhere else a
            # deleted user's token dies here, in the token layer's shape.
            if not unknown_user_ok:
                raise TokenUnauthorized("Unknown user.")
        elif claims.get("ver", 0) != user.token_version and claims["jti"] != user.kept_jti:
            raise TokenUnauthorized("Token has been revoked")
        return claims, user


def bearer_token(req: falcon.Request) -> str:
    header = req.get_header("Authorization")
    if not header:
        raise TokenUnauthorized("Missing Authorization Header")
    # Split on any whitespace, as flask-jwt-extended does; the scheme itself
    # is case-insensitive (RFC 9110 section 11.1).
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise TokenUnprocessable("Bad Authorization header. Expected value 'Bearer <JWT>'")
    return parts[1]
