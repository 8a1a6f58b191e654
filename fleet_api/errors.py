"""Every error, Falcon's own included, as the example's JSON shape.

`{"error": "<reason phrase>", "message": ...}`, with `message` left out when
there is nothing to add. Errors of the token layer are the exception: the
example's flask-jwt-extended (with `JWT_ERROR_MESSAGE_KEY = "error"`) answers
them with the one-member body `{"error": "<message>"}`, and its clients read
that key (e.g. "Token has expired" means: refresh). Responders only raise;
nothing here is repeated in them.

A client that prefers `application/problem+json` (RFC 9457) in its Accept
header gets problem details instead, with the same status and headers;
PROBLEM_TYPES lists every `type` it can see (documented in the README).
"""

from __future__ import annotations

import http
import logging

import falcon
from falcon.util import mediatypes

from fleet_api.media import dumps
from fleet_api.middleware import route_label
from fleet_api.schemas import ValidationFailed
from fleet_api.store import NameTaken, PreconditionFailed
from fleet_api.throttle import TooManyAttempts

log = logging.getLogger(__name__)

# Reason phrases as the example (Werkzeug) spells them; Python 3.13 renamed
# some (413, 422), and clients match on these strings.
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_PHRASES.update({413: "Request Entity Too Large", 422: "Unprocessable Entity"})


def reason_phrase(code: int) -> str:
    return _PHRASES.get(code, "Error")


class TokenUnauthorized(falcon.HTTPUnauthorized):
    """A 401 of the token layer (missing, expired or revoked token)."""

    def __init__(self, message: str) -> None:
        # RFC 6750 section 3: a 401 for a bearer token names the scheme.
        super().__init__(description=message, challenges=["Bearer"])


class TokenUnprocessable(falcon.HTTPUnprocessableEntity):
    """A 422 of the token layer (malformed token, wrong type, bad header)."""

    def __init__(self, message: str) -> None:
        super().__init__(description=message)


TOKEN_ERRORS = (TokenUnauthorized, TokenUnprocessable)


class OAuthError(falcon.HTTPError):
    """An error of the OAuth endpoints (/auth/revoke, /auth/introspect), in
    their RFCs' shape: RFC 6749 section 5.2, `{"error": "<code>",
    "error_description": ...}`, so standard OAuth tooling can read it."""

    def __init__(self, code: str, description: str, status=falcon.HTTP_400, challenges=None) -> None:
        headers = {"WWW-Authenticate": ", ".join(challenges)} if challenges else None
        super().__init__(status, description=description, headers=headers)
        self.code = code


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


