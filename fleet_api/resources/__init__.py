"""HTTP resources: thin responders over the store, one module per concept."""

from __future__ import annotations

import falcon


def read_json(req: falcon.Request):
    """The parsed JSON body; Falcon answers 400/415 for a bad or non-JSON one."""
    return req.get_media()


def created(req: falcon.Request, resp: falcon.Response, path: str, body) -> None:
    resp.status = falcon.HTTP_201
    resp.location = f"{req.prefix}{path}"
    resp.media = body
