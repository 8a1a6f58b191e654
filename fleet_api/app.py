"""The wiring: settings -> store -> auth -> resources -> routes, on one screen."""

from __future__ import annotations

import time
from collections.abc import Callable

import falcon

from fleet_api import errors, media
from fleet_api.auth import ACCESS, REFRESH, AuthMiddleware, Tokens
from fleet_api.cache import ReadReplay, ReplayingApp, VersionedCache
from fleet_api.idempotency import Idempotency
from fleet_api.keys import load_keyring
from fleet_api.logs import AccessContext
from fleet_api.metrics import Metrics, MetricsMiddleware, MetricsResource, NoMetrics
from fleet_api.middleware import DurableAnswers, RequestHygiene, RouteLabels
from fleet_api.passwords import PasswordHasher
from fleet_api.resources import docs
from fleet_api.resources.auth import Login, Logout, Refresh
from fleet_api.resources.health import Health
from fleet_api.resources.jwks import JWKS
from fleet_api.resources.jwks import PATH as JWKS_PATH
from fleet_api.resources.oauth import Introspect, Revoke
from fleet_api.resources.sessions import SessionItem, SessionList
from fleet_api.resources.ships import Ship, Ships
from fleet_api.resources.users import User, Users
from fleet_api.seed import seed_store
from fleet_api.sessions import Sessions
from fleet_api.settings import Settings
from fleet_api.store import Store, open_store
from fleet_api.throttle import LoginThrottle

ID = "int(min=0, max=9223372036854775807)"


def create_app(
    config: Settings | None = None, store: Store | None = None, clock: Callable[[], float] = time.time
) -> falcon.App:
    """Build one app with its own store and blocklist; nothing is module-level.
    `clock` (epoch seconds) is what tokens, sessions, idempotency and the store take as now.
    A bad signing key raises here (KeyFileError), before the app serves anything."""
    config = config or Settings.from_env()
    keys = load_keyring(config)
    hasher = PasswordHasher(config.scrypt_n, config.scrypt_r, config.scrypt_p)
    store = store or open_store(config.store_url, clock)
    seed_store(store, config.data_path, hasher)
    tokens = Tokens(keys, config.access_token_ttl, config.refresh_token_ttl, clock)
    metrics = Metrics(config.metrics_dir) if config.metrics else NoMetrics()
    metrics.watch_store(store.write_stats)
    throttle = LoginThrottle(
        store,
        config.login_user_limit,
        config.login_ip_limit,
        config.login_window,
        config.trusted_proxies,
        clock,
    )
    # Sessions, the throttle and idempotency name the client by one rule.
    sessions = Sessions(
        store,
        tokens,
        throttle.client,
        rotation=config.refresh_rotation,
        grace=config.refresh_reuse_grace,
        clock=clock,
        metrics=metrics,
    )
    auth = AuthMiddleware(tokens, store, clock)

    # Idempotency-Key on the two creates, kept in the shared store; body
    # fingerprints are keyed by a server secret (they may hold a password).
    idempotency = Idempotency(store, keys.derived_secret("idempotency"), clock)

    # Metrics first, so its clock spans the whole request, 413s included.
    routes = RouteLabels()  # route templates as metrics and the access log name them
    middleware = [MetricsMiddleware(metrics, routes)] if metrics.enabled else []
    hygiene = RequestHygiene(config.max_body_bytes)
    middleware += [DurableAnswers(store), hygiene, AccessContext(routes), auth]
    # Repeated public reads get their answer replayed, with what the
    # middleware does per request done by the replay (fleet_api/cache.py).
    replay = ReadReplay(store.ships_version, store.settle, hygiene.request_id, metrics.request)
    app = ReplayingApp(replay, middleware=middleware)
    media.install(app)
    errors.install(app)

    # One cache of serialized ships per app (so per worker), kept honest by
    # the store's ship version, which moves with every write on any worker.
    ships_cache = VersionedCache(store.ships_version)
    # The route table: Falcon routes it, and /openapi.json documents it.
    routes: list[tuple[str, object]] = [
        ("/auth/login", Login(store, sessions, hasher, throttle, metrics)),
        ("/auth/refresh", Refresh(sessions)),
        ("/auth/logout", Logout(store, ACCESS, metrics)),
        ("/auth/logout2", Logout(store, REFRESH, metrics)),
        ("/auth/revoke", Revoke(tokens, sessions)),
        ("/auth/introspect", Introspect(auth, sessions, config.introspection_keys)),
        ("/api/sessions", SessionList(store, sessions, metrics)),
        ("/api/sessions/{session_id}", SessionItem(store, metrics)),
        ("/api/users", Users(store, hasher, idempotency, throttle.client)),
        (f"/api/users/{{user_id:{ID}}}", User(store, hasher, metrics)),
        ("/api/ships", Ships(store, ships_cache, idempotency)),
        (f"/api/ships/{{ship_id:{ID}}}", Ship(store, ships_cache)),
        ("/health", Health(store)),
        (JWKS_PATH, JWKS(keys, config.jwks_max_age)),
        (docs.PATH, docs.Docs()),
    ]
    if metrics.enabled:
        routes.append(("/metrics", MetricsResource(metrics)))
    routes.append((docs.OPENAPI_PATH, docs.OpenAPI(routes)))  # last: it documents the routes above and itself
    for template, resource in routes:
        app.add_route(template, resource)
    app.add_static_route(docs.ASSETS, str(docs.assets_directory()))
    return app


def get_app() -> falcon.App:
    """gunicorn's entry point (`fleet_api.app:get_app()`): settings from the environment."""
    return create_app(Settings.from_env())
