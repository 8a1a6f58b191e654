"""orjson for every JSON body in and out, in one place.

Keys are sorted on the way out, as the example's Flask `jsonify` did, so a
resource's bytes (and so its ETag) don't depend on dict order.
"""

from __future__ import annotations

import json

import falcon
import orjson

MERGE_PATCH = "application/merge-patch+json"


def dumps(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str):
    """orjson, plus a refusal of duplicate keys, which orjson silently merges
    (last wins): a proxy or log reading the first would see another request.

    Counting is cheap: only when a body has more colons than its objects have
    keys (a colon inside a string, or a duplicate) do we check exactly."""
    obj = orjson.loads(data)
    colons = data.count(b":" if isinstance(data, bytes) else ":")
    if colons and colons > _count_keys(obj):
        try:
            json.loads(data, object_pairs_hook=_unique_keys)
        except RecursionError:
            raise ValueError("too deeply nested") from None
    return obj


def _count_keys(obj) -> int:
    """Keys of every object inside `obj`; iterative, as nesting can be deep."""
    count, pending = 0, [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


def _unique_keys(pairs: list[tuple]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def install(app: falcon.App) -> None:
    handler = falcon.media.JSONHandler(dumps=dumps, loads=loads)
    # JSON only: no form or msgpack bodies sneak in through Falcon's defaults.
    app.req_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: handler, MERGE_PATCH: handler})
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: handler})