class InvalidFields(falcon.HTTPBadRequest):
    """A 400 for a body or query that failed validation; `message` maps each
    bad field to its messages, as the example's marshmallow did."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(description=errors)
        self.errors = errors


PROBLEM = "application/problem+json"
_NEGOTIATED = (falcon.MEDIA_JSON, PROBLEM)  # on a tie, the example's JSON
# RFC 9457 section 4.2.1: "about:blank" says no more than the status code,
# and its title is then the status code's phrase (RFC 9110's, below). Our
# own types are tag URIs (RFC 4151): identifiers, not meant to be fetched.
ABOUT_BLANK = "about:blank"
VALIDATION_FAILED = "tag:fleet-api,2026:problem/validation-failed"
INVALID_TOKEN = "tag:fleet-api,2026:problem/invalid-token"
# draft-ietf-httpapi-ratelimit-headers-11, section 5.1, with its
# "violated-policies" member.
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
PROBLEM_TYPES = (ABOUT_BLANK, VALIDATION_FAILED, INVALID_TOKEN, QUOTA_EXCEEDED)
_RFC9110_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_RFC9110_PHRASES.update({413: "Content Too Large", 422: "Unprocessable Content"})  # RFC 9110 section 15.5


def wants_problem(req: falcon.Request) -> bool:
    """True when the Accept header ranks problem+json above plain JSON
    (q-values and wildcards as RFC 9110 section 12.5.1 reads them)."""
    # Media types are case-insensitive (RFC 9110 section 8.3.1); Falcon's
    # matcher is not, so fold the header first.
    accept = (req.get_header("Accept") or "").lower()
    return "problem" in accept and mediatypes.best_match(_NEGOTIATED, accept) == PROBLEM


def problem_details(req: falcon.Request, exc: falcon.HTTPError) -> dict:
    """RFC 9457 section 3.1 members; `instance` is the request's id, the one
    in X-Request-ID and the logs."""
    status = falcon.http_status_to_code(exc.status)
    body = {"type": ABOUT_BLANK, "title": _RFC9110_PHRASES.get(status, "Error"), "status": status}
    if isinstance(exc, InvalidFields):
        body.update(
            type=VALIDATION_FAILED,
            title="The request failed validation",
            detail="One or more fields are invalid; see errors.",
        )
        # RFC 9457 section 3.2: an extension member, one entry per message.
        body["errors"] = list(_field_errors("", exc.errors))
    elif isinstance(exc, TOKEN_ERRORS):
        body.update(type=INVALID_TOKEN, title="The bearer token was not accepted", detail=exc.description)
    elif isinstance(exc, LoginThrottled):
        body.update(type=QUOTA_EXCEEDED, title="Too many failed logins", detail=exc.description)
        body["violated-policies"] = exc.violated
    elif exc.description:
        body["detail"] = exc.description
    request_id = req.context.get("request_id")
    if request_id:
        body["instance"] = request_id
    return body


def _field_errors(path: str, messages):
    """{field: [message]} or, for a list's items, {field: {index: [message]}}
    -> one {"field", "detail"} per message, `roles.1` naming a list item."""
    if isinstance(messages, dict):
        for key, inner in messages.items():
            yield from _field_errors(f"{path}.{key}" if path else str(key), inner)
    elif isinstance(messages, list):
        for message in messages:
            yield from _field_errors(path, message)
    else:
        yield {"field": path, "detail": str(messages)}


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    # The body depends on Accept (RFC 9110 section 12.5.5).
    resp.append_header("Vary", "Accept")
    if wants_problem(req):
        resp.data = dumps(problem_details(req, exc))
        resp.content_type = PROBLEM
        return
    if isinstance(exc, TOKEN_ERRORS):
        body = {"error": exc.description}
    elif isinstance(exc, OAuthError):
        body = {"error": exc.code, "error_description": exc.description}
    else:
        body = {"error": reason_phrase(falcon.http_status_to_code(exc.status))}
        if exc.description:
            body["message"] = exc.description
    # Keys sorted, as the example's jsonify sorts them (a validation message's fields too).
    resp.data = dumps(body)
    resp.content_type = falcon.MEDIA_JSON


def bad_request(message) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(description=message)


def unauthorized(message: str, headers: dict[str, str] | None = None) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(description=message, challenges=["Bearer"], headers=headers)


def unprocessable(message: str) -> falcon.HTTPUnprocessableEntity:
    """A handler's 422 (two-member body); the token layer raises TokenUnprocessable."""
    return falcon.HTTPUnprocessableEntity(description=message)


def _validation_failed(req, resp, exc: ValidationFailed, params) -> None:
    raise InvalidFields(exc.errors)


def _name_taken(req, resp, exc: NameTaken, params) -> None:
    raise bad_request("User already exists.")


def _precondition_failed(req, resp, exc: PreconditionFailed, params) -> None:
    raise falcon.HTTPPreconditionFailed(
        description="The resource has changed since you fetched it (If-Match)."
    )


class LoginThrottled(falcon.HTTPTooManyRequests):
    def __init__(self, exc: TooManyAttempts) -> None:
        super().__init__(
            description="Too many failed logins; try again later.",
            retry_after=exc.retry_after,
            headers=exc.headers,
        )
        self.violated = exc.violated


def _too_many_attempts(req, resp, exc: TooManyAttempts, params) -> None:
    raise LoginThrottled(exc)


def _unexpected(req, resp, exc: Exception, params) -> None:
    """A bug: the traceback goes to the error log with the request id; the
    client gets a bare 500 with that id in its X-Request-ID header."""
    request_id = getattr(req.context, "request_id", "-")
    user = req.context.get("user")
    log.exception(
        "unhandled error on %s %s request_id=%s",
        req.method,
        req.path,
        request_id,
        extra={
            "request_id": request_id,
            "method": req.method,
            "route": route_label(req.uri_template),
            "user_id": user.id if user is not None else None,
        },
    )
    raise falcon.HTTPInternalServerError()


def install(app: falcon.App) -> None:
    app.set_error_serializer(serialize_error)
    # Falcon resolves handlers by the exception's MRO, so its own handlers for
    # HTTPError and friends still win over this catch-all.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(ValidationFailed, _validation_failed)
    app.add_error_handler(NameTaken, _name_taken)
    app.add_error_handler(PreconditionFailed, _precondition_failed)
    app.add_error_handler(TooManyAttempts, _too_many_attempts)
