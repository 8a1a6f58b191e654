"""Idempotency-Key on creates (draft-ietf-httpapi-idempotency-key-header-07).

A client that retries `POST /api/ships` or `POST /api/users` after a timeout
sends the same `Idempotency-Key`; the retry gets the first answer again
instead of a second record. Keys live in the shared store, so a retry landing
on another worker or host is recognised.

How one keyed create runs:
1. The key is parsed (a malformed one is a 400), the body validated, and a
   fingerprint of (scope, validated body) taken: an HMAC under the server's
   secret, because a user body holds a password and a plain hash of it would
   be an offline-crackable copy.
2. The key is reserved in the store, atomically, before anything is created.
   A live record already there is either replayed (same fingerprint, answer
   stored), a 422 (other fingerprint) or a 409 (the first is still running).
3. The record is created and its answer stored in ONE store transaction,
   which first checks the reservation is still ours. A worker that dies
   before that commit leaves only an unanswered reservation: after its lease
   (LEASE seconds) a retry takes the key over and creates, exactly once.
   A create that fails (e.g. a name already taken) releases the reservation,
   so the same request may be tried again.

Keys are scoped to the authenticated user (ships) or the client address
(users, the throttle's trusted-proxy rule) and kept for TTL seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable

import falcon

from fleet_api.errors import bad_request, unprocessable
from fleet_api.media import dumps
from fleet_api.resources import created
from fleet_api.store import Store
from fleet_api.store.base import IdempotencyClaim, IdempotencyLost, IdempotentAnswer

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # not in the draft; the name Stripe's API uses
TTL = 24 * 3600  # draft section 2.3: the resource publishes its expiry policy
LEASE = 60  # seconds an unanswered reservation blocks retries (above gunicorn's timeout)
MAX_KEY_LENGTH = 255
# RFC 8941 section 3.3.3: sf-string = DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE,
# unescaped = %x20-21 / %x23-5B / %x5D-7E. Draft section 2.1: the value MUST be a String.
KEY_PATTERN = r'^"(?:[ !#-\[\]-~]|\\["\\])*"$'
_KEY = re.compile(KEY_PATTERN)
_ESCAPE = re.compile(r'\\(["\\])')


def parse_key(raw: str | None) -> str | None:
    """The key inside the header's sf-string, None when absent; 400 when malformed."""
    if raw is None:
        return None
    value = raw.strip(" ")  # RFC 8941 section 4.2: leading and trailing SP are discarded
    if not _KEY.fullmatch(value):
        raise bad_request(f'{HEADER} must be one quoted string (RFC 8941), e.g. "8e03978e-40d5-43e8".')
    key = _ESCAPE.sub(r"\1", value[1:-1])
    if not key:
        raise bad_request(f"{HEADER} must not be empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise bad_request(f"{HEADER} may be at most {MAX_KEY_LENGTH} characters.")
    return key


class Idempotency:
    """Runs a create once per (scope, key); see the module docstring."""

    def __init__(
        self,
        store: Store,
        secret: str,
        clock: Callable[[], float] = time.time,
        ttl: int = TTL,
        lease: int = LEASE,
    ) -> None:
        self._store = store
        self._secret = hashlib.sha256(b"idempotency:" + secret.encode()).digest()
        self._clock = clock
        self._ttl = ttl
        self._lease = lease

    def create(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        scope: str,
        payload,
        plain: Callable[[], object],
        once: Callable[[IdempotencyClaim, Callable[[object], IdempotentAnswer]], IdempotentAnswer],
        location: Callable[[object], str],
        body: Callable[[object], object],
    ) -> None:
        """Answer 201 for a new record: `plain()` without a key, else
        `once(claim, answer)`, the store's atomic create-and-answer."""
        key = parse_key(req.get_header(HEADER))
        if key is None:
            record = plain()
            created(req, resp, location(record), body(record))
            return
        claim = IdempotencyClaim(scope, key, os.urandom(16).hex())
        fingerprint = self.fingerprint(scope, payload)
        now = int(self._clock())
        held = self._store.reserve_idempotency(claim, fingerprint, now, now + self._lease, now + self._ttl)
        if held is not None:
            # Draft section 2.7: another payload is 422, a request still in flight is 409.
            if not hmac.compare_digest(held.fingerprint, fingerprint):
                raise unprocessable(f"This {HEADER} was used for a different request body.")
            if held.answer is None:
                raise _in_flight()
            _send(resp, held.answer)
            resp.set_header(REPLAYED, "true")
            return

        def answer(record) -> IdempotentAnswer:
            return IdempotentAnswer(201, f"{req.prefix}{location(record)}", dumps(body(record)))

        try:
            result = once(claim, answer)
        except IdempotencyLost:
            raise _in_flight() from None
        except BaseException:
            self._store.release_idempotency(claim)
            raise
        _send(resp, result)

    def fingerprint(self, scope: str, payload) -> str:
        """Draft section 2.4: the validated body, canonical JSON, keyed by the server secret."""
        return hmac.new(self._secret, dumps([scope, payload]), hashlib.sha256).hexdigest()


def _in_flight() -> falcon.HTTPConflict:
    return falcon.HTTPConflict(
        description=f"A request with this {HEADER} is still being processed; retry later.",
        headers={"Retry-After": "1"},
    )


def _send(resp: falcon.Response, answer: IdempotentAnswer) -> None:
    resp.status = answer.status
    resp.location = answer.location
    resp.content_type = falcon.MEDIA_JSON
    resp.data = answer.body
