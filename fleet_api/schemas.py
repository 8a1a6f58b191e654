"""Request and response bodies, declared once.

pydantic (v2, strict mode) validates the request bodies and reports every bad
field in one pass; the same models, with the response bodies beside them, are
the JSON Schemas /openapi.json publishes (fleet_api/openapi.py). Error texts
follow the example's marshmallow wording so its clients can keep matching on them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

from fleet_api.store.base import SHIP_FIELDS, ListQuery

MAX_TEXT = 256
MAX_ROLES = 32
MAX_INT = 2**31 - 1
NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]
Count = Annotated[int, Field(ge=1, le=MAX_INT)]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ShipIn(_Body):
    """A ship as clients send it (POST): every field, no id."""

    affiliation: Text
    category: Text
    crew: Count
    length: Count
    manufacturer: Text
    model: Text
    roles: Annotated[list[Text], Field(max_length=MAX_ROLES)]
    ship_class: Text


class ShipReplace(ShipIn):
    """PUT body: the same, plus an optional id that must match the path.

    Also what POST validates, as the example's one schema does: an id there
    passes validation and is then refused with a bare 400. Absent is None;
    `null` is refused like any other null."""

    id: Id = Field(None, json_schema_extra=lambda schema: schema.pop("default", None))


class UserIn(_Body):
    name: Annotated[str, StringConstraints(min_length=2, max_length=64, pattern=NO_NUL)]
    password: Annotated[str, StringConstraints(min_length=4, max_length=1024, pattern=NO_NUL)]


class UserReplace(UserIn):
    id: Id = Field(None, json_schema_extra=lambda schema: schema.pop("default", None))  # as ShipReplace.id


class ShipPatch(_Body):
    """PATCH body (JSON Merge Patch): any subset of the ship's fields."""

    affiliation: Text | None = None
    category: Text | None = None
    crew: Count | None = None
    length: Count | None = None
    manufacturer: Text | None = None
    model: Text | None = None
    roles: Annotated[list[Text], Field(max_length=MAX_ROLES)] | None = None
    ship_class: Text | None = None
    id: Id | None = None


class UserPatch(_Body):
    name: Annotated[str, StringConstraints(min_length=2, max_length=64, pattern=NO_NUL)] | None = None
    password: Annotated[str, StringConstraints(min_length=4, max_length=1024, pattern=NO_NUL)] | None = None
    id: Id | None = None


# --- login and token parameters ----------------------------------------------
class Credentials(BaseModel):
    """The login body: a missing or empty field is a 400 (`Username or password
    missing.`), any other value that is not a string a 401 (`Username or
    password invalid.`)."""

    # Strict, so a number is no name; other members are ignored, as the example
    # ignores them. resources/auth.py maps a failure to the example's answers.
    model_config = ConfigDict(strict=True, frozen=True)

    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


class TokenRequest(BaseModel):
    """RFC 7009 / RFC 7662 parameters, form-encoded or as a JSON object."""

    model_config = ConfigDict(strict=True, frozen=True)

    token: str = Field(min_length=1)
    token_type_hint: str | None = Field(
        None, description="`access_token` or `refresh_token`; ignored: each token names its own type."
    )


# --- response bodies (documented, not validated: the app builds them) ----------
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


ShipOut = create_model(
    "Ship", __base__=ShipIn, __doc__="A ship as the API returns it: every field and its id.", id=(Id, ...)
)
UserOut = create_model(
    "User",
    __base__=_Out,
    __doc__="A user as the API returns it; the password never leaves the server.",
    id=(Id, ...),
    name=(UserIn.model_fields["name"].annotation, UserIn.model_fields["name"]),
)


class TokenPair(_Out):
    access_token: str
    refresh_token: str


class AccessToken(_Out):
    access_token: str


class Message(_Out):
    message: str


class HealthStatus(_Out):
    status: str


class Revoked(_Out):
    """Always this empty object, whether or not the token was valid (RFC 7009 section 2.2)."""


class ActiveToken(_Out):
    """A live token (RFC 7662 section 2.2)."""

    active: Literal[True]
    sub: str
    username: str
    token_type: Literal["access", "refresh"]
    sid: str = Field(description="The session; absent only for tokens from before sessions.")
    jti: str
    iat: int
    exp: int


class InactiveToken(_Out):
    """Expired, revoked, of an ended session, used up, forged, garbage, or
    not the caller's: nothing more is said."""

    active: Literal[False]


