"""The store interface every backend implements.

Resources and the auth middleware hold a `Store` and never know which backend
it is. Each method is one atomic operation: backends make it so with a lock
(memory) or a transaction (SQLite, PostgreSQL).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SHIP_FIELDS = (
    "affiliation",
    "category",
    "crew",
    "length",
    "manufacturer",
    "model",
    "roles",
    "ship_class",
)

# The text fields a free-text search (`q`) looks in.
SHIP_TEXT_FIELDS = ("affiliation", "category", "manufacturer", "model", "ship_class")
USER_TEXT_FIELDS = ("name",)


class NameTaken(Exception):
    """A user with this name already exists."""


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    # Bumped on every password change: tokens carry the version they were
    # issued under, so older ones stop working on every worker at once ...
    token_version: int = 0
    # ... except the one access token that made the change.
    kept_jti: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


Ship = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TokenId:
    """What makes one JWT: its jti and its times (epoch seconds). Kept for a
    session's live refresh token, so the very same token can be minted again."""

    jti: str
    iat: int
    exp: int


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    """One login: the chain of refresh tokens it hands out, and what the
    sessions API shows. The row's presence (with `expires_at` ahead) is what
    keeps every token carrying its `sid` alive."""

    id: str
    user_id: int
    created_at: float
    last_used_at: float
    expires_at: int  # the live refresh token's exp: the session ends with it
    user_agent: str | None
    ip: str
    refresh: TokenId  # the chain's live refresh token
    previous_jti: str | None = None  # the one it replaced ...
    rotated_at: float | None = None  # ... and when


class Rotation(enum.Enum):
    """What presenting a refresh token to its session did."""

    ROTATED = "rotated"  # it was the live one: used up, the successor is live
    GRACE = "grace"  # it was used up within the grace window: here is the live successor
    CURRENT = "current"  # it is the live one and nothing was rotated (rotation off)
    REUSED = "reused"  # used up before the grace window: the whole session has ended
    ENDED = "ended"  # no such live session


SESSION_TOUCH_INTERVAL = 60  # seconds: last_used_at is written at most this often

# The purge policy, one for every backend: a write of a kind that expires
# (revoking a token, starting a session, counting a failed login, reserving
# an idempotency key) then sweeps that kind's expired rows, the first time in
# this store and then at most once per SWEEP_INTERVAL of the write's own time;
# the sweep runs after the write, never fails it, and is logged if it fails.
# Expired rows left between sweeps are harmless: every read checks expiry
# (a revoked token that has expired fails its own exp check).
# `python -m fleet_api.purge` sweeps every kind at once, on demand.
SWEEP_INTERVAL = 60  # seconds
EXPIRING = ("revoked tokens", "sessions", "idempotency keys", "login failures")


class PreconditionFailed(Exception):
    """The record changed since the client last saw it (If-Match)."""


# --- idempotency keys: types (draft-ietf-httpapi-idempotency-key-header) -----
@dataclasses.dataclass(frozen=True)
class IdempotencyClaim:
    """One request's reservation of (scope, key); `token` tells it from a
    later request that took the key over after the lease ran out."""

    scope: str
    key: str
    token: str


@dataclasses.dataclass(frozen=True)
class IdempotentAnswer:
    """What the first request answered, replayed to its retries."""

    status: int
    location: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    answer: IdempotentAnswer | None  # None while the first request still runs


class IdempotencyLost(Exception):
    """The claim is no longer this request's (its lease ran out and a retry
    took the key over): nothing was written."""


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """What a list request asks for; every backend answers it the same way.

    Text comparisons fold ASCII letters only (A-Z = a-z), and text sorts in
    code point order, because that is what SQLite, PostgreSQL (COLLATE "C")
    and Python all agree on.
    """

    equals: tuple[tuple[str, str], ...] = ()  # (field, value): case-insensitive equality
    ranges: tuple[tuple[str, int | None, int | None], ...] = ()  # (field, min, max), inclusive
    text: str | None = None  # case-insensitive substring of any text field
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending); ties go by id ascending
    limit: int | None = None
    offset: int = 0


ALL = ListQuery()


@dataclasses.dataclass(frozen=True)
class Page:
    items: list
    total: int  # matches before limit/offset


