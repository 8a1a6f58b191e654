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

PATH = "/.well-known/jwks.json"


class JWKS:
    def __init__(self, keys: KeyRing, max_age: int) -> None:
        self._body = Representation(keys.jwks())
        # RFC 9111 section 5.2.2.1; "public": the same for every client.
        self._cache_control = ["public", f"max-age={max_age}"]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Sent on the 304 too (RFC 9110 section 15.4.5).
        resp.cache_control = self._cache_control
        send_json(req, resp, self._body)
