"""The OpenAPI 3.1 document of the app, built from its route table.

Each responder declares its operation where it stands: `@operation(tag,
operation_id, **shape)`, the summary the first line of its docstring and the
description the rest. A resource whose operations depend on how it was built
(which token a logout revokes, whether refresh rotates) sets an `operations`
dict in `__init__` instead, keyed by method like its `auth` dict.

This module holds what operations share: the builders of the common shapes
(list, create, read, replace, patch, delete), headers and error responses, and
`build_openapi`, which adds what follows from the route (path ids, from its
converters) and from the `auth` dict (bearer security, 401/422). Bodies are the
models of fleet_api/schemas.py, the same that validate requests; their `$defs`
are hoisted into components.

A responder without a declaration, or a declaration without a responder,
fails at app creation (`UndocumentedOperation`): the document cannot drift.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import falcon
from pydantic import BaseModel

from fleet_api import schemas
from fleet_api.auth import ACCESS
from fleet_api.errors import PROBLEM
from fleet_api.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from fleet_api.media import MERGE_PATCH

REF = "#/components/schemas/{model}"
OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
SECURITY_SCHEME = "bearerAuth"

# The bodies in components, models first; the hand-written ones by their titles.
MODELS: tuple[type[BaseModel], ...] = (
    schemas.ShipIn,
    schemas.ShipReplace,
    schemas.ShipPatch,
    schemas.UserIn,
    schemas.UserReplace,
    schemas.UserPatch,
    schemas.ShipOut,
    schemas.UserOut,
    schemas.Credentials,
    schemas.TokenPair,
    schemas.AccessToken,
    schemas.Message,
    schemas.HealthStatus,
    schemas.TokenRequest,
    schemas.Revoked,
    schemas.ActiveToken,
    schemas.InactiveToken,
    schemas.SessionOut,
    schemas.RevokedCount,
)
STATIC_SCHEMAS = (
    schemas.ERROR_SCHEMA,
    schemas.JWKS_SCHEMA,
    schemas.OAUTH_ERROR_SCHEMA,
    schemas.PROBLEM_SCHEMA,
)


class UndocumentedOperation(LookupError):
    """A route serves a method its resource does not describe, or the reverse."""


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation as its resource declares it. build_openapi adds what the
    route and the `auth` dict say: path parameters, security, 401/422, 500."""

    tag: str  # a generated client's module
    operation_id: str  # and its function
    summary: str
    description: str = ""
    _: dataclasses.KW_ONLY
    responses: Mapping[int, dict]
    errors: Iterable[int] = ()  # statuses of ERRORS, answered with the shared error bodies
    parameters: tuple[dict, ...] = ()
    request_body: dict | None = None
    # For a responder that checks its caller itself (no `auth` entry): the
    # schemes it accepts and the token type of the first.
    security: tuple[str, ...] = ()
    token_type: str | None = None


def operation(tag: str, operation_id: str, **shape: Any) -> Callable[[Callable], Callable]:
    """Declare the decorated responder's operation: summary and description
    from its docstring, the rest (`responses`, `errors`, ...) from `shape`."""

    def declare(responder: Callable) -> Callable:
        text = responder.__doc__
        if text is None and sys.flags.optimize >= 2:  # python -OO dropped it: the id must do
            text = operation_id
        summary, _, description = inspect.cleandoc(text or "").partition("\n")
        if not summary:
            raise UndocumentedOperation(f"{responder.__qualname__} has no docstring to summarize it")
        responder.operation = Operation(tag, operation_id, summary, " ".join(description.split()), **shape)
        return responder

    return declare


def _header(description: str, schema: dict, required: bool = True) -> dict:
    header = {"description": description, "required": True, "schema": schema}
    if not required:
        del header["required"]
    return header


