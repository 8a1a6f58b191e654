"""Typed settings, read once from the environment.

Everything the app needs to know about its deployment lives here, so that
`create_app` can be handed a `Settings` in tests and `get_app` builds one
from `os.environ` under gunicorn.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

# Package data: in the repository a link to the top-level data.json, in an
# installed package the file itself.
DEFAULT_DATA = Path(__file__).resolve().with_name("data.json")
# The embedded default store, the same whatever starts the app (gunicorn.conf.py,
# create_app(), a script): one SQLite file under the working directory, shared
# by every worker. Tests pass their own store URL.
DEFAULT_STORE = "sqlite:///var/fleet.db"
MIN_SECRET_BYTES = 32
SECRET_ENV = "FLEET_SECRET_KEY"
# Token signing (fleet_api.keys): HS256 with the secrets of FLEET_SECRET_KEY,
# or EdDSA / ES256 with the PEM private keys FLEET_SIGNING_KEYS names.
ALGORITHM_ENV = "FLEET_JWT_ALGORITHM"
SIGNING_KEYS_ENV = "FLEET_SIGNING_KEYS"
SIGNING_KID_ENV = "FLEET_SIGNING_KID"
HS256 = "HS256"
ASYMMETRIC = ("EdDSA", "ES256")
ALGORITHMS = (HS256, *ASYMMETRIC)
KEYS_ENV = "FLEET_INTROSPECTION_KEYS"


class SettingsError(ValueError):
    """A setting is missing or malformed: the app refuses to start."""


@dataclasses.dataclass(frozen=True)
class Settings:
    secret_key: str
    store_url: str = DEFAULT_STORE
    data_path: Path = DEFAULT_DATA
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 3600
    # scrypt cost: N=2**14, r=8 is the scrypt paper's interactive-login
    # setting (16 MiB, ~80 ms on one core here). Tests lower it to run fast.
    scrypt_n: int = 2**14
    scrypt_r: int = 8
    scrypt_p: int = 1
    # Failed logins allowed per window before 429: tight per user name, loose
    # per client address (many users share one behind a NAT).
    login_user_limit: int = 10
    login_ip_limit: int = 100
    login_window: int = 300
    max_body_bytes: int = 64 * 1024
    # Proxies whose X-Forwarded-For we believe: gunicorn's forwarded_allow_ips.
    trusted_proxies: str = ""
    # Signing: the algorithm; for EdDSA/ES256 a key directory or a
    # comma-separated list of PEM files; the kid that signs (default: the
    # first secret, the newest key file); how long clients may cache the JWKS.
    jwt_algorithm: str = HS256
    signing_keys: str = ""
    signing_kid: str = ""
    jwks_max_age: int = 300
    # Sessions (fleet_api/sessions.py): off keeps the example's /auth/refresh,
    # on hands out a new refresh token each time and detects reuse after
    # `refresh_reuse_grace` seconds; resource servers introspect with a key.
    refresh_rotation: bool = False
    refresh_reuse_grace: float = 10.0
    introspection_keys: tuple[str, ...] = ()
    # GET /metrics and its middleware (FLEET_METRICS=on|off); under gunicorn
    # its multiprocess directory (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py).
    metrics: bool = True
    metrics_dir: str | None = None

    def __post_init__(self) -> None:
        if self.jwt_algorithm not in ALGORITHMS:
            raise SettingsError(
                f"{ALGORITHM_ENV} must be one of {', '.join(ALGORITHMS)}, got {self.jwt_algorithm!r}"
            )
        if self.jwt_algorithm == HS256:
            if self.signing_keys:
                raise SettingsError(
                    f"{SIGNING_KEYS_ENV} is for {' and '.join(ASYMMETRIC)}; HS256 signs with {SECRET_ENV}"
                )
            for secret in self.secret_keys:
                if len(secret.encode()) < MIN_SECRET_BYTES:
                    raise SettingsError(
                        f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long"
                        + (" (each of its comma-separated secrets)" if len(self.secret_keys) > 1 else "")
                    )
        elif not self.signing_keys.strip():
            raise SettingsError(
                f"{ALGORITHM_ENV}={self.jwt_algorithm} needs {SIGNING_KEYS_ENV}: a key directory or PEM files"
            )
        if self.jwks_max_age < 0:
            raise SettingsError("jwks_max_age must not be negative")
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "login_user_limit",
            "login_ip_limit",
            "login_window",
            "max_body_bytes",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be a positive integer")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise SettingsError("scrypt_n must be a power of two")
        if not 0 <= self.refresh_reuse_grace <= 3600:
            raise SettingsError("refresh_reuse_grace must be between 0 and 3600 seconds")
        if any(len(key.encode()) < MIN_SECRET_BYTES for key in self.introspection_keys):
            raise SettingsError(f"each of {KEYS_ENV} must be at least {MIN_SECRET_BYTES} bytes long")

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """FLEET_SECRET_KEY's secrets: comma-separated, the first signs."""
        return tuple(secret.strip() for secret in self.secret_key.split(","))

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> Settings:
        env = os.environ if environ is None else environ
        algorithm = env.get(ALGORITHM_ENV) or HS256
        secret = env.get(SECRET_ENV) or (ephemeral_secret() if algorithm == HS256 else "")
        values = {
            "secret_key": secret,
            "jwt_algorithm": algorithm,
            "signing_keys": env.get(SIGNING_KEYS_ENV, ""),
            "signing_kid": env.get(SIGNING_KID_ENV, "").strip(),
            "store_url": env.get("FLEET_STORE", DEFAULT_STORE),
            "data_path": Path(env.get("FLEET_DATA", DEFAULT_DATA)),
            "trusted_proxies": env.get("FORWARDED_ALLOW_IPS", ""),
            "metrics": switch("FLEET_METRICS", env.get("FLEET_METRICS", "on")),
            "metrics_dir": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        }
        for field, var in (
            ("access_token_ttl", "FLEET_ACCESS_TOKEN_TTL"),
            ("refresh_token_ttl", "FLEET_REFRESH_TOKEN_TTL"),
            ("scrypt_n", "FLEET_SCRYPT_N"),
            ("login_user_limit", "FLEET_LOGIN_USER_LIMIT"),
            ("login_ip_limit", "FLEET_LOGIN_IP_LIMIT"),
            ("login_window", "FLEET_LOGIN_WINDOW"),
            ("max_body_bytes", "FLEET_MAX_BODY_BYTES"),
            ("jwks_max_age", "FLEET_JWKS_MAX_AGE"),
        ):
            if env.get(var):
                values[field] = _int(var, env[var])
        if env.get("FLEET_REFRESH_ROTATION"):
            values["refresh_rotation"] = switch("FLEET_REFRESH_ROTATION", env["FLEET_REFRESH_ROTATION"])
        if env.get("FLEET_REFRESH_REUSE_GRACE"):
            values["refresh_reuse_grace"] = _number(
                "FLEET_REFRESH_REUSE_GRACE", env["FLEET_REFRESH_REUSE_GRACE"]
            )
        if env.get(KEYS_ENV):
            values["introspection_keys"] = tuple(k.strip() for k in env[KEYS_ENV].split(",") if k.strip())
        return cls(**values)


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def switch(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be on or off, got {raw!r}")
    return value == "on"


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value != value:  # NaN passes every range check
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}")
    return value


def ephemeral_secret() -> str:
    """A random signing key for this process only, with a loud warning.

    gunicorn.conf.py calls this once in the master and exports the result, so
    every worker signs with the same key; tokens still die with the server.
    """
    log.warning(
        "%s is not set: using a random key made at start-up. Every token "
        "becomes invalid when the server stops. Set %s (>= %d bytes) in production.",
        SECRET_ENV,
        SECRET_ENV,
        MIN_SECRET_BYTES,
    )
    return secrets.token_urlsafe(48)
