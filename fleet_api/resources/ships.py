"""Ships: anyone may read; creating, changing and deleting need an access token."""

from __future__ import annotations

import falcon

from fleet_api.auth import ACCESS
from fleet_api.cache import VersionedCache
from fleet_api.conditional import Representation, if_match, send_json
from fleet_api.errors import bad_request
from fleet_api.idempotency import Idempotency
from fleet_api.openapi import creating, deleting, listing, operation, patching, reading, replacing
from fleet_api.resources import (
    ID_MISMATCH,
    QueryParser,
    add_paging_headers,
    merge_patch,
    patch_with_retries,
    read_json,
    read_merge_patch,
)
from fleet_api.schemas import ShipIn, ShipOut, ShipPatch, ShipQuery, ShipReplace, validate
from fleet_api.store import Store


class Ships:
    auth = {"POST": ACCESS}

    def __init__(self, store: Store, cache: VersionedCache, idempotency: Idempotency) -> None:
        self._store = store
        self._cache = cache
        self._parse = QueryParser(ShipQuery)
        self._idempotency = idempotency

    @operation("ships", "listShips", **listing(ShipOut, ShipQuery, "ships"))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List ships, filtered, searched, sorted and paged"""
        query, wanted = self._parse(req)

        def serialize():
            found = self._store.find_ships(wanted)
            return found.total, Representation(found.items)

        # Keyed by the query string itself: cheaper to hash than the query.
        total, body = self._cache.get(req.query_string, serialize, req)
        add_paging_headers(req, resp, query, total)
        send_json(req, resp, body)

    on_head = on_get  # as Flask answers HEAD for every GET route; Falcon drops the body

    @operation("ships", "createShip", **creating(ShipIn, ShipOut, "ship", "user"))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a ship"""
        body = validate(ShipReplace, read_json(req))
        if body.id is not None:
            raise falcon.HTTPBadRequest()  # the example's db.add_ship refuses an id: bare 400
        fields = body.model_dump(exclude={"id"})
        # Idempotency keys are the user's own: another user's same key is another request.
        self._idempotency.create(
            req,
            resp,
            f"ships/user:{req.context.user.id}",
            fields,
            plain=lambda: self._store.create_ship(fields),
            once=lambda claim, answer: self._store.create_ship_once(fields, claim, answer),
            location=lambda ship: f"/api/ships/{ship['id']}",
            body=lambda ship: ship,
        )


class Ship:
    auth = {"PUT": ACCESS, "PATCH": ACCESS, "DELETE": ACCESS}

    def __init__(self, store: Store, cache: VersionedCache) -> None:
        self._store = store
        self._cache = cache

    @operation("ships", "getShip", **reading(ShipOut, "ship"))
    def on_get(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        """Get one ship"""
        body = self._cache.get(ship_id, lambda: _representation(self._store.get_ship(ship_id)), req)
        if body is None:
            raise falcon.HTTPNotFound()
        send_json(req, resp, body)

    on_head = on_get

    @operation("ships", "updateShip", **replacing(ShipReplace, ShipOut, "ship"))
    def on_put(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        """Replace a ship

        A body `id`, if given, must equal the path id.
        """
        body = validate(ShipReplace, read_json(req))
        if body.id is not None and body.id != ship_id:
            self._existing(ship_id)  # the example answers 404 before the mismatch
            raise bad_request(ID_MISMATCH)
        self._save(req, resp, ship_id, body, if_match(req))

    @operation("ships", "patchShip", **patching(ShipPatch, ShipOut, "ship"))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        """Change some fields of a ship (JSON Merge Patch, RFC 7396)

        `null` removes a field, which a required field refuses (400). A body `id`, if given,
        must equal the path id.
        """
        patch = read_merge_patch(req)

        def save(current: dict, unchanged) -> None:
            fields = {k: v for k, v in current.items() if k != "id"}
            body = validate(ShipReplace, merge_patch(fields, patch))
            if body.id is not None and body.id != ship_id:
                raise bad_request(ID_MISMATCH)
            self._save(req, resp, ship_id, body, unchanged)

        patch_with_retries(req, lambda: self._existing(ship_id), save, what="ship")

    @operation("ships", "deleteShip", **deleting("ship"))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        """Delete a ship"""
        if not self._store.delete_ship(ship_id, if_match(req)):
            raise falcon.HTTPNotFound()
        resp.status = falcon.HTTP_204

    def _existing(self, ship_id: int) -> dict:
        ship = self._store.get_ship(ship_id)
        if ship is None:
            raise falcon.HTTPNotFound()
        return ship

    def _save(self, req, resp, ship_id: int, body: ShipReplace, precondition) -> None:
        ship = self._store.update_ship(ship_id, body.model_dump(exclude={"id"}), precondition)
        if ship is None:
            raise falcon.HTTPNotFound()
        send_json(req, resp, ship)


def _representation(ship: dict | None) -> Representation | None:
    return None if ship is None else Representation(ship)