HEADERS = {
    "RateLimit-Policy": _header(
        "The login quotas (draft-ietf-httpapi-ratelimit-headers-11 section 3): "
        '`"user";q=10;w=300, "ip";q=100;w=300`.',
        {"type": "string"},
    ),
    "RateLimit": _header(
        "What is left of each quota (section 4): r remaining, t seconds until it is restored.",
        {"type": "string"},
    ),
    "ETag": _header(
        "Strong validator of the exact bytes sent; give it back in If-None-Match or If-Match.",
        {"type": "string", "pattern": '^"[0-9a-f]{24}"$'},
    ),
    "Location": _header("The URL of the new resource.", {"type": "string"}),
    "X-Total-Count": _header(
        "How many items match, before `limit` and `offset`.", {"type": "integer", "minimum": 0}
    ),
    "Link": _header(
        '`rel="next"` and `rel="prev"` pages, when the request gave `limit`.', {"type": "string"}, False
    ),
    "Cache-Control": _header(
        "`no-store`: the body must not be cached.", {"type": "string", "const": "no-store"}
    ),
    "WWW-Authenticate": _header("The `Bearer` challenge.", {"type": "string"}),
    "Retry-After": _header("Seconds until logins are accepted again.", {"type": "integer", "minimum": 1}),
    "Allow": _header("The methods the route serves.", {"type": "string"}, False),
    "CacheControlMaxAge": _header(
        "`public, max-age=N`: clients and caches may keep the body N seconds (FLEET_JWKS_MAX_AGE).",
        {"type": "string", "pattern": "^public, max-age=[0-9]+$"},
    ),
    "Idempotent-Replayed": _header(
        "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
        {"type": "string", "const": "true"},
        False,
    ),
}

# Every error status an operation may list, with when it happens; each is a
# response in components named by its RFC 9110 reason phrase (NotFound).
ERRORS = {
    400: "Malformed JSON, a body or query that fails validation, or a conflict with the data.",
    401: "No token, or an expired, revoked or deleted user's token; a failed login.",
    403: "Changing or deleting another user.",
    404: "No such id.",
    409: "The resource kept changing under concurrent writes, or the first request with this Idempotency-Key is still running; try again.",
    412: "If-Match did not match the current representation.",
    413: "The body is larger than the server accepts.",
    415: "The body is not in a media type this operation accepts.",
    422: "A malformed token, a bad signature, an unknown key (`kid`) or the wrong token type; or an Idempotency-Key reused with another body.",
    429: "Too many failed logins for this name or address; wait Retry-After seconds.",
    500: "A bug; the server logged it with the request's X-Request-ID.",
    503: "The store does not answer.",
}
ERROR_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After", "RateLimit-Policy", "RateLimit")}


def _error_name(status: int) -> str:
    """413 -> `ContentTooLarge`: the RFC 9110 reason phrase (Falcon's), as a component name."""
    return falcon.code_to_http_status(status).split(" ", 1)[1].replace(" ", "")


# --- parts of operations -------------------------------------------------------
def ref(model: type[BaseModel] | str) -> dict:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF.format(model=name)}


def array_of(model: type[BaseModel]) -> dict:
    return {"type": "array", "items": ref(model)}


def json_content(schema: dict) -> dict:
    return {falcon.MEDIA_JSON: {"schema": schema}}


def ok(
    description: str, schema: dict | None = None, headers: Iterable[str] | Mapping[str, dict] = ()
) -> dict:
    """A response; `headers` by name (refs to components/headers), or as refs already."""
    response: dict[str, Any] = {"description": description}
    if not isinstance(headers, Mapping):
        headers = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    if headers:
        response["headers"] = dict(headers)
    if schema is not None:
        response["content"] = json_content(schema)
    return response


def text(description: str, media_type: str) -> dict:
    """A response whose body is text, not JSON."""
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def not_modified(headers: Iterable[str] | Mapping[str, dict]) -> dict:
    return ok("Not modified: the client's copy (If-None-Match) is current.", None, headers)


def body(model: type[BaseModel], *media_types: str) -> dict:
    return {
        "required": True,
        "content": {media: {"schema": ref(model)} for media in media_types or (falcon.MEDIA_JSON,)},
    }


def _conditional(name: str, description: str) -> dict:
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string"}}


IF_NONE_MATCH = _conditional(
    "If-None-Match", "ETags the client holds (or `*`): 304 without a body when one still matches."
)
IF_MATCH = _conditional(
    "If-Match", "Change only if the current representation still has one of these ETags (or `*`), else 412."
)


def query_parameters(model: type[BaseModel]) -> list[dict]:
    """The query model's properties as query parameters; every value arrives as
    text, so the `null` branch pydantic gives optional fields does not apply."""
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        branches = [b for b in prop.pop("anyOf", ()) if b != {"type": "null"}]
        if len(branches) == 1:
            prop = {**branches[0], **prop}
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", 0) is None:
            del prop["default"]
        sortable = getattr(model, "sortable", ())
        if name == "sort" and sortable:
            field = f"-?(?:{'|'.join(map(re.escape, sortable))})"
            prop["pattern"] = f"^{field}(?:,{field})*$"
            description = f"{description} Fields: {', '.join(f'`{f}`' for f in sortable)}; each at most once."
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


