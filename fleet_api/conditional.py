"""ETags and conditional requests (If-None-Match -> 304, If-Match -> 412).

An ETag is a hash of the exact bytes we send, so it changes exactly when the
representation does, on every worker and host alike, with nothing to store.
"""

from __future__ import annotations

import hashlib

import falcon

from fleet_api.media import dumps


def etag_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def send_json(req: falcon.Request, resp: falcon.Response, obj, data: bytes | None = None) -> None:
    """Send `obj` (or its ready bytes) with an ETag; 304 when the client has it."""
    data = dumps(obj) if data is None else data
    tag = etag_of(data)
    resp.etag = f'"{tag}"'
    wanted = req.if_none_match if req.method in ("GET", "HEAD") else None
    if wanted and any(t == "*" or str(t) == tag for t in wanted):
        resp.status = falcon.HTTP_304  # no body, so no Content-Type either
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.data = data


def if_match(req: falcon.Request, represent=lambda record: record):
    """A precondition for the store: does the current record still carry the
    ETag the client sent? None when the request has no If-Match."""
    wanted = req.if_match
    if not wanted:
        return None

    def still_matches(record) -> bool:
        tag = etag_of(dumps(represent(record)))
        return any(t == "*" or (str(t) == tag and not t.is_weak) for t in wanted)

    return still_matches


def unchanged_since(seen, represent=lambda record: record):
    """A precondition: the record is still exactly what we read (for PATCH)."""
    before = dumps(represent(seen))
    return lambda record: dumps(represent(record)) == before
