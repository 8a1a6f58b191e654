"""GET/DELETE /api/sessions and DELETE /api/sessions/{id}: one's own sessions only."""

from __future__ import annotations

import datetime

import falcon

from fleet_api.auth import ACCESS, SID_PATTERN
from fleet_api.metrics import Metrics
from fleet_api.openapi import array_of, ok, operation, ref
from fleet_api.schemas import RevokedCount, SessionOut
from fleet_api.sessions import Sessions
from fleet_api.store import SessionRecord, Store


def rfc3339(epoch: float) -> str:
    """UTC, to the second: `2026-12-01T09:00:00Z` (RFC 3339 section 5.6)."""
    moment = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _public(session: SessionRecord, current: str | None) -> dict:
    return {
        "id": session.id,
        "created_at": rfc3339(session.created_at),
        "last_used_at": rfc3339(session.last_used_at),
        "user_agent": session.user_agent,
        "ip": session.ip,
        "current": session.id == current,
    }


class SessionList:
    auth = {"GET": ACCESS, "DELETE": ACCESS}

    def __init__(self, store: Store, sessions: Sessions, metrics: Metrics) -> None:
        self._store = store
        self._sessions = sessions
        self._metrics = metrics

    @operation(
        "sessions",
        "listSessions",
        responses={200: ok("The sessions.", array_of(SessionOut), ("Cache-Control",))},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The caller's sessions, newest first"""
        found = self._store.list_sessions(req.context.user.id, self._sessions.now())
        resp.cache_control = ["no-store"]
        resp.media = [_public(session, req.context.claims.get("sid")) for session in found]

    @operation("sessions", "endOtherSessions", responses={200: ok("How many were ended.", ref(RevokedCount))})
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Log out everywhere else: end every session of the caller but the current one"""
        ended = self._store.end_other_sessions(req.context.user.id, req.context.claims.get("sid"))
        self._metrics.token_revoked("session_ended", ended)
        resp.media = {"revoked": ended}


class SessionItem:
    auth = {"DELETE": ACCESS}

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    @operation("sessions", "endSession", responses={204: ok("The session has ended.")}, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        """End one of the caller's sessions: every token of it is dead at once"""
        # Someone else's session is as unknown as one that never was.
        if not SID_PATTERN.fullmatch(session_id) or not self._store.end_session(
            session_id, req.context.user.id
        ):
            raise falcon.HTTPNotFound()
        self._metrics.token_revoked("session_ended")
        resp.status = falcon.HTTP_204
