"""Sessions: one per login, named by the `sid` claim every token carries.

The store keeps a row per live session; every authenticated request checks
it in the same query as the token's jti, so ending a session (reuse
detected, DELETE /api/sessions/{id}, a revoked refresh token, a password
change elsewhere, a deleted user) kills all its tokens at once on every
worker and host.

With rotation on (`FLEET_REFRESH_ROTATION=on`) each refresh uses up the
refresh token and hands out its successor (RFC 9700 section 4.14.2). The
rule for a used-up token presented again:

- the one used up last, less than the grace window ago (two tabs, a retry
  after a lost response): the refresh succeeds and answers the very same
  successor the first refresh got (same jti, same bytes), so there is only
  ever one live chain;
- any other, or after the grace window: reuse, and the whole session ends.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import falcon

from fleet_api.auth import ACCESS, REFRESH, Tokens
from fleet_api.errors import TokenUnauthorized
from fleet_api.metrics import Metrics, NoMetrics
from fleet_api.store import Rotation, SessionRecord, Store, User

SID_BYTES = 16  # 128 random bits: not guessable
USER_AGENT_LIMIT = 256  # characters of User-Agent kept
REVOKED = "Token has been revoked"


class Sessions:
    def __init__(
        self,
        store: Store,
        tokens: Tokens,
        client_address: Callable[[falcon.Request], str],
        *,
        rotation: bool = False,
        grace: float = 10.0,
        clock=time.time,
        metrics: Metrics | NoMetrics | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self.rotation = rotation
        self._grace = grace
        self._client_address = client_address
        self._clock = clock
        self._metrics = metrics or NoMetrics()

    def start(self, req: falcon.Request, user: User) -> dict:
        """A new session for a login: its row first, then its two tokens."""
        now = self._clock()
        refresh = self._tokens.new_id(REFRESH)
        agent = req.get_header("User-Agent")
        session = SessionRecord(
            id=secrets.token_urlsafe(SID_BYTES),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=refresh.exp,
            user_agent=agent[:USER_AGENT_LIMIT] if agent else None,
            ip=self._client_address(req),
            refresh=refresh,
        )
        self._store.create_session(session)
        return {
            "access_token": self._tokens.issue(user, ACCESS, session.id),
            "refresh_token": self._tokens.encode(user, REFRESH, refresh, session.id),
        }

    def refresh(self, claims: dict, user: User) -> dict:
        """/auth/refresh for a checked refresh token: `{access_token}`, and
        with rotation on also the successor `refresh_token`."""
        sid = claims.get("sid")
        if sid is None:  # a token from before sessions: the example's answer
            return {"access_token": self._tokens.issue(user, ACCESS)}
        successor = self._tokens.new_id(REFRESH) if self.rotation else None
        outcome, token = self._store.rotate_refresh(sid, claims["jti"], successor, self._clock(), self._grace)
        if outcome is Rotation.REUSED:
            self._metrics.refresh_reuse_detected()
            self._metrics.token_revoked("refresh_reuse")
        if token is None:  # reused after the grace window (the session has ended), or ended
            raise TokenUnauthorized(REVOKED)
        body = {"access_token": self._tokens.issue(user, ACCESS, sid)}
        if self.rotation:
            body["refresh_token"] = self._tokens.encode(user, REFRESH, token, sid)
        return body

    def revoke(self, claims: dict) -> None:
        """RFC 7009 for a verified token: a refresh token ends its whole
        session; an access token (or a token without a session) is blocked."""
        sid = claims.get("sid")
        if claims["type"] == REFRESH and sid is not None:
            if self._store.end_session(sid, int(claims["sub"])):
                self._metrics.token_revoked("revoke")
        else:
            self._store.revoke_token(claims["jti"], claims["exp"])
            self._metrics.token_revoked("revoke")

    def is_live_refresh(self, claims: dict) -> bool:
        """False for a refresh token its session has used up (rotated away)."""
        sid = claims.get("sid")
        if claims["type"] != REFRESH or sid is None:
            return True
        session = self._store.get_session(sid)
        return session is not None and session.refresh.jti == claims["jti"]

    def now(self) -> float:
        return self._clock()
