"""Fuzz every operation of /openapi.json with schemathesis, through WSGI.

Zero 5xx, and every response conforms to the document: a documented status
code, its content type, its headers and its body schema. Memory store only,
a bounded and derandomized number of examples per operation.

Operations with bearer security get a valid token of the type the document
names (`x-token-type`): a fresh user logs in for each case, so fuzzed logouts,
password changes and user deletions never starve later cases of a token.
Some cases go without a token (401 must be documented too), and half the
user cases target the fresh user itself, so 200/204/412 are reached, not
only 403.
"""

from __future__ import annotations

import itertools
import os
import secrets
import zlib

import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleet_api.app import create_app
from fleet_api.settings import Settings
from fleet_api.store import open_store

# FUZZ_MAX_EXAMPLES=200 for a longer hunt; the default keeps the suite fast.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Our own logins come from another address than the fuzzer's, so fuzzed
# failed logins can't get them throttled.
HELPER_ADDRESS = "192.0.2.10"
PASSWORD = "fuzz-password"
SHIP = {
    "affiliation": "Fuzz",
    "category": "Testers",
    "crew": 1,
    "length": 1,
    "manufacturer": "Hypothesis",
    "model": "F-1",
    "roles": ["Fuzzing"],
    "ship_class": "Probe",
}


class Accounts:
    """Fresh users and their tokens, made through the API itself."""

    def __init__(self, app) -> None:
        self._client = falcon.testing.TestClient(app)
        self._numbers = itertools.count()

    def fresh(self) -> tuple[int, dict]:
        name = f"fuzz-{next(self._numbers)}-{secrets.token_hex(4)}"
        created = self._client.simulate_post(
            "/api/users", json={"name": name, "password": PASSWORD}, remote_addr=HELPER_ADDRESS
        )
        assert created.status_code == 201, created.text
        login = self._client.simulate_post(
            "/auth/login", json={"username": name, "password": PASSWORD}, remote_addr=HELPER_ADDRESS
        )
        assert login.status_code == 200, login.text
        return created.json["id"], login.json

    def ship(self, access_token: str) -> int:
        created = self._client.simulate_post(
            "/api/ships",
            json=SHIP,
            headers={"Authorization": f"Bearer {access_token}"},
            remote_addr=HELPER_ADDRESS,
        )
        assert created.status_code == 201, created.text
        return created.json["id"]


# Built at import: schemathesis's lazy `from_fixture` schemas don't work with
# this pytest (no `Function._nodeid`), and eager loading gives one test per
# operation. A memory store, so import stays cheap.
APP = create_app(
    Settings(secret_key=secrets.token_urlsafe(48), store_url="memory://", scrypt_n=16),
    store=open_store("memory://"),
)
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def accounts() -> Accounts:
    return Accounts(APP)


def _choice(case, salt: str) -> int:
    """A stable pseudo-random number from the case's data, so a replayed
    example makes the same choices (Hypothesis needs that to shrink)."""
    data = repr((salt, case.path_parameters, case.query, case.headers, case.body))
    return zlib.crc32(data.encode("utf-8", "surrogatepass"))


def prepare(case, accounts: Accounts) -> dict:
    """The headers to send: a fresh token of the type the operation needs
    (`x-token-type`), except for one case in six; and for half the cases on
    one user or ship, that id points at a live one (the fresh user, a fresh ship)."""
    token_type = case.operation.definition.raw.get("x-token-type")
    params = case.path_parameters or {}
    targeted = bool({"user_id", "ship_id"} & set(params)) and _choice(case, "live") % 2
    anonymous = _choice(case, "anonymous") % 6 == 0  # decided before the ids change
    if token_type is None and not targeted:
        return {}
    user_id, tokens = accounts.fresh()
    if targeted and "user_id" in params:
        params["user_id"] = user_id
    if targeted and "ship_id" in params:
        params["ship_id"] = accounts.ship(tokens["access_token"])
    if token_type is None or anonymous:
        return {}  # keep whatever the case itself sends: usually no token, so 401
    return {"Authorization": f"Bearer {tokens[f'{token_type}_token']}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case, accounts):
    case.call_and_validate(headers=prepare(case, accounts), checks=CHECKS)
