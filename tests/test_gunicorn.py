"""One end-to-end pass over real HTTP against gunicorn with the project's config."""

from __future__ import annotations

import secrets

import requests
from support.bodies import STAR_DESTROYER

from devtools.gunicorn import GunicornServer

STAR_DESTROYER_II = {**STAR_DESTROYER, "model": "Imperial II-class Star Destroyer", "crew": 37050}
TIMEOUT = 10


def test_login_create_update_delete_logout_over_real_http():
    env = {"FLEET_SECRET_KEY": secrets.token_urlsafe(36), "FLEET_SCRYPT_N": "16"}
    assert len(env["FLEET_SECRET_KEY"]) == 48
    with GunicornServer(env=env) as server, requests.Session() as http:
        base = server.url

        login = http.post(
            f"{base}/auth/login", json={"username": "user", "password": "password"}, timeout=TIMEOUT
        )
        assert login.status_code == 200, login.text
        assert login.headers["Content-Type"].startswith("application/json")
        assert login.headers["Cache-Control"] == "no-store"
        assert set(login.json()) == {"access_token", "refresh_token"}
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        created = http.post(f"{base}/api/ships", json=STAR_DESTROYER, headers=auth, timeout=TIMEOUT)
        assert created.status_code == 201, created.text
        ship_id = created.json()["id"]
        assert created.json() == {**STAR_DESTROYER, "id": ship_id}
        assert created.headers["Location"] == f"{base}/api/ships/{ship_id}"

        fetched = http.get(created.headers["Location"], timeout=TIMEOUT)
        assert fetched.status_code == 200
        assert fetched.json() == created.json()

        updated = http.put(
            f"{base}/api/ships/{ship_id}", json=STAR_DESTROYER_II, headers=auth, timeout=TIMEOUT
        )
        assert updated.status_code == 200, updated.text
        assert updated.json() == {**STAR_DESTROYER_II, "id": ship_id}
        assert http.get(f"{base}/api/ships/{ship_id}", timeout=TIMEOUT).json() == updated.json()

        deleted = http.delete(f"{base}/api/ships/{ship_id}", headers=auth, timeout=TIMEOUT)
        assert deleted.status_code == 204
        assert deleted.content == b""
        gone = http.get(f"{base}/api/ships/{ship_id}", timeout=TIMEOUT)
        assert gone.status_code == 404
        assert gone.json() == {"error": "Not Found"}

        logout = http.delete(f"{base}/auth/logout", headers=auth, timeout=TIMEOUT)
        assert logout.status_code == 200
        assert logout.json() == {"message": "Successfully logged out."}

        revoked = http.post(f"{base}/api/ships", json=STAR_DESTROYER, headers=auth, timeout=TIMEOUT)
        assert revoked.status_code == 401
        assert revoked.json() == {"error": "Token has been revoked"}
        assert revoked.headers["WWW-Authenticate"] == "Bearer"
        assert len(http.get(f"{base}/api/ships", timeout=TIMEOUT).json()) == 15

    assert server.process.returncode is not None
