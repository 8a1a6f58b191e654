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


class Representation:
    """Bytes ready to send and their ETag, made once (and cacheable)."""

    __slots__ = ("data", "tag", "etag")

    def __init__(self, obj) -> None:
        self.data = dumps(obj)
        self.tag = etag_of(self.data)
        self.etag = f'"{self.tag}"'


def send_json(req: falcon.Request, resp: falcon.Response, body) -> None:
    """Send a Representation, or an object made into one, with its ETag;
    304 when a GET already holds it."""
    rep = body if isinstance(body, Representation) else Representation(body)
    resp.set_header("ETag", rep.etag)
    # RFC 9110 section 13.1.2: If-None-Match makes GET and HEAD answer 304.
    wanted = req.if_none_match if "HTTP_IF_NONE_MATCH" in req.env and req.method in ("GET", "HEAD") else None
    if wanted and any(t == "*" or str(t) == rep.tag for t in wanted):
        resp.status = falcon.HTTP_304  # no body, so no Content-Type either
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.data = rep.data


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