class Store(abc.ABC):
    """Users, ships and revoked token ids, shared by everything in one app.

    `clock` (epoch seconds) is the time a store reads where no caller passes one.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._swept: dict[str, float] = {}  # kind -> the time this store last swept it
        self._sweep_lock = threading.Lock()

    # --- users -------------------------------------------------------------
    def list_users(self) -> list[User]:
        return self.find_users(ALL).items

    @abc.abstractmethod
    def find_users(self, query: ListQuery) -> Page:
        """Users matching `query` (text search over USER_TEXT_FIELDS)."""

    @abc.abstractmethod
    def get_user(self, user_id: int) -> User | None:
        """The user, or None: every authenticated request asks (see token_subject)."""

    @abc.abstractmethod
    def get_user_by_name(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def create_user(self, name: str, password_hash: str) -> User:
        """Raise NameTaken when the name is in use."""

    @abc.abstractmethod
    def update_user(
        self,
        user_id: int,
        name: str,
        password_hash: str | None = None,
        kept_jti: str | None = None,
        precondition: Precondition | None = None,
        kept_sid: str | None = None,
        kept_until: int | None = None,
    ) -> User | None:
        """Rename, and when `password_hash` is given change the password.

        A password change bumps `token_version`, records `kept_jti`, and ends
        every session of the user except `kept_sid`, in the same transaction;
        that one ends at `kept_until` at the latest (when the one token that
        survives a password change, the access token that made it, expires).
        Returns None when the user does not exist; raises NameTaken, and
        PreconditionFailed when `precondition(current_user)` is false.
        """

    @abc.abstractmethod
    def delete_user(self, user_id: int, precondition: Precondition | None = None) -> bool:
        """Delete the user and, in the same transaction, end all its sessions."""

    # --- ships -------------------------------------------------------------
    def list_ships(self) -> list[Ship]:
        return self.find_ships(ALL).items

    @abc.abstractmethod
    def find_ships(self, query: ListQuery) -> Page:
        """Ships matching `query`: filtered, sorted and paged by the backend."""

    @abc.abstractmethod
    def get_ship(self, ship_id: int) -> Ship | None: ...

    @abc.abstractmethod
    def create_ship(self, fields: Ship) -> Ship: ...

    @abc.abstractmethod
    def update_ship(
        self, ship_id: int, fields: Ship, precondition: Precondition | None = None
    ) -> Ship | None:
        """Replace a ship's fields; None when missing. The precondition is
        checked against the current ship inside the same transaction."""

    @abc.abstractmethod
    def delete_ship(self, ship_id: int, precondition: Precondition | None = None) -> bool: ...

    @abc.abstractmethod
    def ships_version(self) -> int | None:
        """A number that changes with every committed ship write, on every
        worker and host: readers cache what they serialized until it moves.
        None while a ship write is being committed: cache nothing then."""

    # --- token blocklist ---------------------------------------------------
    @abc.abstractmethod
    def revoke_token(self, jti: str, expires_at: int) -> None:
        """Block `jti` until `expires_at` (epoch seconds), when it dies anyway."""

    @abc.abstractmethod
    def is_token_revoked(self, jti: str) -> bool: ...

    def token_subject(self, user_id: int, jti: str, sid: str | None, now: float) -> tuple[User | None, bool]:
        """(the user, is this token revoked): what every authenticated request
        asks. A token of a user who exists and with a session id `sid` also
        counts as revoked when its session has ended (or expired by `now`); a
        live session's last use is recorded, at most once per
        SESSION_TOUCH_INTERVAL. SQL backends answer it in one round trip (plus
        that rare write)."""
        user = self.get_user(user_id)
        session = self.get_session(sid) if sid is not None else None
        live = session is not None and session.user_id == user_id and session.expires_at > now
        last_used = session.last_used_at if live else None
        return user, self._session_verdict(user, self.is_token_revoked(jti), sid, last_used, now)

    def _session_verdict(
        self, user: User | None, revoked: bool, sid: str | None, last_used: float | None, now: float
    ) -> bool:
        """The session half of token_subject, once for every backend: `last_used`
        is the live session's last use, None when it has ended."""
        if sid is None or user is None:  # a token from before sessions; a deleted user's: "Unknown user."
            return revoked
        if last_used is None:
            return True
        if last_used <= now - SESSION_TOUCH_INTERVAL:
            try:
                self.touch_session(sid, now)
            except Exception:  # bookkeeping for the sessions list: never fail the request for it
                log.warning("could not record the last use of a session", exc_info=True)
        return revoked

    def purge_expired_tokens(self, now: int) -> int:
        """Forget revocations whose tokens have expired; return how many."""
        return self._purge("revoked tokens", now)

    # --- sessions (one per login; see fleet_api/sessions.py) ---------------
    @abc.abstractmethod
    def create_session(self, session: SessionRecord) -> None:
        """Store a new session; sessions that have expired are swept too."""

    @abc.abstractmethod
    def get_session(self, sid: str) -> SessionRecord | None:
        """The session, or None once it has ended. An expired session not
        swept yet is still returned: callers compare `expires_at`."""

    @abc.abstractmethod
    def list_sessions(self, user_id: int, now: float) -> list[SessionRecord]:
        """The user's live sessions, newest first."""

    @abc.abstractmethod
    def touch_session(self, sid: str, now: float) -> None:
        """Record a use: last_used_at = now, unless a fresher one was recorded."""

    @abc.abstractmethod
    def end_session(self, sid: str, user_id: int) -> bool:
        """End the user's session `sid`; False when there is none (or not theirs)."""

    @abc.abstractmethod
    def end_other_sessions(self, user_id: int, keep_sid: str | None) -> int:
        """End every session of the user except `keep_sid`; return how many."""

    @abc.abstractmethod
    def rotate_refresh(
        self, sid: str, jti: str, successor: TokenId | None, now: float, grace: float
    ) -> tuple[Rotation, TokenId | None]:
        """Present refresh token `jti` to session `sid`, atomically (one
        transaction holding the session's row, so racing workers and hosts
        see one order):

        - the live one, with a `successor`: it is used up, the successor is
          live and the session ends at its exp -> (ROTATED, successor);
        - the live one, no successor (rotation off) -> (CURRENT, it);
        - the one used up last, less than `grace` seconds ago -> (GRACE, the
          live successor): the caller mints that same token again, so racing
          refreshes share one chain;
        - any other refresh token of the session -> (REUSED, None), and the
          session has ended;
        - no live session -> (ENDED, None).
        """

    def purge_expired_sessions(self, now: float) -> int:
        """Forget sessions that expired by `now`; return how many."""
        return self._purge("sessions", now)

    # --- failed-login counters (brute-force throttling) ---------------------
    @abc.abstractmethod
    def count_failure(self, key: str, window: int, now: int) -> tuple[int, int]:
        """Count one failed login against `key` in a fixed window of `window`
        seconds (a new window starts when the last one has ended); return
        (failures in the window, the window's end). Expired windows are purged."""

    @abc.abstractmethod
    def failures(self, key: str, now: int) -> tuple[int, int]:
        """(failures, window end) for `key`, or (0, now) when its window is over."""

    @abc.abstractmethod
    def clear_failures(self, key: str) -> None: ...

    def purge_expired_failures(self, now: int) -> int:
        """Forget failed-login windows that ended by `now`; return how many."""
        return self._purge("login failures", now)

    # --- idempotency keys -------------------------------------------------
    # A create with a key is two steps: reserve the key (atomically, before
    # anything is created), then create the record and store the answer in
    # ONE transaction, which first checks the claim is still ours. A worker
    # that dies in between leaves only an unanswered reservation, no record;
    # once its lease ends a retry may take the key over and create.
    @abc.abstractmethod
    def reserve_idempotency(
        self, claim: IdempotencyClaim, fingerprint: str, now: int, lease_until: int, expires_at: int
    ) -> IdempotencyRecord | None:
        """Reserve `claim` and return None; or, when a live record holds
        (scope, key), return it untouched. A record past `expires_at`, or
        unanswered past its lease, counts as absent. Expired ones are swept."""

    @abc.abstractmethod
    def create_ship_once(
        self, fields: Ship, claim: IdempotencyClaim, answer: Callable[[Ship], IdempotentAnswer]
    ) -> IdempotentAnswer:
        """create_ship and store `answer(ship)` for the claim, atomically;
        IdempotencyLost (and nothing written) when the claim is not ours."""

    @abc.abstractmethod
    def create_user_once(
        self,
        name: str,
        password_hash: str,
        claim: IdempotencyClaim,
        answer: Callable[[User], IdempotentAnswer],
    ) -> IdempotentAnswer:
        """create_user (NameTaken as there) plus the answer, like create_ship_once."""

    @abc.abstractmethod
    def release_idempotency(self, claim: IdempotencyClaim) -> None:
        """Drop an unanswered reservation of ours (the create failed)."""

    def purge_expired_idempotency(self, now: int) -> int:
        """Forget records whose `expires_at` has passed; return how many."""
        return self._purge("idempotency keys", now)

    # --- expiry: the purge policy (SWEEP_INTERVAL) ---------------------------
    def purge_expired(self, now: float) -> dict[str, int]:
        """Every kind of expired row, now: rows removed, by kind (in EXPIRING order)."""
        return {
            "revoked tokens": self.purge_expired_tokens(int(now)),
            "sessions": self.purge_expired_sessions(now),
            "idempotency keys": self.purge_expired_idempotency(int(now)),
            "login failures": self.purge_expired_failures(int(now)),
        }

    @abc.abstractmethod
    def _delete_expired(self, kind: str, now: float) -> int:
        """Delete the rows of `kind` (one of EXPIRING) expired by `now`; return how many."""

    def _purge(self, kind: str, now: float) -> int:
        with self._sweep_lock:
            self._swept[kind] = now  # a purge is a sweep: the next is due an interval later
        return self._delete_expired(kind, now)

    def _sweep(self, kind: str, now: float) -> None:
        """After a write of `kind`: sweep its expired rows if the policy says
        one is due (none yet, an interval passed, or the clock went back)."""
        with self._sweep_lock:
            last = self._swept.get(kind)
            if last is not None and 0 <= now - last < SWEEP_INTERVAL:
                return
            self._swept[kind] = now
        try:
            self._delete_expired(kind, now)
        except Exception:  # housekeeping: the write it follows has succeeded
            log.warning("sweep of expired %s failed", kind, exc_info=True)

    # --- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise when the backend can't answer (for /health)."""

    @abc.abstractmethod
    def is_empty(self) -> bool:
        """True when the store has never been seeded."""

    @abc.abstractmethod
    def seed(self, users: list[User], ships: list[Ship]) -> bool:
        """Load start-up data once, keeping its ids.

        Returns False without writing when the store was seeded before (even
        if every row has since been deleted), so many workers starting at
        once seed it exactly once, and a restart never resurrects deletions.
        """

    def settle(self) -> None:  # noqa: B027 - an optional hook: SQLite's fsync outside the lock
        """Before this thread's request is answered: whatever its reads saw is
        on disk. A no-op where a commit is durable once visible."""

    def write_stats(self) -> dict[str, float] | None:
        """Counts of the write path for /metrics (SQLite's group commit, see
        writestats.py); None where the database keeps its own."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook: backends with resources override it
        pass


Precondition = Callable[[Any], bool]


def require(precondition: Precondition | None, current: Any) -> None:
    """Raise PreconditionFailed unless `precondition` (if any) accepts `current`."""
    if precondition is not None and not precondition(current):
        raise PreconditionFailed()


def ship_record(ship_id: int, fields: Ship) -> Ship:
    """A ship as the API shows it: the example's alphabetical key order."""
    record = {name: fields[name] for name in SHIP_FIELDS}
    record["id"] = ship_id
    return dict(sorted(record.items()))


