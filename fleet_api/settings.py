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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT / "data.json"
DEFAULT_STORE = "memory://"
MIN_SECRET_BYTES = 32
SECRET_ENV = "FLEET_SECRET_KEY"


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
    # GET /metrics and its middleware (FLEET_METRICS=on|off); under gunicorn
    # its multiprocess directory (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py).
    metrics: bool = True
    metrics_dir: str | None = None

    def __post_init__(self) -> None:
        if len(self.secret_key.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long"
            )
        for name in (
            "access_token_ttl", "refresh_token_ttl", "login_user_limit",
            "login_ip_limit", "login_window", "max_body_bytes",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be a positive integer")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise SettingsError("scrypt_n must be a power of two")

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        secret = env.get(SECRET_ENV) or ephemeral_secret()
        values = {
            "secret_key": secret,
            "store_url": env.get("FLEET_STORE", DEFAULT_STORE),
            "data_path": Path(env.get("FLEET_DATA", DEFAULT_DATA)),
            "trusted_proxies": env.get("FORWARDED_ALLOW_IPS", ""),
            "metrics": _on_off("FLEET_METRICS", env.get("FLEET_METRICS", "on")),
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
        ):
            if env.get(var):
                values[field] = _int(var, env[var])
        return cls(**values)


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _on_off(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be on or off, got {raw!r}")
    return value == "on"


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
