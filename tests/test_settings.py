"""Settings come from the environment and refuse what would be unsafe."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

from devtools.gunicorn import GUNICORN_CONF
from fleet_api.settings import DEFAULT_STORE, Settings, SettingsError

KEY = "k" * 32


def test_settings_read_every_variable_from_the_environment(tmp_path):
    settings = Settings.from_env(
        {
            "FLEET_SECRET_KEY": KEY,
            "FLEET_STORE": "sqlite:///x.db",
            "FLEET_DATA": str(tmp_path / "seed.json"),
            "FLEET_ACCESS_TOKEN_TTL": "60",
            "FLEET_REFRESH_TOKEN_TTL": "120",
            "FLEET_SCRYPT_N": "1024",
        }
    )
    assert settings.secret_key == KEY
    assert settings.store_url == "sqlite:///x.db"
    assert settings.data_path == tmp_path / "seed.json"
    assert (settings.access_token_ttl, settings.refresh_token_ttl) == (60, 120)
    assert settings.scrypt_n == 1024


def test_defaults_are_fifteen_minutes_and_thirty_days():
    settings = Settings.from_env({"FLEET_SECRET_KEY": KEY})
    assert settings.access_token_ttl == 15 * 60
    assert settings.refresh_token_ttl == 30 * 24 * 3600
    assert settings.store_url == DEFAULT_STORE


def test_a_secret_shorter_than_32_bytes_is_refused():
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        Settings.from_env({"FLEET_SECRET_KEY": "k" * 31})


def test_a_missing_secret_is_replaced_by_a_random_one_with_a_warning(caplog):
    first = Settings.from_env({})
    second = Settings.from_env({})
    assert len(first.secret_key) >= 32
    assert first.secret_key != second.secret_key
    assert "FLEET_SECRET_KEY is not set" in caplog.text


@pytest.mark.parametrize("variable", ["FLEET_ACCESS_TOKEN_TTL", "FLEET_REFRESH_TOKEN_TTL"])
@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_token_lifetime_must_be_a_positive_integer(variable, value):
    with pytest.raises(SettingsError):
        Settings.from_env({"FLEET_SECRET_KEY": KEY, variable: value})


def test_scrypt_cost_must_be_a_power_of_two():
    with pytest.raises(SettingsError, match="power of two"):
        Settings.from_env({"FLEET_SECRET_KEY": KEY, "FLEET_SCRYPT_N": "1000"})


def test_gunicorn_conf_makes_one_key_for_all_workers(monkeypatch):
    """The conf runs once in the master; workers inherit the exported key."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FLEET_SECRET_KEY", "FLEET_STORE")}
    monkeypatch.setattr(os, "environ", environ)
    config = runpy.run_path(str(GUNICORN_CONF))
    assert len(os.environ["FLEET_SECRET_KEY"]) >= 32
    assert "FLEET_STORE" not in os.environ  # the app's settings are the app's own
    assert config["worker_class"] == "fleet_api.workers.BalancedThreadWorker"
    assert config["workers"] >= 2
    assert config["control_socket_disable"] is True


def test_every_entry_point_defaults_to_the_same_sqlite_store():
    """gunicorn.conf.py, create_app() and scripts all read Settings.from_env()."""
    from_env = Settings.from_env({"FLEET_SECRET_KEY": KEY})
    assert from_env.store_url == Settings(secret_key=KEY).store_url == "sqlite:///var/fleet.db"


def test_the_default_seed_is_package_data():
    """An installed package carries data.json; in the repo it is the top-level file."""
    data = Settings(secret_key=KEY).data_path
    assert data.parent.name == "fleet_api"
    assert data.read_bytes() == (Path(__file__).resolve().parent.parent / "data.json").read_bytes()
