"""The wiring: settings -> store -> auth -> resources -> routes, on one screen."""

from __future__ import annotations

import functools

import falcon
import orjson

from fleet_api import errors
from fleet_api.auth import ACCESS, REFRESH, AuthMiddleware, Tokens
from fleet_api.passwords import PasswordHasher
from fleet_api.resources.auth import Login, Logout, Refresh
from fleet_api.resources.ships import Ship, Ships
from fleet_api.resources.users import User, Users
from fleet_api.settings import Settings
from fleet_api.store import Store, open_store
from fleet_api.seed import seed_store

ID = "int(min=0, max=9223372036854775807)"


def json_handler() -> falcon.media.JSONHandler:
    return falcon.media.JSONHandler(
        dumps=functools.partial(orjson.dumps, option=orjson.OPT_SORT_KEYS),
        loads=orjson.loads,
    )


def create_app(config: Settings | None = None, store: Store | None = None) -> falcon.App:
    """Build one app with its own store and blocklist; nothing is module-level."""
    config = config or Settings.from_env()
    hasher = PasswordHasher(config.scrypt_n, config.scrypt_r, config.scrypt_p)
    store = store or open_store(config.store_url)
    seed_store(store, config.data_path, hasher)
    tokens = Tokens(config.secret_key, config.access_token_ttl, config.refresh_token_ttl)

    app = falcon.App(middleware=[AuthMiddleware(tokens, store)])
    # JSON only, through orjson: no form or msgpack bodies sneak in.
    app.req_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler()})
    app.resp_options.media_handlers = falcon.media.Handlers({falcon.MEDIA_JSON: json_handler()})
    errors.install(app)

    app.add_route("/auth/login", Login(store, tokens, hasher))
    app.add_route("/auth/refresh", Refresh(tokens))
    app.add_route("/auth/logout", Logout(store, ACCESS))
    app.add_route("/auth/logout2", Logout(store, REFRESH))
    app.add_route("/api/users", Users(store, hasher))
    app.add_route(f"/api/users/{{user_id:{ID}}}", User(store, hasher))
    app.add_route("/api/ships", Ships(store))
    app.add_route(f"/api/ships/{{ship_id:{ID}}}", Ship(store))
    return app


def get_app() -> falcon.App:
    """gunicorn's entry point (`fleet_api.app:get_app()`): settings from the environment."""
    return create_app(Settings.from_env())
