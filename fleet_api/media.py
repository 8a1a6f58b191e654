"""orjson for every JSON body in and out, in one place.

Keys are sorted on the way out, as the example's Flask `jsonify` did, so a
resource's bytes (and so its ETag) don't depend on dict order.
"""

from __future__ import annotations

import falcon
import orjson

MERGE_PATCH = "application/merge-patch+json"


def dumps(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


loads = orjson.loads


def install(app: falcon.App) -> None:
    handler = falcon.media.JSONHandler(dumps=dumps, loads=loads)
    # JSON only: no form or msgpack bodies sneak in through Falcon's defaults.
    app.req_options.media_handlers = falcon.media.Handlers(
        {falcon.MEDIA_JSON: handler, MERGE_PATCH: handler}
    )
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: handler})
