"""GET /openapi.json: an OpenAPI 3.1 document built from the app itself.

One source of truth: request bodies are the pydantic models that validate
them (fleet_api/schemas.py, with the response bodies; `model_json_schema`,
their `$defs` hoisted into components), list parameters are the query models' properties, paths and methods are the routes
the app serves, and bearer security comes from each resource's `auth` dict,
the same one the auth middleware reads. The document is built once, when the
app is created, and served as ready bytes.

Adding a route or a responder without describing it here fails at app
creation (`UndocumentedOperation`), so the document cannot silently drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import falcon
from pydantic import BaseModel

from fleet_api.auth import ACCESS
from fleet_api.docs import Docs
from fleet_api.errors import PROBLEM
from fleet_api.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from fleet_api.media import MERGE_PATCH, dumps
from fleet_api.metrics import MetricsResource
from fleet_api.resources.auth import Login, Logout, Refresh
from fleet_api.resources.health import Health
from fleet_api.resources.jwks import JWKS
from fleet_api.resources.oauth import FORM, Introspect, Revoke
from fleet_api.resources.sessions import SessionItem, SessionList
from fleet_api.resources.ships import Ship, Ships
from fleet_api.resources.users import User, Users
from fleet_api.schemas import (
    ERROR_SCHEMA,
    JWKS_SCHEMA,
    OAUTH_ERROR_SCHEMA,
    PROBLEM_SCHEMA,
    AccessToken,
    ActiveToken,
    Credentials,
    HealthStatus,
    InactiveToken,
    Message,
    Revoked,
    RevokedCount,
    SessionOut,
    ShipIn,
    ShipOut,
    ShipPatch,
    ShipQuery,
    ShipReplace,
    TokenPair,
    TokenRequest,
    UserIn,
    UserOut,
    UserPatch,
    UserQuery,
    UserReplace,
)

PATH = "/openapi.json"
REF = "#/components/schemas/{model}"
OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
SECURITY_SCHEME = "bearerAuth"


class UndocumentedOperation(LookupError):
    """A route serves a method this module does not describe."""


# The bodies in components (the hand-written ones are added by name).
MODELS: tuple[type[BaseModel], ...] = (
    ShipIn,
    ShipReplace,
    ShipPatch,
    UserIn,
    UserReplace,
    UserPatch,
    ShipOut,
    UserOut,
    Credentials,
    TokenPair,
    AccessToken,
    Message,
    HealthStatus,
    TokenRequest,
    Revoked,
    ActiveToken,
    InactiveToken,
    SessionOut,
    RevokedCount,
)

HEADERS = {
    "RateLimit-Policy": {
        "description": "The login quotas (draft-ietf-httpapi-ratelimit-headers-11 section 3): "
        '`"user";q=10;w=300, "ip";q=100;w=300`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": "What is left of each quota (section 4): r remaining, t seconds until it is restored.",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "Strong validator of the exact bytes sent; give it back in If-None-Match or If-Match.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9a-f]{24}"$'},
    },
    "Location": {
        "description": "The URL of the new resource.",
        "required": True,
        "schema": {"type": "string"},
    },
    "X-Total-Count": {
        "description": "How many items match, before `limit` and `offset`.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Link": {
        "description": '`rel="next"` and `rel="prev"` pages, when the request gave `limit`.',
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "`no-store`: the body must not be cached.",
        "required": True,
        "schema": {"type": "string", "const": "no-store"},
    },
    "WWW-Authenticate": {
        "description": "The `Bearer` challenge.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds until logins are accepted again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "Allow": {"description": "The methods the route serves.", "schema": {"type": "string"}},
    "CacheControlMaxAge": {
        "description": "`public, max-age=N`: clients and caches may keep the body N seconds (FLEET_JWKS_MAX_AGE).",
        "required": True,
        "schema": {"type": "string", "pattern": "^public, max-age=[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "const": "true"},
    },
}

# Every error status an operation may list, with when it happens.
ERRORS = {
    400: (
        "BadRequest",
        "Malformed JSON, a body or query that fails validation, or a conflict with the data.",
    ),
    401: (
        "Unauthorized",
        "No token, or an expired, revoked or deleted user's token; a failed login.",
        ["WWW-Authenticate"],
    ),
    403: ("Forbidden", "Changing or deleting another user."),
    404: ("NotFound", "No such id."),
    409: (
        "Conflict",
        "The resource kept changing under concurrent writes, or the first request with "
        "this Idempotency-Key is still running; try again.",
    ),
    412: ("PreconditionFailed", "If-Match did not match the current representation."),
    413: ("ContentTooLarge", "The body is larger than the server accepts."),
    415: ("UnsupportedMediaType", "The body is not in a media type this operation accepts."),
    422: (
        "UnprocessableEntity",
        "A malformed token, a bad signature, an unknown key (`kid`) or the wrong token type; "
        "or an Idempotency-Key reused with another body.",
    ),
    429: (
        "TooManyRequests",
        "Too many failed logins for this name or address; wait Retry-After seconds.",
        ["Retry-After", "RateLimit-Policy", "RateLimit"],
    ),
    500: ("InternalServerError", "A bug; the server logged it with the request's X-Request-ID."),
    503: ("ServiceUnavailable", "The store does not answer."),
}


# --- operations --------------------------------------------------------------
def _ref(model: type[BaseModel] | str) -> dict:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF.format(model=name)}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict | None = None, headers: tuple[str, ...] = ()) -> dict:
    response: dict[str, Any] = {"description": description}
    if headers:
        response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    if schema is not None:
        response["content"] = _json(schema)
    return response


def _token_body() -> dict:
    """RFC 7009 section 2.1 / RFC 7662 section 2.1: form-encoded. A JSON object
    with the same members is accepted too, but documented once only: a
    generated client (openapi-python-client) emits broken code for one body
    in two media types."""
    return {
        "required": True,
        "description": "Form-encoded, as the RFCs send it; a JSON object with the same members works too.",
        "content": {FORM: {"schema": _ref(TokenRequest)}},
    }


def _body(model: type[BaseModel], *media_types: str) -> dict:
    return {
        "required": True,
        "content": {media: {"schema": _ref(model)} for media in media_types or (falcon.MEDIA_JSON,)},
    }


def _if_none_match() -> dict:
    return {
        "name": "If-None-Match",
        "in": "header",
        "description": "ETags the client holds (or `*`): 304 without a body when one still matches.",
        "schema": {"type": "string"},
    }


def _if_match() -> dict:
    return {
        "name": "If-Match",
        "in": "header",
        "description": "Change only if the current representation still has one of these ETags (or `*`), else 412.",
        "schema": {"type": "string"},
    }


def _query_parameters(model: type[BaseModel]) -> list[dict]:
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


def _list(item: type[BaseModel], query: type[BaseModel], what: str) -> dict:
    return {
        "summary": f"List {what}, filtered, searched, sorted and paged",
        "parameters": [*_query_parameters(query), _if_none_match()],
        "responses": {
            200: _ok(
                f"The {what}.", {"type": "array", "items": _ref(item)}, ("ETag", "X-Total-Count", "Link")
            ),
            304: _ok(
                "Not modified: the client's copy (If-None-Match) is current.",
                None,
                ("ETag", "X-Total-Count", "Link"),
            ),
        },
        "errors": [400],
    }


def _create(body: type[BaseModel], item: type[BaseModel], what: str) -> dict:
    return {
        "summary": f"Create a {what}",
        "requestBody": _body(body),
        "responses": {201: _ok(f"The new {what}.", _ref(item), ("Location",))},
        "errors": [400, 413, 415],
    }


def _idempotent(spec: dict, scope: str) -> dict:
    """The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header)."""
    spec = dict(spec)
    spec["parameters"] = [
        *spec.get("parameters", ()),
        {
            "name": "Idempotency-Key",
            "in": "header",
            "description": "Makes a retry safe: a structured-field string (RFC 8941, quoted), unique per "
            f'{scope}, e.g. `"8e03978e-40d5-43e8-bc93-6894a57f9324"`. The same key with the same body '
            "within 24 hours replays the first answer (same status, body and Location, plus "
            "`Idempotent-Replayed: true`) without creating again; with another body, 422; while the "
            "first request is still running, 409. A malformed key is a 400.",
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
        },
    ]
    responses = dict(spec["responses"])
    created = dict(responses[201])
    created["headers"] = {
        **created.get("headers", {}),
        "Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"},
    }
    responses[201] = created
    spec["responses"] = responses
    spec["errors"] = sorted({*spec["errors"], 409, 422})
    return spec


def _get(item: type[BaseModel], what: str) -> dict:
    return {
        "summary": f"Get one {what}",
        "parameters": [_if_none_match()],
        "responses": {
            200: _ok(f"The {what}.", _ref(item), ("ETag",)),
            304: _ok("Not modified: the client's copy (If-None-Match) is current.", None, ("ETag",)),
        },
        "errors": [404],
    }


def _replace(body: type[BaseModel], item: type[BaseModel], what: str, extra: list[int] = ()) -> dict:
    return {
        "summary": f"Replace a {what}",
        "description": "A body `id`, if given, must equal the path id.",
        "parameters": [_if_match()],
        "requestBody": _body(body),
        "responses": {200: _ok(f"The {what} as stored.", _ref(item), ("ETag",))},
        "errors": [400, *extra, 404, 412, 413, 415],
    }


def _patch(body: type[BaseModel], item: type[BaseModel], what: str, extra: list[int] = ()) -> dict:
    return {
        "summary": f"Change some fields of a {what} (JSON Merge Patch, RFC 7396)",
        "description": "`null` removes a field, which a required field refuses (400). A body `id`, if given, must equal the path id.",
        "parameters": [_if_match()],
        "requestBody": _body(body, MERGE_PATCH, falcon.MEDIA_JSON),
        "responses": {200: _ok(f"The {what} as stored.", _ref(item), ("ETag",))},
        "errors": [400, *extra, 404, 409, 412, 413, 415],
    }


def _delete(what: str, extra: list[int] = ()) -> dict:
    return {
        "summary": f"Delete a {what}",
        "parameters": [_if_match()],
        "responses": {204: _ok(f"The {what} is gone.")},
        "errors": [*extra, 404, 412],
    }


def _login() -> dict:
    return {
        "summary": "Log in: an access token and a refresh token",
        "description": "A body that is not JSON counts as missing credentials (400). "
        "Failed logins are counted per user name and per client address: past the limit, "
        "429 with Retry-After, even for the right password.",
        "requestBody": _body(Credentials),
        "responses": {
            200: _ok("The tokens.", _ref(TokenPair), ("Cache-Control", "RateLimit-Policy", "RateLimit")),
        },
        "errors": [400, 401, 413, 429],
    }


def _refresh(resource) -> dict:
    if resource.rotates:
        return {
            "summary": "A new access token and the successor refresh token (rotation on)",
            "description": "The presented refresh token is used up. Presented again within "
            "FLEET_REFRESH_REUSE_GRACE seconds it answers the same successor; after that it is reuse: "
            "401 `Token has been revoked`, and every token of its session is dead.",
            "responses": {200: _ok("The new tokens.", _ref(TokenPair), ("Cache-Control",))},
            "errors": [],
        }
    return {
        "summary": "A new access token for a refresh token",
        "responses": {200: _ok("The new access token.", _ref(AccessToken), ("Cache-Control",))},
        "errors": [],
    }


_OAUTH_400 = {"$ref": "#/components/responses/OAuthInvalidRequest"}


def _revoke() -> dict:
    return {
        "summary": "Revoke a token (RFC 7009)",
        "description": "No other authentication: holding a token is the right to revoke it. "
        "A refresh token ends its whole session; an access token is revoked alone.",
        "requestBody": _token_body(),
        "responses": {
            200: _ok("Done, or the token was not valid anyway.", _ref(Revoked), ("Cache-Control",)),
            400: _OAUTH_400,
        },
        "errors": [413],
    }


def _introspect() -> dict:
    return {
        "summary": "Introspect a token (RFC 7662)",
        "description": "With an access token the caller sees only its own user's tokens; a resource "
        "server sends one of FLEET_INTROSPECTION_KEYS as `Authorization: Bearer <key>` or as the "
        "password of HTTP Basic.",
        "security": [{SECURITY_SCHEME: []}, {"introspectionKey": []}, {"introspectionBasic": []}],
        "x-token-type": ACCESS,
        "requestBody": _token_body(),
        "responses": {
            200: _ok(
                'What the token is, or exactly `{"active": false}`.',
                {"oneOf": [_ref(ActiveToken), _ref(InactiveToken)]},
                ("Cache-Control",),
            ),
            400: _OAUTH_400,
            401: {
                "description": "No, or a bad, token or key.",
                "headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
                "content": _json({"anyOf": [_ref("Error"), _ref("OAuthError")]}),
            },
        },
        "errors": [413, 422],
    }


def _sessions_list() -> dict:
    return {
        "summary": "The caller's sessions, newest first",
        "responses": {
            200: _ok("The sessions.", {"type": "array", "items": _ref(SessionOut)}, ("Cache-Control",))
        },
        "errors": [],
    }


def _sessions_end_others() -> dict:
    return {
        "summary": "Log out everywhere else: end every session of the caller but the current one",
        "responses": {200: _ok("How many were ended.", _ref(RevokedCount))},
        "errors": [],
    }


def _session_end() -> dict:
    return {
        "summary": "End one of the caller's sessions: every token of it is dead at once",
        "responses": {204: _ok("The session has ended.")},
        "errors": [404],
    }


def _logout(resource) -> dict:
    token = resource.auth["DELETE"]
    return {
        "summary": f"Log out: revoke the {token} token that calls this",
        "responses": {200: _ok("The token is revoked.", _ref(Message))},
        "errors": [],
    }


def _health() -> dict:
    return {
        "summary": "Health check for load balancers",
        "responses": {200: _ok("The store answers.", _ref(HealthStatus), ("Cache-Control",))},
        "errors": [503],
    }


def _jwks() -> dict:
    headers = {
        "Cache-Control": {"$ref": "#/components/headers/CacheControlMaxAge"},
        "ETag": {"$ref": "#/components/headers/ETag"},
    }
    return {
        "summary": "The public keys that verify our tokens (JWKS)",
        "description": "Verify a token offline: pick the key whose `kid` is the token header's. "
        "Every key that still verifies is listed; under HS256 the set is empty.",
        "parameters": [_if_none_match()],
        "responses": {
            200: {"description": "The key set.", "headers": headers, "content": _json(_ref("JWKSet"))},
            304: {
                "description": "Not modified: the client's copy (If-None-Match) is current.",
                "headers": headers,
            },
        },
        "errors": [],
    }


def _metrics() -> dict:
    return {
        "summary": "Prometheus metrics of every worker (FLEET_METRICS=off removes the route)",
        "description": "For the scraper only: keep it off the public network.",
        "responses": {
            200: {
                "description": "The Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        "errors": [],
    }


def _openapi() -> dict:
    return {
        "summary": "This document",
        "responses": {200: _ok("The OpenAPI 3.1 document.", {"type": "object"})},
        "errors": [],
    }


def _docs() -> dict:
    return {
        "summary": "Interactive docs for this document (Swagger UI)",
        "description": "Log in with `login`, paste the access token into Authorize, then try any operation.",
        "responses": {
            200: {"description": "The HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
        },
        "errors": [],
    }


# (resource class, method) -> operation, without the parts every operation shares.
OPERATIONS: dict[tuple[type, str], Callable[[Any], dict]] = {
    (Login, "POST"): lambda r: _named("auth", "login", _login()),
    (Refresh, "POST"): lambda r: _named("auth", "refreshToken", _refresh(r)),
    (Revoke, "POST"): lambda r: _named("auth", "revokeToken", _revoke()),
    (Introspect, "POST"): lambda r: _named("auth", "introspectToken", _introspect()),
    (SessionList, "GET"): lambda r: _named("sessions", "listSessions", _sessions_list()),
    (SessionList, "DELETE"): lambda r: _named("sessions", "endOtherSessions", _sessions_end_others()),
    (SessionItem, "DELETE"): lambda r: _named("sessions", "endSession", _session_end()),
    (Logout, "DELETE"): lambda r: _named(
        "auth", "logout" if r.auth["DELETE"] == ACCESS else "logoutRefresh", _logout(r)
    ),
    (Users, "GET"): lambda r: _named("users", "listUsers", _list(UserOut, UserQuery, "users")),
    (Users, "POST"): lambda r: _named(
        "users", "createUser", _idempotent(_create(UserIn, UserOut, "user"), "client address")
    ),
    (User, "GET"): lambda r: _named("users", "getUser", _get(UserOut, "user")),
    (User, "PUT"): lambda r: _named(
        "users", "updateUser", _replace(UserReplace, UserOut, "user (yourself only)", [403])
    ),
    (User, "PATCH"): lambda r: _named(
        "users", "patchUser", _patch(UserPatch, UserOut, "user (yourself only)", [403])
    ),
    (User, "DELETE"): lambda r: _named("users", "deleteUser", _delete("user (yourself only)", [403])),
    (Ships, "GET"): lambda r: _named("ships", "listShips", _list(ShipOut, ShipQuery, "ships")),
    (Ships, "POST"): lambda r: _named(
        "ships", "createShip", _idempotent(_create(ShipIn, ShipOut, "ship"), "user")
    ),
    (Ship, "GET"): lambda r: _named("ships", "getShip", _get(ShipOut, "ship")),
    (Ship, "PUT"): lambda r: _named("ships", "updateShip", _replace(ShipReplace, ShipOut, "ship")),
    (Ship, "PATCH"): lambda r: _named("ships", "patchShip", _patch(ShipPatch, ShipOut, "ship")),
    (Ship, "DELETE"): lambda r: _named("ships", "deleteShip", _delete("ship")),
    (Health, "GET"): lambda r: _named("meta", "health", _health()),
    (JWKS, "GET"): lambda r: _named("meta", "jwks", _jwks()),
    (Docs, "GET"): lambda r: _named("meta", "docs", _docs()),
    (MetricsResource, "GET"): lambda r: _named("meta", "metrics", _metrics()),
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


def _named(tag: str, operation_id: str, spec: dict) -> dict:
    """A generated client's module (the tag) and method name (the operationId)."""
    return {"operationId": operation_id, "tags": [tag], **spec}