class SessionOut(_Out):
    """One login of the caller's, with what the server saw of its client."""

    id: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    last_used_at: str = Field(
        json_schema_extra={"format": "date-time"}, description="Recorded at most once a minute."
    )
    user_agent: str | None = Field(description="The login's User-Agent, cut to 256 characters.")
    ip: str = Field(description="The client address (X-Forwarded-For only from FORWARDED_ALLOW_IPS).")
    current: bool = Field(description="True for the session of the calling token.")


class RevokedCount(_Out):
    revoked: int = Field(ge=0, description="How many other sessions were ended.")


# --- hand-written schemas: bodies errors.py and the key ring build -------------
# Plain JSON Schema where a model would only restate them: the error shapes
# have a member that is a string or a map, and JWKS is RFC 7517's.
OAUTH_ERROR_SCHEMA = {
    "title": "OAuthError",
    "description": "An error of /auth/revoke and /auth/introspect, in the OAuth shape (RFC 6749 section 5.2).",
    "type": "object",
    "properties": {
        "error": {"type": "string", "enum": ["invalid_request", "invalid_client"]},
        "error_description": {"type": "string"},
    },
    "required": ["error"],
    "additionalProperties": False,
}

ERROR_SCHEMA = {
    "title": "Error",
    "description": "Every error: the HTTP reason phrase, and what went wrong when there is more to say; "
    "the bearer-token check's 401s and 422s are the one member `error`, its message (flask-jwt-extended's shape).",
    "type": "object",
    "properties": {
        "error": {
            "type": "string",
            "description": "The HTTP reason phrase, e.g. `Bad Request`; for a token error the message, e.g. `Token has expired`.",
        },
        "message": {
            "description": "A sentence, or for a body or query that failed validation every bad field with its messages.",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "additionalProperties": {
                        "anyOf": [
                            {"type": "array", "items": {"type": "string"}},
                            {
                                "type": "object",
                                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                            },
                        ],
                    },
                },
            ],
        },
    },
    "required": ["error"],
    "additionalProperties": False,
}

# RFC 7517 section 5: the set; each key a public JWK (RFC 8037 OKP, RFC 7518 EC).
JWKS_SCHEMA = {
    "title": "JWKSet",
    "description": "The public keys that verify our tokens; empty under HS256 (secrets are never published).",
    "type": "object",
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kty": {"type": "string", "enum": ["OKP", "EC"]},
                    "crv": {"type": "string", "enum": ["Ed25519", "P-256"]},
                    "x": {"type": "string"},
                    "y": {"type": "string"},
                    "kid": {
                        "type": "string",
                        "description": "The key's RFC 7638 thumbprint, as in the token header.",
                    },
                    "alg": {"type": "string", "enum": ["EdDSA", "ES256"]},
                    "use": {"type": "string", "const": "sig"},
                },
                "required": ["kty", "crv", "x", "kid", "alg", "use"],
            },
        }
    },
    "required": ["keys"],
    "additionalProperties": False,
}

# RFC 9457 section 3, as fleet_api.errors builds it for Accept: application/problem+json.
PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details, sent instead of Error when the client prefers "
    "application/problem+json. Every `type` is listed in the README.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request's X-Request-ID."},
        "errors": {
            "type": "array",
            "description": "For validation-failed: one entry per message.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                "required": ["field", "detail"],
            },
        },
        "violated-policies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "title", "status"],
}


# --- list queries ----------------------------------------------------------
MAX_LIMIT = 1000
SHIP_SORT_FIELDS = ("id",) + tuple(f for f in SHIP_FIELDS if f != "roles")
USER_SORT_FIELDS = ("id", "name")
Bound = Annotated[int, Field(ge=0, le=MAX_INT)]


