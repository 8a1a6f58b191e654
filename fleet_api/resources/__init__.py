"""HTTP resources: thin responders over the store, one module per concept."""

from __future__ import annotations

import urllib.parse

import falcon

from fleet_api.conditional import if_match, unchanged_since
from fleet_api.media import MERGE_PATCH
from fleet_api.schemas import ValidationFailed, parse_query
from fleet_api.store import PreconditionFailed

ID_MISMATCH = "Request data id has to match resource id."
PATCH_RETRIES = 3  # re-reads when a concurrent write lands between read and write


def read_json(req: falcon.Request, *media_types: str):
    """The parsed body; 415 unless it is one of `media_types` (JSON by default)."""
    allowed = media_types or (falcon.MEDIA_JSON,)
    if req.content_type and media_type(req.content_type) not in allowed:
        raise falcon.HTTPUnsupportedMediaType(description=f"Send the body as {' or '.join(allowed)}.")
    return req.get_media()


def read_merge_patch(req: falcon.Request) -> dict:
    patch = read_json(req, MERGE_PATCH, falcon.MEDIA_JSON)
    if not isinstance(patch, dict):
        raise ValidationFailed({"_schema": ["Invalid input type."]})
    return patch


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json` (case folded)."""
    content_type = content_type or ""
    return content_type.split(";", 1)[0].strip().lower()


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7396 JSON Merge Patch: null removes a member, an object merges into
    an object, anything else replaces. Recursion follows the target, never
    the patch, so a hostile deeply nested patch costs nothing: an object sent
    for a member that isn't one is kept as sent, and validation refuses it."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def patch_with_retries(req: falcon.Request, load, save, represent=lambda record: record, what="resource"):
    """PATCH as read, check, merge and save. When another write lands between
    the read and the save, read again (a few times) rather than undo it;
    a client that pinned a version with If-Match gets 412 instead."""
    check = if_match(req, represent)
    for _ in range(PATCH_RETRIES):
        current = load()
        if check and not check(current):
            raise PreconditionFailed()
        try:
            return save(current, unchanged_since(current, represent))
        except PreconditionFailed:
            if check:
                raise
    raise falcon.HTTPConflict(description=f"The {what} kept changing; try again.")


def created(req: falcon.Request, resp: falcon.Response, path: str, body) -> None:
    resp.status = falcon.HTTP_201
    resp.location = f"{req.prefix}{path}"
    resp.media = body


class QueryParser:
    """A list's query string, validated once per distinct string (bounded):
    clients repeat the same searches, and pydantic needn't see them again."""

    LIMIT = 1024

    def __init__(self, model) -> None:
        self._model = model
        self._seen: dict[str, tuple] = {}

    def __call__(self, req: falcon.Request) -> tuple:
        """(the validated query model, its ListQuery); 400 for a bad one."""
        parsed = self._seen.get(req.query_string)
        if parsed is None:
            query = parse_query(self._model, req.params)
            parsed = (query, query.to_list_query())
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()
            self._seen[req.query_string] = parsed
        return parsed


def add_paging_headers(req: falcon.Request, resp: falcon.Response, query, total: int) -> None:
    """X-Total-Count always; Link next/prev when the client pages with `limit`."""
    resp.set_header("X-Total-Count", str(total))
    if query.limit is None:
        return
    params = dict(req.params)

    def link(offset: int, rel: str) -> None:
        params["offset"] = str(offset)
        resp.append_link(f"{req.prefix}{req.path}?{urllib.parse.urlencode(params)}", rel)

    if query.offset + query.limit < total:
        link(query.offset + query.limit, "next")
    if query.offset > 0:
        link(max(query.offset - query.limit, 0), "prev")
