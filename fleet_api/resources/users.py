"""Users: anyone may list and register; only you may change or delete yourself."""

from __future__ import annotations

import falcon

from fleet_api.auth import ACCESS
from fleet_api.errors import bad_request
from fleet_api.passwords import PasswordHasher
from fleet_api.resources import created, read_json
from fleet_api.schemas import UserIn, UserReplace, validate
from fleet_api.store import Store

ID_MISMATCH = "Request data id has to match resource id."


class Users:
    def __init__(self, store: Store, hasher: PasswordHasher) -> None:
        self._store = store
        self._hasher = hasher

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = [user.public() for user in self._store.list_users()]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate(UserIn, read_json(req))
        user = self._store.create_user(body.name, self._hasher.hash(body.password))
        created(req, resp, f"/api/users/{user.id}", user.public())


class User:
    auth = {"PUT": ACCESS, "DELETE": ACCESS}

    def __init__(self, store: Store, hasher: PasswordHasher) -> None:
        self._store = store
        self._hasher = hasher

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        user = self._store.get_user(user_id)
        if user is None:
            raise falcon.HTTPNotFound()
        resp.media = user.public()

    def on_put(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        _require_self(req, user_id)
        body = validate(UserReplace, read_json(req))
        current = self._store.get_user(user_id)
        if current is None:
            raise falcon.HTTPNotFound()
        if body.id is not None and body.id != user_id:
            raise bad_request(ID_MISMATCH)
        # Only a new password revokes older tokens; resending the same one is a rename.
        new_hash = None
        if not self._hasher.verify(body.password, current.password_hash):
            new_hash = self._hasher.hash(body.password)
        user = self._store.update_user(user_id, body.name, new_hash, req.context.claims["jti"])
        if user is None:
            raise falcon.HTTPNotFound()
        resp.media = user.public()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        _require_self(req, user_id)
        if not self._store.delete_user(user_id):
            raise falcon.HTTPNotFound()
        resp.status = falcon.HTTP_204


def _require_self(req: falcon.Request, user_id: int) -> None:
    if req.context.user.id != user_id:
        raise falcon.HTTPForbidden()