class _Query(BaseModel):
    """Query string parameters: lax mode, since every value arrives as text."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sortable: ClassVar[tuple[str, ...]] = ()

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] | None = Field(None, description="Page size.")
    offset: Annotated[int, Field(ge=0, le=MAX_INT)] = Field(0, description="Items to skip.")
    q: Text | None = Field(None, description="Case-insensitive text to find in the text fields.")
    sort: str | None = Field(
        None,
        description="Comma-separated fields, `-` for descending: `-length,model`.",
        max_length=MAX_TEXT,
    )

    @field_validator("sort")
    @classmethod
    def _known_fields(cls, value: str | None) -> str | None:
        if value is None:
            return None
        seen = set()
        for key in value.split(","):
            field = key.removeprefix("-")
            if field not in cls.sortable:
                raise ValueError(f"Unknown sort field {field!r}; use one of: {', '.join(cls.sortable)}.")
            if field in seen:
                raise ValueError(f"Sort field {field!r} given twice.")
            seen.add(field)
        return value

    def sort_keys(self) -> tuple[tuple[str, bool], ...]:
        if not self.sort:
            return ()
        return tuple((key.removeprefix("-"), key.startswith("-")) for key in self.sort.split(","))


class ShipQuery(_Query):
    sortable: ClassVar[tuple[str, ...]] = SHIP_SORT_FIELDS

    affiliation: Text | None = Field(None, description="Exact match, case-insensitive.")
    category: Text | None = Field(None, description="Exact match, case-insensitive.")
    ship_class: Text | None = Field(None, description="Exact match, case-insensitive.")
    manufacturer: Text | None = Field(None, description="Exact match, case-insensitive.")
    crew_min: Bound | None = None
    crew_max: Bound | None = None
    length_min: Bound | None = None
    length_max: Bound | None = None

    def to_list_query(self) -> ListQuery:
        equals = tuple(
            (name, getattr(self, name))
            for name in ("affiliation", "category", "ship_class", "manufacturer")
            if getattr(self, name) is not None
        )
        ranges = tuple(
            (name, getattr(self, f"{name}_min"), getattr(self, f"{name}_max"))
            for name in ("crew", "length")
            if getattr(self, f"{name}_min") is not None or getattr(self, f"{name}_max") is not None
        )
        return ListQuery(equals, ranges, self.q, self.sort_keys(), self.limit, self.offset)


class UserQuery(_Query):
    sortable: ClassVar[tuple[str, ...]] = USER_SORT_FIELDS

    def to_list_query(self) -> ListQuery:
        return ListQuery((), (), self.q, self.sort_keys(), self.limit, self.offset)


def parse_query(model: type[_Query], params: dict[str, Any]) -> _Query:
    """Query parameters, each given once, checked like a body; 400 names the bad ones."""
    repeated = {
        name: ["Give this parameter once."] for name, value in params.items() if isinstance(value, list)
    }
    if repeated:
        raise ValidationFailed(repeated)
    try:
        return model.model_validate(params)
    except pydantic.ValidationError as exc:
        errors = _messages(exc)
        for messages in errors.values():
            messages[:] = ["Unknown parameter." if m == "Unknown field." else m for m in messages]
        raise ValidationFailed(errors) from None


class ValidationFailed(Exception):
    """The body broke the schema; `errors` maps each bad field to messages,
    or for a list's items, each bad index to its messages (marshmallow's shape)."""

    def __init__(self, errors: dict[str, list[str] | dict[str, list[str]]]):
        super().__init__(errors)
        self.errors = errors


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["Invalid input type."]})
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(_messages(exc)) from None


def _messages(exc: pydantic.ValidationError) -> dict:
    """marshmallow's shapes: {"crew": ["Not a valid integer."]}, and for a
    list's items {"roles": {"2": ["Not a valid string."]}}; items win over
    the list's own messages, as marshmallow checks the items first."""
    errors: dict = {}
    items: dict[str, dict[str, list[str]]] = {}
    for err in exc.errors(include_url=False):
        field, *rest = err["loc"] or ("_schema",)
        if err.get("input", "") is None and err["type"] not in ("missing", "extra_forbidden"):
            text = "Field may not be null."
        else:
            text = _MESSAGES.get(err["type"], err["msg"])
            if callable(text):
                text = text(err.get("ctx") or {})
        if rest:
            items.setdefault(str(field), {}).setdefault(str(rest[0]), []).append(text)
        else:
            errors.setdefault(str(field), []).append(text)
    errors.update(items)
    return errors


_MESSAGES = {
    "missing": "Missing data for required field.",
    "extra_forbidden": "Unknown field.",
    "string_type": "Not a valid string.",
    "int_type": "Not a valid integer.",
    "list_type": "Not a valid list.",
    "greater_than_equal": lambda c: f"Must be greater than or equal to {c['ge']}.",
    "less_than_equal": lambda c: f"Must be less than or equal to {c['le']}.",
    "string_too_short": lambda c: f"Shorter than minimum length {c['min_length']}.",
    "string_too_long": lambda c: f"Longer than maximum length {c['max_length']}.",
    "too_long": lambda c: f"Longer than maximum length {c['max_length']}.",
    "string_pattern_mismatch": "Must not contain NUL characters.",
    "int_parsing": "Not a valid integer.",
    "value_error": lambda c: str(c.get("error", "Invalid value.")),
}
