"""Signing keys over a real gunicorn with the project's gunicorn.conf.py
(issue 15): EdDSA tokens verified offline by another "service" with PyJWT's
PyJWKClient against /.well-known/jwks.json, rotation by `kill -HUP`, and a
bad key stopping the server at start instead of answering 500s later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import jwt
import pytest
from support.bodies import STAR_DESTROYER

from devtools.gunicorn import PROJECT_ROOT, GunicornServer
from devtools.http import call, login
from devtools.processes import wait_for_workers

WORKERS = 2
REPEAT = 6  # requests per check: new connections, so both workers answer some
RELOAD_TIMEOUT = 60.0


def new_key(directory) -> str:
    """`python -m fleet_api.keys new DIR`, as an operator runs it; its kid."""
    result = subprocess.run(
        [sys.executable, "-m", "fleet_api.keys", "new", str(directory)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def eddsa_env(directory) -> dict[str, str]:
    return {"FLEET_JWT_ALGORITHM": "EdDSA", "FLEET_SIGNING_KEYS": str(directory), "FLEET_SCRYPT_N": "16"}


def reload(server: GunicornServer) -> None:
    """`kill -HUP` the master and wait until only new workers are left."""
    old = wait_for_workers(server.pid, WORKERS, RELOAD_TIMEOUT)
    os.kill(server.pid, signal.SIGHUP)
    wait_for_workers(server.pid, WORKERS, RELOAD_TIMEOUT, without=old)


def kids(server: GunicornServer) -> set[str]:
    result = call("GET", f"{server.url}/.well-known/jwks.json")
    assert result.status == 200
    return {key["kid"] for key in result.json["keys"]}


def statuses(server: GunicornServer, token: str) -> list[int]:
    return [call("POST", f"{server.url}/api/ships", STAR_DESTROYER, token).status for _ in range(REPEAT)]


def test_eddsa_tokens_verify_offline_and_survive_a_rotation_by_reload(tmp_path):
    keys = tmp_path / "keys"
    old_kid = new_key(keys)
    with GunicornServer(workers=WORKERS, env=eddsa_env(keys)) as server:
        jwks_url = f"{server.url}/.well-known/jwks.json"
        # Another service: it holds no secret, only the URL of our key set.
        verifier = jwt.PyJWKClient(jwks_url, cooldown_duration=0)
        before = login(server.url)
        access = before["access_token"]
        assert jwt.get_unverified_header(access) == {"alg": "EdDSA", "kid": old_kid, "typ": "JWT"}
        signing_key = verifier.get_signing_key_from_jwt(access)
        assert signing_key.key_id == old_kid
        assert jwt.decode(access, signing_key, algorithms=["EdDSA"])["sub"] == "1"
        etag_before = call("GET", jwks_url).headers["ETag"]

        # Rotation, step 1: add a key, reload. Old tokens keep working, new
        # ones carry the new kid, both keys are published.
        new_kid = new_key(keys)
        reload(server)
        assert statuses(server, access) == [201] * REPEAT
        refreshed = call("POST", f"{server.url}/auth/refresh", token=before["refresh_token"])
        assert refreshed.status == 200, refreshed.body
        fresh = refreshed.json["access_token"]
        assert jwt.get_unverified_header(fresh)["kid"] == new_kid
        assert jwt.get_unverified_header(login(server.url)["access_token"])["kid"] == new_kid
        assert kids(server) == {old_kid, new_kid}
        assert call("GET", jwks_url).headers["ETag"] != etag_before
        # The verifier has never seen the new kid: it fetches the set again.
        assert jwt.decode(fresh, verifier.get_signing_key_from_jwt(fresh), algorithms=["EdDSA"])["sub"] == "1"
        assert (
            jwt.decode(access, verifier.get_signing_key_from_jwt(access), algorithms=["EdDSA"])["sub"] == "1"
        )

        # Step 2, once the old key's tokens would have expired: remove it, reload.
        [old_file] = [p for p in keys.iterdir() if p.name.endswith(f"-{old_kid}.pem")]
        old_file.unlink()
        reload(server)
        refused = [call("POST", f"{server.url}/api/ships", STAR_DESTROYER, access) for _ in range(REPEAT)]
        assert [r.status for r in refused] == [422] * REPEAT
        assert {r.body for r in refused} == {b'{"error":"The token is signed with an unknown key (kid)"}'}
        old_refresh = call("POST", f"{server.url}/auth/refresh", token=before["refresh_token"])
        assert old_refresh.status == 422
        assert statuses(server, fresh) == [201] * REPEAT
        assert kids(server) == {new_kid}


def test_two_hosts_given_the_same_key_files_accept_each_others_tokens(tmp_path):
    keys = tmp_path / "keys"
    kid = new_key(keys)
    env = {**eddsa_env(keys), "FLEET_STORE": f"sqlite:///{tmp_path / 'shared.db'}"}
    with (
        GunicornServer(workers=1, env=dict(env)) as first,
        GunicornServer(workers=1, env=dict(env)) as second,
    ):
        token = login(first.url)["access_token"]
        assert jwt.get_unverified_header(token)["kid"] == kid
        assert call("POST", f"{second.url}/api/ships", STAR_DESTROYER, token).status == 201
        assert (
            call("GET", f"{first.url}/.well-known/jwks.json").body
            == call("GET", f"{second.url}/.well-known/jwks.json").body
        )


@pytest.mark.parametrize(
    "preload", [False, True], ids=["each worker loads the keys", "--preload: the master does"]
)
def test_a_malformed_key_stops_gunicorn_at_start(tmp_path, preload):
    keys = tmp_path / "keys"
    new_key(keys)
    (keys / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nTUFMRk9STUVE\n-----END PRIVATE KEY-----\n")
    log = tmp_path / "gunicorn.log"
    server = GunicornServer(
        workers=WORKERS,
        env=eddsa_env(keys),
        log_path=log,
        args=["--preload"] if preload else [],
    )
    try:
        with pytest.raises(RuntimeError, match="gunicorn exited with"):
            server.start()
    finally:
        server.stop()
        server.cleanup()
    assert server.process.returncode != 0
    text = log.read_text()
    assert "broken.pem: not a PEM private key" in text
    assert "TUFMRk9STUVE" not in text  # the file's content never reaches the log
