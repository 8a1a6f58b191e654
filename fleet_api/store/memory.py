"""Process-local store: one lock around plain dicts.

Correct for one process (tests, `memory://`); with several gunicorn workers
each would hold its own copy, which is why deployments use SQLite or PostgreSQL.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable

from fleet_api.store.base import (
    SHIP_TEXT_FIELDS,
    USER_TEXT_FIELDS,
    IdempotencyLost,
    IdempotencyRecord,
    ListQuery,
    NameTaken,
    Page,
    SessionRecord,
    Ship,
    Store,
    TokenId,
    User,
    page,
    require,
    rotation_step,
    ship_record,
)


class MemoryStore(Store):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._lock = threading.Lock()
        self._users: dict[int, User] = {}
        self._ships: dict[int, Ship] = {}
        self._revoked: dict[str, int] = {}
        self._seeded = False
        self._failures: dict[str, tuple[int, int]] = {}
        # Ids are never reused, so a deleted user's old token can't name a new one.
        self._user_ids = itertools.count(1)
        self._ship_ids = itertools.count(1)
        self._ships_version = 0
        self._idempotency: dict[tuple[str, str], dict] = {}
        self._sessions: dict[str, SessionRecord] = {}

    # --- users -------------------------------------------------------------
    def find_users(self, query: ListQuery) -> Page:
        with self._lock:
            users = list(self._users.values())
        found = page([{"id": u.id, "name": u.name, "user": u} for u in users], query, USER_TEXT_FIELDS)
        return Page([r["user"] for r in found.items], found.total)

    def get_user(self, user_id: int) -> User | None:
        return self._users.get(user_id)

    def get_user_by_name(self, name: str) -> User | None:
        with self._lock:
            return self._find_by_name(name)

    def _find_by_name(self, name: str) -> User | None:
        return next((u for u in self._users.values() if u.name == name), None)

    def create_user(self, name: str, password_hash: str) -> User:
        with self._lock:
            if self._find_by_name(name):
                raise NameTaken(name)
            user = User(next(self._user_ids), name, password_hash)
            self._users[user.id] = user
            return user

    def update_user(self, user_id, name, password_hash=None, kept_jti=None,
                    precondition=None, kept_sid=None, kept_until=None):  # fmt: skip
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            require(precondition, user)
            other = self._find_by_name(name)
            if other and other.id != user_id:
                raise NameTaken(name)
            changes = {"name": name}
            if password_hash is not None:
                changes.update(
                    password_hash=password_hash,
                    token_version=user.token_version + 1,
                    kept_jti=kept_jti,
                )
                self._end_sessions(user_id, keep_sid=kept_sid)
                kept = self._sessions.get(kept_sid) if kept_sid else None
                if kept is not None and kept_until is not None and kept.user_id == user_id:
                    self._sessions[kept_sid] = dataclasses.replace(
                        kept, expires_at=min(kept.expires_at, kept_until)
                    )
            user = dataclasses.replace(user, **changes)
            self._users[user_id] = user
            return user

    def delete_user(self, user_id: int, precondition=None) -> bool:
        with self._lock:
            if user_id not in self._users:
                return False
            require(precondition, self._users[user_id])
            del self._users[user_id]
            self._end_sessions(user_id, keep_sid=None)
            return True

    # --- ships -------------------------------------------------------------
    def find_ships(self, query: ListQuery) -> Page:
        with self._lock:
            ships = list(self._ships.values())
        found = page(ships, query, SHIP_TEXT_FIELDS)
        return Page(copy.deepcopy(found.items), found.total)

    def get_ship(self, ship_id: int) -> Ship | None:
        ship = self._ships.get(ship_id)
        return copy.deepcopy(ship) if ship else None

    def create_ship(self, fields: Ship) -> Ship:
        with self._lock:
            ship = ship_record(next(self._ship_ids), copy.deepcopy(fields))
            self._ships[ship["id"]] = ship
            self._ships_version += 1
            return copy.deepcopy(ship)

    def update_ship(self, ship_id: int, fields: Ship, precondition=None) -> Ship | None:
        with self._lock:
            if ship_id not in self._ships:
                return None
            require(precondition, copy.deepcopy(self._ships[ship_id]))
            ship = ship_record(ship_id, copy.deepcopy(fields))
            self._ships[ship_id] = ship
            self._ships_version += 1
            return copy.deepcopy(ship)

    def delete_ship(self, ship_id: int, precondition=None) -> bool:
        with self._lock:
            if ship_id not in self._ships:
                return False
            require(precondition, copy.deepcopy(self._ships[ship_id]))
            del self._ships[ship_id]
            self._ships_version += 1
            return True

    def ships_version(self) -> int:
        return self._ships_version

    # --- token blocklist ---------------------------------------------------
    def revoke_token(self, jti: str, expires_at: int) -> None:
        with self._lock:
            self._revoked[jti] = expires_at
        self._sweep("revoked tokens", int(self._clock()))

    def is_token_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    # --- sessions ----------------------------------------------------------
    def create_session(self, session: SessionRecord) -> None:
        with self._lock:
            self._sessions[session.id] = session
        self._sweep("sessions", session.created_at)

    def get_session(self, sid: str) -> SessionRecord | None:
        return self._sessions.get(sid)

    def list_sessions(self, user_id: int, now: float) -> list[SessionRecord]:
        with self._lock:
            found = [s for s in self._sessions.values() if s.user_id == user_id and s.expires_at > now]
        return sorted(found, key=lambda s: (-s.created_at, s.id))

    def touch_session(self, sid: str, now: float) -> None:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.last_used_at < now:
                self._sessions[sid] = dataclasses.replace(session, last_used_at=now)

    def end_session(self, sid: str, user_id: int) -> bool:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.user_id != user_id:
                return False
            del self._sessions[sid]
            return True

    def end_other_sessions(self, user_id: int, keep_sid: str | None) -> int:
        with self._lock:
            return self._end_sessions(user_id, keep_sid)

    def _end_sessions(self, user_id: int, keep_sid: str | None) -> int:
        ended = [sid for sid, s in self._sessions.items() if s.user_id == user_id and sid != keep_sid]
        for sid in ended:
            del self._sessions[sid]
        return len(ended)

    def rotate_refresh(self, sid, jti, successor: TokenId | None, now, grace):
        with self._lock:
            outcome, token, after = rotation_step(self._sessions.get(sid), jti, successor, now, grace)
            if after is None:
                self._sessions.pop(sid, None)
            else:
                self._sessions[sid] = after
            return outcome, token

    # --- failed-login counters ---------------------------------------------
    def count_failure(self, key: str, window: int, now: int) -> tuple[int, int]:
        with self._lock:
            count, end = self._failures.get(key, (0, 0))
            if end <= now:  # the window has ended: a new one starts
                count, end = 0, now + window
            self._failures[key] = (count + 1, end)
        self._sweep("login failures", now)
        return count + 1, end

    def failures(self, key: str, now: int) -> tuple[int, int]:
        count, end = self._failures.get(key, (0, now))
        return (count, end) if end > now else (0, now)

    def clear_failures(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    # --- idempotency keys -------------------------------------------------
    def reserve_idempotency(self, claim, fingerprint, now, lease_until, expires_at):
        try:
            with self._lock:
                held = self._idempotency.get((claim.scope, claim.key))
                if held and held["expires_at"] > now and (held["answer"] or held["lease_until"] > now):
                    return IdempotencyRecord(held["fingerprint"], held["answer"])
                self._idempotency[(claim.scope, claim.key)] = {
                    "token": claim.token,
                    "fingerprint": fingerprint,
                    "answer": None,
                    "lease_until": lease_until,
                    "expires_at": expires_at,
                }
                return None
        finally:
            self._sweep("idempotency keys", now)

    def _held(self, claim) -> dict:
        held = self._idempotency.get((claim.scope, claim.key))
        if not held or held["token"] != claim.token or held["answer"]:
            raise IdempotencyLost(claim.key)
        return held

    def create_ship_once(self, fields, claim, answer):
        with self._lock:
            held = self._held(claim)
            ship = ship_record(next(self._ship_ids), copy.deepcopy(fields))
            result = answer(copy.deepcopy(ship))  # before any write: it may raise
            self._ships[ship["id"]] = ship
            self._ships_version += 1
            held["answer"] = result
            return result

    def create_user_once(self, name, password_hash, claim, answer):
        with self._lock:
            held = self._held(claim)
            if self._find_by_name(name):
                raise NameTaken(name)
            user = User(next(self._user_ids), name, password_hash)
            result = answer(user)
            self._users[user.id] = user
            held["answer"] = result
            return result

    def release_idempotency(self, claim) -> None:
        with self._lock:
            held = self._idempotency.get((claim.scope, claim.key))
            if held and held["token"] == claim.token and not held["answer"]:
                del self._idempotency[(claim.scope, claim.key)]

    # --- expiry ------------------------------------------------------------
    def _delete_expired(self, kind: str, now: float) -> int:
        table, expired = {
            "revoked tokens": (self._revoked, lambda exp: exp < now),
            "sessions": (self._sessions, lambda s: s.expires_at <= now),
            "login failures": (self._failures, lambda counted: counted[1] <= now),
            "idempotency keys": (self._idempotency, lambda held: held["expires_at"] <= now),
        }[kind]
        with self._lock:
            gone = [key for key, value in table.items() if expired(value)]
            for key in gone:
                del table[key]
        return len(gone)

    # --- lifecycle ---------------------------------------------------------
    def ping(self) -> None:
        pass  # a dict always answers

    def is_empty(self) -> bool:
        return not self._seeded

    def seed(self, users, ships) -> bool:
        with self._lock:
            if self._seeded:
                return False
            self._seeded = True
            self._users = {u.id: u for u in users}
            self._ships = {s["id"]: ship_record(s["id"], s) for s in ships}
            self._ships_version += 1
            self._user_ids = itertools.count(max(self._users, default=0) + 1)
            self._ship_ids = itertools.count(max(self._ships, default=0) + 1)
            return True
