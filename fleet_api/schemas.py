"""Request bodies for ships and users, declared once.

pydantic (v2, strict mode) validates them and reports every bad field in one
pass; the same models give the JSON Schema a later OpenAPI document publishes.
Error texts follow the example's marshmallow wording so its clients can keep
matching on them.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
    """PUT body: the same, plus an optional id that must match the path."""

    id: Id | None = None


class UserIn(_Body):
    name: Annotated[str, StringConstraints(min_length=2, max_length=64, pattern=NO_NUL)]
    password: Annotated[str, StringConstraints(min_length=4, max_length=1024, pattern=NO_NUL)]


class UserReplace(UserIn):
    id: Id | None = None


class ValidationFailed(Exception):
    """The body broke the schema; `errors` maps each bad field to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["Invalid input type."]})
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(_messages(exc)) from None


def _messages(exc: pydantic.ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_input=False):
        field, *rest = err["loc"] or ("_schema",)
        text = _MESSAGES.get(err["type"], err["msg"])
        if callable(text):
            text = text(err.get("ctx") or {})
        if rest:  # a list item: roles.2 -> "Item 2: ..."
            text = f"Item {rest[0]}: {text}"
        errors.setdefault(str(field), []).append(text)
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
}