# --- routes ------------------------------------------------------------------
_FIELD = re.compile(r"\{(\w+)(?::(\w+)(?:\((.*?)\))?)?\}")


def served_routes(app: falcon.App) -> list[tuple[str, Any, dict[str, Callable]]]:
    """(URI template, resource, {method: responder}) for every route, with
    Falcon's own default responders (OPTIONS, 405s) left out. Walks the
    router's nodes the way `falcon.inspect` does, keeping the resource."""
    found = []

    def walk(nodes) -> None:
        for node in nodes:
            if node.resource is not None:
                methods = {
                    method: responder
                    for method, responder in node.method_map.items()
                    if getattr(responder, "__self__", None) is node.resource
                    # HEAD is GET without the body (RFC 9110 section 9.3.2), not an operation of its own
                    and method != "HEAD"
                }
                found.append((node.uri_template, node.resource, methods))
            walk(node.children)

    walk(app._router._roots)
    return found


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


def _finish(spec: dict, method: str, path: str, resource, path_parameters: list[dict]) -> dict:
    """Add what follows from the route and the `auth` dict: path ids, bearer
    security, 401/422 for token checks, 500 everywhere; errors as refs."""
    spec = dict(spec)
    errors = set(spec.pop("errors"))
    token = getattr(resource, "auth", {}).get(method)
    if not spec.get("operationId") or not spec.get("tags"):
        raise UndocumentedOperation(f"{method} {path} has no operationId or tag")
    operation: dict[str, Any] = dict(spec)
    if path_parameters or spec.get("parameters"):
        operation["parameters"] = [*path_parameters, *spec.get("parameters", ())]
    if token is not None:
        operation["security"] = [{SECURITY_SCHEME: []}]
        operation["x-token-type"] = token
        needs = f"Needs an {token} token." if token == ACCESS else f"Needs a {token} token."
        operation["description"] = f"{operation.get('description', '')} {needs}".strip()
        errors |= {401, 422}
    errors.add(500)
    responses = {str(status): response for status, response in spec["responses"].items()}
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _components() -> dict:
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Error"] = ERROR_SCHEMA
    schemas["JWKSet"] = JWKS_SCHEMA
    schemas["OAuthError"] = OAUTH_ERROR_SCHEMA
    schemas["Problem"] = PROBLEM_SCHEMA
    responses = {}
    for name, description, *headers in ERRORS.values():
        response = _ok(description, _ref("Error"), tuple(headers[0]) if headers else ())
        response["content"][PROBLEM] = {"schema": _ref("Problem")}
        responses[name] = response
    responses["OAuthInvalidRequest"] = _ok(
        "`invalid_request`: `token` missing, repeated or not a string, or a body neither form nor JSON.",
        _ref("OAuthError"),
    )
    return {
        "schemas": schemas,
        "responses": responses,
        "headers": HEADERS,
        "securitySchemes": {
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
        },
    }


def build_openapi(app: falcon.App, extra: dict[str, dict[str, dict]] | None = None) -> dict:
    """The document for every route `app` serves, plus `extra` paths
    ({path: {method: operation}}) not registered yet."""
    paths: dict[str, dict] = {}
    for template, resource, methods in served_routes(app):
        path, path_parameters = _path(template)
        for method in methods:
            describe = OPERATIONS.get((type(resource), method))
            if describe is None:
                raise UndocumentedOperation(f"{method} {path} ({type(resource).__name__}) is not described")
            operation = _finish(describe(resource), method, path, resource, path_parameters)
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in (extra or {}).items():
        for method, operation in operations.items():
            paths.setdefault(path, {})[method.lower()] = operation
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


class OpenAPI:
    """Serves the document, built once from the app's routes so far plus its
    own route; register it last (`app.add_route(PATH, OpenAPI(app))`)."""

    def __init__(self, app: falcon.App) -> None:
        own = _finish(_named("meta", "openapi", _openapi()), "GET", PATH, self, [])
        self.document = build_openapi(app, extra={PATH: {"GET": own}})
        self._data = dumps(self.document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data