# --- the common shapes: @operation(tag, operation_id, **listing(...)) and so on ---
def listing(item: type[BaseModel], query: type[BaseModel], what: str) -> dict:
    headers = ("ETag", "X-Total-Count", "Link")
    return {
        "parameters": (*query_parameters(query), IF_NONE_MATCH),
        "responses": {200: ok(f"The {what}.", array_of(item), headers), 304: not_modified(headers)},
        "errors": (400,),
    }


def creating(model: type[BaseModel], item: type[BaseModel], what: str, key_scope: str) -> dict:
    """With the Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header),
    its keys unique per `key_scope`."""
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Makes a retry safe: a structured-field string (RFC 8941, quoted), unique per "
        f'{key_scope}, e.g. `"8e03978e-40d5-43e8-bc93-6894a57f9324"`. The same key with the same body '
        "within 24 hours replays the first answer (same status, body and Location, plus "
        "`Idempotent-Replayed: true`) without creating again; with another body, 422; while the "
        "first request is still running, 409. A malformed key is a 400.",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    }
    return {
        "parameters": (key,),
        "request_body": body(model),
        "responses": {201: ok(f"The new {what}.", ref(item), ("Location", "Idempotent-Replayed"))},
        "errors": (400, 409, 413, 415, 422),
    }


def reading(item: type[BaseModel], what: str) -> dict:
    return {
        "parameters": (IF_NONE_MATCH,),
        "responses": {200: ok(f"The {what}.", ref(item), ("ETag",)), 304: not_modified(("ETag",))},
        "errors": (404,),
    }


def replacing(model: type[BaseModel], item: type[BaseModel], what: str, errors: Iterable[int] = ()) -> dict:
    return _changing(body(model), item, what, (400, 404, 412, 413, 415, *errors))


def patching(model: type[BaseModel], item: type[BaseModel], what: str, errors: Iterable[int] = ()) -> dict:
    """JSON Merge Patch (RFC 7396) or plain JSON; 409 when it kept losing races."""
    patch = body(model, MERGE_PATCH, falcon.MEDIA_JSON)
    return _changing(patch, item, what, (400, 404, 409, 412, 413, 415, *errors))


def _changing(request_body: dict, item: type[BaseModel], what: str, errors: tuple[int, ...]) -> dict:
    return {
        "parameters": (IF_MATCH,),
        "request_body": request_body,
        "responses": {200: ok(f"The {what} as stored.", ref(item), ("ETag",))},
        "errors": errors,
    }


def deleting(what: str, errors: Iterable[int] = ()) -> dict:
    return {
        "parameters": (IF_MATCH,),
        "responses": {204: ok(f"The {what} is gone.")},
        "errors": (404, 412, *errors),
    }


# The groups a docs page and a generated client sort operations into.
TAGS = [
    {
        "name": "auth",
        "description": "Log in, refresh the access token, log out, revoke and introspect tokens.",
    },
    {
        "name": "sessions",
        "description": "Your logins (one session each): list them, end one, end all others.",
    },
    {"name": "users", "description": "Register, list, read, change and delete users."},
    {"name": "ships", "description": "Ships: anyone reads; an access token writes."},
    {"name": "meta", "description": "Health, metrics, signing keys, this document and its docs page."},
]

SECURITY_SCHEMES = {
    SECURITY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /auth/login, or a refresh token where an operation says so.",
    },
    "introspectionKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "POST /auth/introspect only: one of FLEET_INTROSPECTION_KEYS.",
    },
    "introspectionBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "POST /auth/introspect only: any user name, one of FLEET_INTROSPECTION_KEYS as the password.",
    },
}


# --- the document ----------------------------------------------------------------
_FIELD = re.compile(r"\{(\w+)(?::(\w+)(?:\((.*?)\))?)?\}")


