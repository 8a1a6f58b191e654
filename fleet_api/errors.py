"""Every error, Falcon's own included, as the example's JSON shape.

`{"error": "<reason phrase>", "message": ...}`, with `message` left out when
there is nothing to add. Errors of the token layer are the exception: the
example's flask-jwt-extended (with `JWT_ERROR_MESSAGE_KEY = "error"`) answers
them with the one-member body `{"error": "<message>"}`, and its clients read
that key (e.g. "Token has expired" means: refresh). Responders only raise;
nothing here is repeated in them.
"""

from __future__ import annotations

import http
import logging

import falcon
import orjson

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


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    if isinstance(exc, TOKEN_ERRORS):
        body = {"error": exc.description}
    elif isinstance(exc, OAuthError):
        body = {"error": exc.code, "error_description": exc.description}
    else:
        body = {"error": reason_phrase(falcon.http_status_to_code(exc.status))}
        if exc.description:
            body["message"] = exc.description
    # Keys sorted, as the example's jsonify sorts them (a validation message's fields too).
    resp.data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    resp.content_type = falcon.MEDIA_JSON


def bad_request(message) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(description=message)


def unauthorized(message: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(description=message, challenges=["Bearer"])


def unprocessable(message: str) -> falcon.HTTPUnprocessableEntity:
    """A handler's 422 (two-member body); the token layer raises TokenUnprocessable."""
    return falcon.HTTPUnprocessableEntity(description=message)


def _validation_failed(req, resp, exc: ValidationFailed, params) -> None:
    raise bad_request(exc.errors)


def _name_taken(req, resp, exc: NameTaken, params) -> None:
    raise bad_request("User already exists.")


def _precondition_failed(req, resp, exc: PreconditionFailed, params) -> None:
    raise falcon.HTTPPreconditionFailed(
        description="The resource has changed since you fetched it (If-Match)."
    )


def _too_many_attempts(req, resp, exc: TooManyAttempts, params) -> None:
    raise falcon.HTTPTooManyRequests(
        description="Too many failed logins; try again later.", retry_after=exc.retry_after
    )


def _unexpected(req, resp, exc: Exception, params) -> None:
    """A bug: the traceback goes to the error log with the request id; the
    client gets a bare 500 with that id in its X-Request-ID header."""
    log.exception(
        "unhandled error on %s %s request_id=%s",
        req.method, req.path, getattr(req.context, "request_id", "-"),
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