def fold(text: str) -> str:
    """ASCII-only lower case: the case folding all three backends share."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def matches(record: dict, query: ListQuery, text_fields: tuple[str, ...]) -> bool:
    """The reference semantics of ListQuery's filters, for in-memory data."""
    for field, value in query.equals:
        if fold(record[field]) != fold(value):
            return False
    for field, low, high in query.ranges:
        if (low is not None and record[field] < low) or (high is not None and record[field] > high):
            return False
    if query.text is not None:
        needle = fold(query.text)
        return any(needle in fold(record[field]) for field in text_fields)
    return True


def page(records: list[dict], query: ListQuery, text_fields: tuple[str, ...]) -> Page:
    """Filter, sort (stable, id as the last key) and slice in Python."""
    found = [r for r in records if matches(r, query, text_fields)]
    found.sort(key=lambda r: r["id"])
    for field, descending in reversed(query.sort):
        found.sort(key=lambda r: r[field], reverse=descending)
    end = None if query.limit is None else query.offset + query.limit
    return Page(found[query.offset : end], len(found))


def rotation_step(
    session: SessionRecord | None, jti: str, successor: TokenId | None, now: float, grace: float
) -> tuple[Rotation, TokenId | None, SessionRecord | None]:
    """The rule of `Store.rotate_refresh`, once for every backend: (outcome,
    the token to hand out, the session as it must be stored afterwards, or
    None when it must be deleted). Backends run it on the row they hold locked."""
    if session is None or session.expires_at <= now:
        return Rotation.ENDED, None, None
    if jti == session.refresh.jti:
        if successor is None:
            return Rotation.CURRENT, session.refresh, session
        rotated = dataclasses.replace(
            session,
            refresh=successor,
            previous_jti=jti,
            rotated_at=now,
            expires_at=successor.exp,
            last_used_at=now,
        )
        return Rotation.ROTATED, successor, rotated
    # A racer that read its clock before waiting for the row lock can see a
    # rotation stamped later than its `now`: that counts as no time elapsed,
    # so a grace of 0 really means none.
    if (
        jti == session.previous_jti
        and session.rotated_at is not None
        and max(now - session.rotated_at, 0) < grace
    ):
        return Rotation.GRACE, session.refresh, session
    return Rotation.REUSED, None, None