def _path(template: str) -> tuple[str, list[dict]]:
    """`/api/ships/{ship_id:int(min=0, max=9)}` -> `/api/ships/{ship_id}` and its parameter."""
    parameters = []
    for name, converter, args in _FIELD.findall(template):
        schema: dict[str, Any] = {"type": "string"}
        if converter == "int":
            schema = {"type": "integer"}
            for arg in filter(None, (a.strip() for a in args.split(","))):
                key, _, value = arg.partition("=")
                if key.strip() in ("min", "max"):
                    schema["minimum" if key.strip() == "min" else "maximum"] = int(value)
        elif converter:
            raise UndocumentedOperation(f"no schema for the route converter {converter!r} in {template}")
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _FIELD.sub(r"{\1}", template), parameters


def _operations(template: str, resource: object) -> dict[str, Operation]:
    """The resource's declarations for the methods it serves, checked both ways.
    HEAD is GET without the body (RFC 9110 section 9.3.2), not an operation of its own."""
    responders = falcon.routing.map_http_methods(resource)
    served = [method for method in responders if method != "HEAD"]
    declared = {m: responders[m].operation for m in served if hasattr(responders[m], "operation")}
    declared.update(getattr(resource, "operations", {}))
    name = type(resource).__name__
    for method in served:
        if method not in declared:
            raise UndocumentedOperation(f"{method} {template} ({name}) is not described")
    for method in declared:
        if method not in served:
            raise UndocumentedOperation(f"{method} {template} ({name}) is described but not served")
    return {method: declared[method] for method in served}


def _finish(operation: Operation, method: str, path_parameters: list[dict], resource: object) -> dict:
    """The declaration plus what follows from the route and the `auth` dict."""
    token = getattr(resource, "auth", {}).get(method)
    description = operation.description
    errors = {*operation.errors, 500}
    security, token_type = operation.security, operation.token_type
    if token is not None:
        security, token_type = (SECURITY_SCHEME,), token
        needs = f"Needs an {token} token." if token == ACCESS else f"Needs a {token} token."
        description = f"{description} {needs}".strip()
        errors |= {401, 422}
    spec: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
    }
    if description:
        spec["description"] = description
    if security:
        unknown = set(security) - set(SECURITY_SCHEMES)
        if unknown:
            raise UndocumentedOperation(f"{operation.operation_id}: no security scheme {sorted(unknown)}")
        spec["security"] = [{scheme: []} for scheme in security]
        spec["x-token-type"] = token_type
    if path_parameters or operation.parameters:
        spec["parameters"] = [*path_parameters, *operation.parameters]
    if operation.request_body is not None:
        spec["requestBody"] = operation.request_body
    responses = {str(status): {"$ref": f"#/components/responses/{_error_name(status)}"} for status in errors}
    responses.update((str(status), response) for status, response in operation.responses.items())
    spec["responses"] = dict(sorted(responses.items()))
    return spec


def _components() -> dict:
    """A copy each app may keep: the components depend on nothing but this
    module's models and tables, and generating their JSON Schemas is most of
    what building an app costs (~13 of ~22 ms), so it happens once a process."""
    return copy.deepcopy(_generated_components())


@functools.cache
def _generated_components() -> dict:
    components: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    components.update((schema["title"], schema) for schema in STATIC_SCHEMAS)
    responses = {}
    for status, description in ERRORS.items():
        response = ok(description, ref("Error"), ERROR_HEADERS.get(status, ()))
        response["content"][PROBLEM] = {"schema": ref("Problem")}
        responses[_error_name(status)] = response
    responses["OAuthInvalidRequest"] = ok(
        "`invalid_request`: `token` missing, repeated or not a string, or a body neither form nor JSON.",
        ref("OAuthError"),
    )
    return {
        "schemas": components,
        "responses": responses,
        "headers": HEADERS,
        "securitySchemes": SECURITY_SCHEMES,
    }


def build_openapi(routes: Iterable[tuple[str, object]]) -> dict:
    """The document for the route table `routes` ((URI template, resource)
    pairs), the same table the app passes to `add_route`."""
    paths: dict[str, dict] = {}
    for template, resource in routes:
        path, path_parameters = _path(template)
        for method, operation in _operations(template, resource).items():
            paths.setdefault(path, {})[method.lower()] = _finish(operation, method, path_parameters, resource)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Fleet API",
            "version": API_VERSION,
            "description": "Ships and their users, with JWT bearer authentication. "
            'Every error body is `{"error": "<reason phrase>", "message": ...}`, '
            'except the bearer-token check\'s: `{"error": "<message>"}`.',
        },
        "tags": TAGS,
        "paths": paths,
        "components": _components(),
    }
