"""`pip install .` ships the API, its seed data and its runtime dependencies, nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest

from devtools.gunicorn import PROJECT_ROOT

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
