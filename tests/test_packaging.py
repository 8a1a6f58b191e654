"""`pip install .` ships the API, its seed data and its runtime dependencies, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest
from conftest import server_env

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call

TOOLS = {"pytest", "locust", "schemathesis", "matplotlib", "selenium", "openapi-python-client", "ruff"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(PROJECT_ROOT),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    (path,) = out.glob("fleet_api-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_the_fleet_api_package(wheel):
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"fleet_api"}


def test_the_seed_data_ships_as_package_data(wheel):
    assert wheel.read("fleet_api/data.json") == (PROJECT_ROOT / "data.json").read_bytes()


def test_the_wheel_requires_the_runtime_set_and_no_tool(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist")
    names = {
        r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in requires
    }
    runtime = {
        line.split("==")[0].split("[")[0].strip().lower()
        for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert names == runtime
    assert not names & TOOLS


def test_the_installed_package_serves_from_another_directory(wheel, tmp_path):
    """What `pip install .` then `gunicorn 'fleet_api.app:get_app()'` does
    anywhere: the wheel's files alone (no checkout on the path), the default
    store made under the working directory, seeded from the packaged data,
    the docs' assets served from the package."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    wheel.extractall(site)
    elsewhere.mkdir()
    env = server_env(PYTHONPATH=str(site), FLEET_STORE="sqlite:///var/fleet.db")
    env.pop("FLEET_DATA", None)
    where = subprocess.run(
        [sys.executable, "-c", "import fleet_api; print(fleet_api.__file__)"],
        cwd=elsewhere,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout

    with GunicornServer(
        workers=1, conf=None, root=elsewhere, app="fleet_api.app:get_app()", env=env
    ) as server:
        ship = call("GET", f"{server.url}/api/ships/2")
        login = call("POST", f"{server.url}/auth/login", {"username": "user", "password": "password"})
        docs = call("GET", f"{server.url}/docs")
        asset = call("GET", f"{server.url}/docs/assets/swagger-ui-bundle.js")

    assert ship.status == 200 and ship.json["id"] == 2
    assert login.status == 200 and set(login.json) == {"access_token", "refresh_token"}
    assert docs.status == 200
    assert asset.status == 200 and len(asset.body) > 10_000
    assert (elsewhere / "var" / "fleet.db").is_file()
