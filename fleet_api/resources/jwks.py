"""GET /.well-known/jwks.json: the public keys that verify our tokens.

RFC 7517 section 5 key set, RFC 8615 well-known path. Built once per app
from the key ring, so a reload that adds or removes a key file changes it.
Clients may cache it for `max_age` seconds and revalidate with its ETag;
under HS256 it is `{"keys": []}`: secrets are never published.
"""

from __future__ import annotations

import falcon

from fleet_api.conditional import Representation, send_json
from fleet_api.keys import KeyRing
from fleet_api.openapi import IF_NONE_MATCH, not_modified, ok, operation, ref

PATH = "/.well-known/jwks.json"
_HEADERS = {
    "Cache-Control": {"$ref": "#/components/headers/CacheControlMaxAge"},
    "ETag": {"$ref": "#/components/headers/ETag"},
}


class JWKS:
    def __init__(self, keys: KeyRing, max_age: int) -> None:
        self._body = Representation(keys.jwks())
        # RFC 9111 section 5.2.2.1; "public": the same for every client.
        self._cache_control = ["public", f"max-age={max_age}"]

    @operation(
        "meta",
        "jwks",
        parameters=(IF_NONE_MATCH,),
        responses={200: ok("The key set.", ref("JWKSet"), _HEADERS), 304: not_modified(_HEADERS)},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The public keys that verify our tokens (JWKS)

        Verify a token offline: pick the key whose `kid` is the token header's.
        Every key that still verifies is listed; under HS256 the set is empty.
        """
        # Sent on the 304 too (RFC 9110 section 15.4.5).
        resp.cache_control = self._cache_control
        send_json(req, resp, self._body)
