"""Users: anyone may list and register; only you may change or delete yourself."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from fleet_api.auth import ACCESS
from fleet_api.conditional import if_match, send_json
from fleet_api.errors import bad_request
from fleet_api.idempotency import Idempotency
from fleet_api.metrics import Metrics
from fleet_api.openapi import creating, deleting, listing, operation, patching, reading, replacing
from fleet_api.passwords import PasswordHasher
from fleet_api.resources import (
    ID_MISMATCH,
    QueryParser,
    add_paging_headers,
    patch_with_retries,
    read_json,
    read_merge_patch,
)
from fleet_api.schemas import UserIn, UserOut, UserPatch, UserQuery, UserReplace, ValidationFailed, validate
from fleet_api.store import NameTaken, Store
from fleet_api.store import User as UserRecord


def _public(user: UserRecord) -> dict:
    return user.public()


class Users:
    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher,
        idempotency: Idempotency,
        client_address: Callable[[falcon.Request], str],
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._parse = QueryParser(UserQuery)
        self._idempotency = idempotency
        self._client_address = client_address

    @operation("users", "listUsers", **listing(UserOut, UserQuery, "users"))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List users, filtered, searched, sorted and paged"""
        query, wanted = self._parse(req)
        found = self._store.find_users(wanted)
        add_paging_headers(req, resp, query, found.total)
        send_json(req, resp, [user.public() for user in found.items])

    on_head = on_get  # as Flask answers HEAD for every GET route; Falcon drops the body

    @operation("users", "createUser", **creating(UserIn, UserOut, "user", "client address"))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a user"""
        body = validate(UserReplace, read_json(req))
        if body.id is not None:
            # The example: a taken name first, then db.add_user's bare 400 for an id.
            if self._store.get_user_by_name(body.name) is not None:
                raise NameTaken(body.name)
            raise falcon.HTTPBadRequest()
        fields = body.model_dump(exclude={"id"})
        # No user yet: keys are scoped to the client's address. The password
        # is hashed only once the key is ours, never for a replay.
        self._idempotency.create(
            req,
            resp,
            f"users/ip:{self._client_address(req)}",
            fields,
            plain=lambda: self._store.create_user(body.name, self._hasher.hash(body.password)),
            once=lambda claim, answer: self._store.create_user_once(
                body.name, self._hasher.hash(body.password), claim, answer
            ),
            location=lambda user: f"/api/users/{user.id}",
            body=_public,
        )


class User:
    auth = {"PUT": ACCESS, "PATCH": ACCESS, "DELETE": ACCESS}

    def __init__(self, store: Store, hasher: PasswordHasher, metrics: Metrics) -> None:
        self._store = store
        self._hasher = hasher
        self._metrics = metrics

    @operation("users", "getUser", **reading(UserOut, "user"))
    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        """Get one user"""
        send_json(req, resp, self._existing(user_id).public())

    on_head = on_get

    @operation("users", "updateUser", **replacing(UserReplace, UserOut, "user (yourself only)", (403,)))
    def on_put(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        """Replace a user (yourself only)

        A body `id`, if given, must equal the path id.
        """
        _require_self(req, user_id)
        body = validate(UserReplace, read_json(req))
        current = self._existing(user_id)
        if body.id is not None and body.id != user_id:
            raise bad_request(ID_MISMATCH)
        self._save(req, resp, current, body.name, body.password, if_match(req, _public))

    @operation("users", "patchUser", **patching(UserPatch, UserOut, "user (yourself only)", (403,)))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        """Change some fields of a user (yourself only) (JSON Merge Patch, RFC 7396)

        `null` removes a field, which a required field refuses (400). A body `id`, if given,
        must equal the path id.
        """
        _require_self(req, user_id)
        body = validate(UserPatch, read_merge_patch(req))
        # A merge patch's null removes a member, and both are required.
        removed = {
            k: ["Missing data for required field."]
            for k in ("name", "password")
            if k in body.model_fields_set and getattr(body, k) is None
        }
        if removed:
            raise ValidationFailed(removed)
        if body.id is not None and body.id != user_id:
            raise bad_request(ID_MISMATCH)

        def save(current: UserRecord, unchanged) -> None:
            self._save(req, resp, current, body.name or current.name, body.password, unchanged)

        patch_with_retries(req, lambda: self._existing(user_id), save, _public, what="user")

    @operation("users", "deleteUser", **deleting("user (yourself only)", (403,)))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        """Delete a user (yourself only)"""
        _require_self(req, user_id)
        if not self._store.delete_user(user_id, if_match(req, _public)):
            raise falcon.HTTPNotFound()
        self._metrics.token_revoked("user_deleted")
        resp.status = falcon.HTTP_204

    def _existing(self, user_id: int) -> UserRecord:
        user = self._store.get_user(user_id)
        if user is None:
            raise falcon.HTTPNotFound()
        return user

    def _save(self, req, resp, current: UserRecord, name: str, password: str | None, precondition) -> None:
        # Only a new password revokes older tokens; resending the same one is a rename.
        new_hash = None
        if password is not None and not self._hasher.verify(password, current.password_hash):
            new_hash = self._hasher.hash(password)
        # A new password also ends the user's other sessions, and this one
        # when the access token making the change (the one token kept) expires.
        claims = req.context.claims
        user = self._store.update_user(
            current.id,
            name,
            new_hash,
            claims["jti"],
            precondition,
            kept_sid=claims.get("sid"),
            kept_until=claims["exp"],
        )
        if user is None:
            raise falcon.HTTPNotFound()
        if new_hash is not None:
            self._metrics.token_revoked("password_change")
        send_json(req, resp, user.public())


def _require_self(req: falcon.Request, user_id: int) -> None:
    if req.context.user.id != user_id:
        raise falcon.HTTPForbidden()
