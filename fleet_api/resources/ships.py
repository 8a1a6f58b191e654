"""Ships: anyone may read; creating, replacing and deleting need an access token."""

from __future__ import annotations

import falcon

from fleet_api.auth import ACCESS
from fleet_api.errors import bad_request
from fleet_api.resources import created, read_json
from fleet_api.resources.users import ID_MISMATCH
from fleet_api.schemas import ShipIn, ShipReplace, validate
from fleet_api.store import Store


class Ships:
    auth = {"POST": ACCESS}

    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._store.list_ships()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate(ShipIn, read_json(req))
        ship = self._store.create_ship(body.model_dump())
        created(req, resp, f"/api/ships/{ship['id']}", ship)


class Ship:
    auth = {"PUT": ACCESS, "DELETE": ACCESS}

    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        ship = self._store.get_ship(ship_id)
        if ship is None:
            raise falcon.HTTPNotFound()
        resp.media = ship

    def on_put(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        body = validate(ShipReplace, read_json(req))
        if body.id is not None and body.id != ship_id:
            if self._store.get_ship(ship_id) is None:  # the example answers 404 first
                raise falcon.HTTPNotFound()
            raise bad_request(ID_MISMATCH)
        ship = self._store.update_ship(ship_id, body.model_dump(exclude={"id"}))
        if ship is None:
            raise falcon.HTTPNotFound()
        resp.media = ship

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ship_id: int) -> None:
        if not self._store.delete_ship(ship_id):
            raise falcon.HTTPNotFound()
        resp.status = falcon.HTTP_204
