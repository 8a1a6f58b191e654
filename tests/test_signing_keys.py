"""Signing keys (issue 15) over falcon.testing: EdDSA and ES256 tokens with
kid = RFC 7638 thumbprint, several keys, GET /.well-known/jwks.json,
rotation, algorithm-confusion attempts, loud start-up failures and the
`python -m fleet_api.keys` helper.

The same over a real gunicorn (offline verification with PyJWKClient,
rotation by `kill -HUP`) is in test_key_rotation.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support.bodies import TIE_FIGHTER

from devtools.gunicorn import PROJECT_ROOT
from fleet_api import auth as auth_module
from fleet_api import keys as keys_module
from fleet_api.app import create_app
from fleet_api.keys import KeyFileError, KeyRing, load_key_file, new_key, thumbprint
from fleet_api.settings import Settings, SettingsError
from fleet_api.store import open_store

SHIP = TIE_FIGHTER
JWKS = "/.well-known/jwks.json"
T0 = 1_800_000_000.0  # a fixed creation time for keys made here; later keys add to it
UNKNOWN_KID = {"error": "The token is signed with an unknown key (kid)"}


# --- helpers -----------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict, claims: dict, secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256 by hand, whatever the header says and
    whatever the secret is (PyJWT refuses PEM-looking HMAC keys)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def ed_signed(header: dict, claims: dict, private_key) -> str:
    """An EdDSA JWT with any header, even one PyJWT would refuse to write."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(private_key.sign(signing_input.encode()))}"


def unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def eddsa_settings(spec, algorithm="EdDSA", **extra) -> Settings:
    return Settings(secret_key="", jwt_algorithm=algorithm, signing_keys=str(spec), scrypt_n=16, **extra)


def hs256_settings(secret_key: str, **extra) -> Settings:
    return Settings(secret_key=secret_key, scrypt_n=16, **extra)


def client_for(settings: Settings, store=None) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, store=store or open_store("memory://")))


def login(client) -> dict:
    result = client.simulate_post("/auth/login", json={"username": "user", "password": "password"})
    assert result.status_code == 200, result.text
    return result.json


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def create_ship(client, token: str):
    return client.simulate_post("/api/ships", json=SHIP, headers=bearer(token))


def private_key_of(path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def write_pem(path, private_key) -> None:
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


@pytest.fixture
def key_dir(tmp_path):
    """A key directory with one EdDSA key made by `new`; (directory, kid, file)."""
    directory = tmp_path / "keys"
    path, kid = new_key(directory, "EdDSA", clock=lambda: T0)
    return directory, kid, path


# --- kid = RFC 7638 thumbprint ------------------------------------------------


def test_thumbprint_matches_rfc_7638_section_3_1():
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXj"
        "BZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8K"
        "JZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniI"
        "qbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_kid_of_a_key_file_is_its_thumbprint_rfc_8037_appendix_a(tmp_path):
    # RFC 8037 A.1's private key; A.2 gives its x, A.3 its thumbprint.
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    write_pem(tmp_path / "rfc8037.pem", ed25519.Ed25519PrivateKey.from_private_bytes(d))

    key = load_key_file(tmp_path / "rfc8037.pem")

    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert key.published() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
        "alg": "EdDSA",
        "use": "sig",
    }


def test_a_p256_kid_hashes_crv_kty_x_y_only(tmp_path):
    write_pem(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    key = load_key_file(tmp_path / "p256.pem")
    jwk = key.published()
    canonical = json.dumps({m: jwk[m] for m in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert key.kid == b64(hashlib.sha256(canonical.encode()).digest())
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")
    assert "d" not in jwk


def test_a_secrets_kid_is_the_thumbprint_of_its_oct_jwk():
    secret = "s" * 40
    ring = KeyRing.from_secrets([secret])
    assert ring.signer.kid == thumbprint({"kty": "oct", "k": b64(secret.encode())})
    assert ring.jwks() == {"keys": []}


def test_no_key_material_in_reprs_or_logs(key_dir, caplog):
    directory, kid, path = key_dir
    caplog.set_level(logging.INFO, logger="fleet_api")
    ring = keys_module.load_keyring(eddsa_settings(directory))
    pem = path.read_text()
    secret = private_key_of(path).private_bytes_raw()
    assert kid in caplog.text  # the kid is public and helps an operator
    for text in (repr(ring.signer), caplog.text):
        assert "PRIVATE KEY" not in text and pem not in text and b64(secret) not in text


# --- EdDSA and ES256 tokens -----------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_tokens_carry_the_kid_and_verify_offline_against_the_jwks(tmp_path, algorithm):
    _, kid = new_key(tmp_path, algorithm)
    client = client_for(eddsa_settings(tmp_path, algorithm))
    tokens = login(client)
    key_set = client.simulate_get(JWKS)

    assert key_set.status_code == 200
    assert [k["kid"] for k in key_set.json["keys"]] == [kid]
    assert key_set.json["keys"][0]["alg"] == algorithm and key_set.json["keys"][0]["use"] == "sig"
    published = jwt.PyJWKSet.from_dict(key_set.json)
    for token in tokens.values():
        header = jwt.get_unverified_header(token)
        assert header == {"alg": algorithm, "kid": kid, "typ": "JWT"}
        # What another service does: no secret, only the published key.
        claims = jwt.decode(token, published[header["kid"]], algorithms=[algorithm])
        assert claims["sub"] == "1"
    assert create_ship(client, tokens["access_token"]).status_code == 201
    refreshed = client.simulate_post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    assert jwt.get_unverified_header(refreshed.json["access_token"])["kid"] == kid


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_logout_revokes_an_asymmetric_token(tmp_path, algorithm):
    new_key(tmp_path, algorithm)
    client = client_for(eddsa_settings(tmp_path, algorithm))
    access = login(client)["access_token"]
    assert client.simulate_delete("/auth/logout", headers=bearer(access)).status_code == 200
    assert create_ship(client, access).json == {"error": "Token has been revoked"}


def test_an_eddsa_token_is_verified_once_per_worker_then_only_its_expiry(key_dir, monkeypatch):
    client = client_for(eddsa_settings(key_dir[0]))
    access = login(client)["access_token"]
    calls = []
    real_decode = jwt.decode
    monkeypatch.setattr(auth_module.jwt, "decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))

    statuses = [create_ship(client, access).status_code for _ in range(3)]

    assert statuses == [201] * 3
    assert len(calls) == 1


def test_two_hosts_with_the_same_key_files_accept_each_others_tokens(key_dir):
    # Two apps with their own key loading, sharing one store as hosts do.
    shared = open_store("memory://")
    first, second = (client_for(eddsa_settings(key_dir[0]), store=shared) for _ in range(2))
    from_first, from_second = login(first)["access_token"], login(second)["access_token"]

    assert create_ship(second, from_first).status_code == 201
    assert create_ship(first, from_second).status_code == 201
    one, two = first.simulate_get(JWKS), second.simulate_get(JWKS)
    assert one.content == two.content and one.headers["ETag"] == two.headers["ETag"]


# --- the JWKS endpoint ------------------------------------------------------------


def test_jwks_is_cacheable_with_max_age_and_a_strong_etag(key_dir):
    client = client_for(eddsa_settings(key_dir[0], jwks_max_age=120))
    first = client.simulate_get(JWKS)

    assert first.headers["Cache-Control"] == "public, max-age=120"
    assert first.headers["Content-Type"] == "application/json"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.simulate_get(JWKS, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "public, max-age=120"
    stale = client.simulate_get(JWKS, headers={"If-None-Match": '"0123456789abcdef01234567"'})
    assert stale.status_code == 200 and stale.json == first.json


def test_jwks_publishes_only_public_members(key_dir):
    key = client_for(eddsa_settings(key_dir[0])).simulate_get(JWKS).json["keys"][0]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_hs256_publishes_no_keys(tmp_path):
    result = client_for(hs256_settings(secrets.token_urlsafe(48))).simulate_get(JWKS)
    assert result.status_code == 200
    assert result.json == {"keys": []}
    assert result.headers["ETag"] and result.headers["Cache-Control"] == "public, max-age=300"


# --- rotation ---------------------------------------------------------------------


def test_eddsa_rotation_add_a_key_then_remove_the_old_one(key_dir):
    directory, old_kid, old_path = key_dir
    store = open_store("memory://")  # one store across the "restarts", as on disk
    before = login(client_for(eddsa_settings(directory), store))

    _, new_kid = new_key(directory, "EdDSA", clock=lambda: T0 + 60)
    after = client_for(eddsa_settings(directory), store)
    assert create_ship(after, before["access_token"]).status_code == 201
    refreshed = after.simulate_post("/auth/refresh", headers=bearer(before["refresh_token"]))
    assert refreshed.status_code == 200
    assert jwt.get_unverified_header(refreshed.json["access_token"])["kid"] == new_kid
    assert {k["kid"] for k in after.simulate_get(JWKS).json["keys"]} == {old_kid, new_kid}

    old_path.unlink()
    later = client_for(eddsa_settings(directory), store)
    assert create_ship(later, before["access_token"]).status_code == 422
    assert create_ship(later, before["access_token"]).json == UNKNOWN_KID
    assert create_ship(later, refreshed.json["access_token"]).status_code == 201
    assert [k["kid"] for k in later.simulate_get(JWKS).json["keys"]] == [new_kid]


def test_hs256_rotation_with_comma_separated_secrets():
    old, new = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    store = open_store("memory://")
    before = login(client_for(hs256_settings(old), store))["access_token"]

    both = client_for(hs256_settings(f"{new},{old}"), store)
    assert create_ship(both, before).status_code == 201
    fresh = login(both)["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == KeyRing.from_secrets([new]).signer.kid
    jwt.decode(fresh, new, algorithms=["HS256"])  # the first secret signs

    only_new = client_for(hs256_settings(new), store)
    assert create_ship(only_new, fresh).status_code == 201
    assert create_ship(only_new, before).json == UNKNOWN_KID


@pytest.mark.parametrize("which", [0, 1], ids=["the signing secret", "an older secret"])
def test_hs256_tokens_without_kid_from_before_this_change_still_verify(which):
    """The documented rule: under HS256 a token without `kid` is checked
    against each secret; with a kid, against that secret only."""
    listed = [secrets.token_urlsafe(48), secrets.token_urlsafe(48)]
    client = client_for(hs256_settings(",".join(listed)))
    claims = unverified(login(client)["access_token"])

    legacy = jwt.encode(claims, listed[which], algorithm="HS256")  # no kid, as PyJWT did before

    assert "kid" not in jwt.get_unverified_header(legacy)
    assert create_ship(client, legacy).status_code == 201


def test_the_newest_key_file_signs_by_its_creation_time_not_its_name(tmp_path):
    _, older = new_key(tmp_path, "EdDSA", clock=lambda: T0)
    _, newer = new_key(tmp_path, "EdDSA", clock=lambda: T0 + 1)
    handmade = tmp_path / "aaa-handmade.pem"  # no time in the name: its mtime counts
    write_pem(handmade, ed25519.Ed25519PrivateKey.generate())
    os.utime(handmade, (T0 - 3600, T0 - 3600))

    ring = KeyRing.from_files(str(tmp_path), "EdDSA")

    assert ring.signer.kid == newer
    assert [k.kid for k in ring.keys][:2] == [newer, older]
    assert ring.keys[-1].source == str(handmade)


def test_fleet_signing_kid_chooses_the_signer(tmp_path):
    _, older = new_key(tmp_path, "EdDSA", clock=lambda: T0)
    new_key(tmp_path, "EdDSA", clock=lambda: T0 + 1)
    settings = Settings.from_env(
        {
            "FLEET_JWT_ALGORITHM": "EdDSA",
            "FLEET_SIGNING_KEYS": str(tmp_path),
            "FLEET_SIGNING_KID": older,
            "FLEET_SCRYPT_N": "16",
        }
    )
    client = client_for(settings)
    assert jwt.get_unverified_header(login(client)["access_token"])["kid"] == older
    assert len(client.simulate_get(JWKS).json["keys"]) == 2


def test_a_comma_separated_list_of_key_files(tmp_path):
    first, kid_one = new_key(tmp_path / "a", "EdDSA", clock=lambda: T0)
    second, kid_two = new_key(tmp_path / "b", "EdDSA", clock=lambda: T0 + 1)
    client = client_for(eddsa_settings(f"{first}, {second}"))
    assert {k["kid"] for k in client.simulate_get(JWKS).json["keys"]} == {kid_one, kid_two}
    assert jwt.get_unverified_header(login(client)["access_token"])["kid"] == kid_two


# --- algorithm confusion and foreign keys: every one a 422 {"error": ...} ----------


def _eddsa_attacks(token: str, path, kid: str) -> dict[str, str]:
    claims = unverified(token)
    ours = private_key_of(path)
    public = ours.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_public = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    published = json.dumps(load_key_file(path).published()).encode()
    theirs = ed25519.Ed25519PrivateKey.generate()
    their_jwk = keys_module.public_jwk(theirs)
    their_kid = thumbprint(their_jwk)
    head, body, signature = token.split(".")

    def none(header: dict, sig: str = "") -> str:
        return f"{b64(json.dumps(header).encode())}.{body}.{sig}"

    return {
        "HS256 signed with the raw public key as secret": hand_signed(
            {"alg": "HS256", "kid": kid}, claims, raw_public
        ),
        "HS256 signed with the public key PEM as secret": hand_signed(
            {"alg": "HS256", "kid": kid}, claims, pem_public
        ),
        "HS256 signed with the published JWK as secret": hand_signed(
            {"alg": "HS256", "kid": kid}, claims, published
        ),
        "HS256 without kid, public key PEM as secret": hand_signed({"alg": "HS256"}, claims, pem_public),
        "alg none, unsigned": none({"alg": "none", "kid": kid}),
        "alg none, original signature kept": none({"alg": "none", "kid": kid}, signature),
        "alg eddsa in lower case, original signature": none({"alg": "eddsa", "kid": kid}, signature),
        "no alg, original signature": none({"kid": kid}, signature),
        "embedded jwk of another key, signed by it, our kid": jwt.encode(
            claims, theirs, algorithm="EdDSA", headers={"kid": kid, "jwk": their_jwk}
        ),
        "embedded jwk of another key, its own kid": jwt.encode(
            claims, theirs, algorithm="EdDSA", headers={"kid": their_kid, "jwk": their_jwk}
        ),
        "embedded jwk, signed by our own key": jwt.encode(
            claims, ours, algorithm="EdDSA", headers={"kid": kid, "jwk": their_jwk}
        ),
        "jku pointing elsewhere": jwt.encode(
            claims,
            theirs,
            algorithm="EdDSA",
            headers={"kid": their_kid, "jku": "http://127.0.0.1:9/jwks.json"},
        ),
        "x5u pointing elsewhere": jwt.encode(
            claims,
            theirs,
            algorithm="EdDSA",
            headers={"kid": their_kid, "x5u": "http://127.0.0.1:9/cert.pem"},
        ),
        "x5c with a chain": jwt.encode(
            claims, ours, algorithm="EdDSA", headers={"kid": kid, "x5c": ["MIIB"]}
        ),
        "crit extension we don't know": jwt.encode(
            claims, ours, algorithm="EdDSA", headers={"kid": kid, "crit": ["exp"], "exp": 1}
        ),
        "another key with our kid": jwt.encode(claims, theirs, algorithm="EdDSA", headers={"kid": kid}),
        "another key with its own kid": jwt.encode(
            claims, theirs, algorithm="EdDSA", headers={"kid": their_kid}
        ),
        "our key but no kid": jwt.encode(claims, ours, algorithm="EdDSA"),
        "kid a number": ed_signed({"alg": "EdDSA", "kid": 7}, claims, ours),
        "kid a list": ed_signed({"alg": "EdDSA", "kid": [kid]}, claims, ours),
        "kid a path": jwt.encode(claims, ours, algorithm="EdDSA", headers={"kid": "../../etc/passwd"}),
        "kid empty": jwt.encode(claims, ours, algorithm="EdDSA", headers={"kid": ""}),
        "ES256 from another key, our kid": jwt.encode(
            claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid}
        ),
        "tampered payload, signature kept": f"{head}.{b64(json.dumps({**claims, 'sub': '2'}).encode())}.{signature}",
    }


def _attack_names() -> list[str]:
    """The table's row ids, made once from a throwaway key and token."""
    with tempfile.TemporaryDirectory() as directory:
        path, kid = new_key(Path(directory), "EdDSA")
        token = jwt.encode({"sub": "1"}, private_key_of(path), algorithm="EdDSA", headers={"kid": kid})
        return list(_eddsa_attacks(token, path, kid))


@pytest.fixture(scope="module")
def eddsa_target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("confusion")
    path, kid = new_key(directory, "EdDSA")
    return directory, path, kid


@pytest.mark.parametrize("attack", _attack_names())
def test_confusion_attempts_under_eddsa_are_422(eddsa_target, attack):
    directory, path, kid = eddsa_target
    client = client_for(eddsa_settings(directory))
    token = login(client)["access_token"]
    forged = _eddsa_attacks(token, path, kid)[attack]

    # DELETE /api/users/1: had the token been accepted, the user would be gone.
    result = client.simulate_delete("/api/users/1", headers=bearer(forged))

    assert result.status_code == 422, result.text
    assert set(result.json) == {"error"} and result.json["error"]
    assert client.simulate_get("/api/users/1").status_code == 200
    assert client.simulate_delete("/api/users/1", headers=bearer(token)).status_code == 204  # the control


def _hs256_attacks(token: str, signing: str, older: str) -> dict[str, tuple[str, int]]:
    """name -> (token, status): the two kid-less rows are the accepted controls."""
    claims = unverified(token)
    kid = jwt.get_unverified_header(token)["kid"]
    older_kid = KeyRing.from_secrets([older]).signer.kid
    stranger = secrets.token_urlsafe(48)
    head, body, signature = token.split(".")
    attacker = ed25519.Ed25519PrivateKey.generate()
    return {
        "alg none with our kid": (f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{body}.", 422),
        "HS384 with our secret": (jwt.encode(claims, signing, algorithm="HS384", headers={"kid": kid}), 422),
        "embedded oct jwk, signed with it": (
            jwt.encode(
                claims,
                stranger,
                algorithm="HS256",
                headers={"kid": kid, "jwk": {"kty": "oct", "k": b64(stranger.encode())}},
            ),
            422,
        ),
        "jku, signed with our secret": (
            jwt.encode(
                claims, signing, algorithm="HS256", headers={"kid": kid, "jku": "http://127.0.0.1:9/"}
            ),
            422,
        ),
        "unknown kid, signed with our secret": (
            jwt.encode(claims, signing, algorithm="HS256", headers={"kid": "someone-else"}),
            422,
        ),
        "the older secret's kid, signed with the newer": (
            jwt.encode(claims, signing, algorithm="HS256", headers={"kid": older_kid}),
            422,
        ),
        "our kid, signed by a stranger": (
            jwt.encode(claims, stranger, algorithm="HS256", headers={"kid": kid}),
            422,
        ),
        "no kid, signed by a stranger": (jwt.encode(claims, stranger, algorithm="HS256"), 422),
        "EdDSA from an attacker's key": (
            jwt.encode(claims, attacker, algorithm="EdDSA", headers={"kid": kid}),
            422,
        ),
        "no kid, signed with the signing secret": (jwt.encode(claims, signing, algorithm="HS256"), 201),
        "no kid, signed with the older secret": (jwt.encode(claims, older, algorithm="HS256"), 201),
    }


HS256_ATTACKS = list(
    _hs256_attacks(
        jwt.encode({"sub": "1"}, "k" * 48, algorithm="HS256", headers={"kid": "k"}), "k" * 48, "o" * 48
    )
)


@pytest.mark.parametrize("attack", HS256_ATTACKS)
def test_confusion_attempts_under_hs256_are_422(attack):
    signing, older = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    client = client_for(hs256_settings(f"{signing},{older}"))
    forged, status = _hs256_attacks(login(client)["access_token"], signing, older)[attack]

    result = create_ship(client, forged)

    assert result.status_code == status, result.text
    if status == 422:
        assert set(result.json) == {"error"} and result.json["error"]


# --- start-up fails loudly ------------------------------------------------------------


def _bad_key(tmp_path, case: str) -> str:
    """A FLEET_SIGNING_KEYS value for one broken case."""
    directory = tmp_path / "keys"
    directory.mkdir()
    target = directory / "bad.pem"
    if case == "missing directory":
        return str(tmp_path / "nowhere")
    if case == "empty directory":
        (directory / "notes.txt").write_text("no keys here")
        return str(directory)
    if case == "missing file in a list":
        good, _ = new_key(tmp_path / "good", "EdDSA")
        return f"{good},{tmp_path / 'gone.pem'}"
    if case == "unreadable file (a directory)":
        target.mkdir()
    elif case == "dangling symlink":
        target.symlink_to(tmp_path / "gone.pem")
    elif case == "not PEM":
        target.write_bytes(b"this is not a key\n")
    elif case == "truncated PEM":
        path, _ = new_key(tmp_path / "full", "EdDSA")
        target.write_bytes(path.read_bytes()[:60])
    elif case == "encrypted PEM":
        target.write_bytes(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
    elif case == "public key only":
        target.write_bytes(
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    elif case == "ES256 key under EdDSA":
        write_pem(target, ec.generate_private_key(ec.SECP256R1()))
    elif case == "RSA key":
        write_pem(target, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif case == "the same key twice":
        path, _ = new_key(directory, "EdDSA")
        target.write_bytes(path.read_bytes())
    elif case == "an impossible date in a stamped name":
        path, _ = new_key(directory, "EdDSA")
        path.rename(directory / "20261399T999999.000000Z-x.pem")
    else:
        raise AssertionError(case)
    return str(directory)


BAD_KEYS = {
    "missing directory": "cannot read",
    "empty directory": r"no \*\.pem key files",
    "missing file in a list": "cannot read",
    "unreadable file (a directory)": "cannot read",
    "dangling symlink": "cannot read",
    "not PEM": "not a PEM private key",
    "truncated PEM": "not a PEM private key",
    "encrypted PEM": "encrypted",
    "public key only": "not a PEM private key",
    "ES256 key under EdDSA": "needs an Ed25519 private key",
    "RSA key": "does not sign with",
    "the same key twice": "the same key",
    "an impossible date in a stamped name": "not a valid date",
}


@pytest.mark.parametrize("case", BAD_KEYS)
def test_a_bad_key_stops_create_app(tmp_path, case):
    spec = _bad_key(tmp_path, case)
    with pytest.raises(KeyFileError, match=BAD_KEYS[case]) as raised:
        create_app(eddsa_settings(spec), store=open_store("memory://"))
    assert "PRIVATE KEY" not in str(raised.value)
    assert isinstance(raised.value, SettingsError)


@pytest.mark.parametrize("curve, message", [(ec.SECP384R1(), "secp384r1"), (ec.SECP256K1(), "secp256k1")])
def test_es256_refuses_other_curves(tmp_path, curve, message):
    write_pem(tmp_path / "k.pem", ec.generate_private_key(curve))
    with pytest.raises(KeyFileError, match=message):
        create_app(eddsa_settings(tmp_path, "ES256"), store=open_store("memory://"))


def test_eddsa_key_under_es256_is_refused(key_dir):
    with pytest.raises(KeyFileError, match="needs a P-256"):
        create_app(eddsa_settings(key_dir[0], "ES256"), store=open_store("memory://"))


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"FLEET_JWT_ALGORITHM": "RS256"}, "must be one of HS256, EdDSA, ES256"),
        ({"FLEET_JWT_ALGORITHM": "none"}, "must be one of"),
        ({"FLEET_JWT_ALGORITHM": "EdDSA"}, "needs FLEET_SIGNING_KEYS"),
        ({"FLEET_JWT_ALGORITHM": "ES256", "FLEET_SIGNING_KEYS": " "}, "needs FLEET_SIGNING_KEYS"),
        (
            {"FLEET_SECRET_KEY": "k" * 32, "FLEET_SIGNING_KEYS": "/etc/keys"},
            "HS256 signs with FLEET_SECRET_KEY",
        ),
        ({"FLEET_SECRET_KEY": f"{'k' * 32},{'o' * 31}"}, "at least 32 bytes long .each of"),
        ({"FLEET_SECRET_KEY": f"{'k' * 32},"}, "at least 32 bytes"),
        ({"FLEET_SECRET_KEY": "k" * 31}, "at least 32 bytes long$"),
        ({"FLEET_SECRET_KEY": "k" * 32, "FLEET_JWKS_MAX_AGE": "-1"}, "must not be negative"),
        ({"FLEET_SECRET_KEY": "k" * 32, "FLEET_JWKS_MAX_AGE": "soon"}, "must be an integer"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={v[k][:12]}" for k in v),
)
def test_bad_signing_settings_are_refused(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_unknown_fleet_signing_kid_stops_start_up(key_dir):
    with pytest.raises(KeyFileError, match="FLEET_SIGNING_KID=nope names none"):
        create_app(eddsa_settings(key_dir[0], signing_kid="nope"), store=open_store("memory://"))


def test_unknown_fleet_signing_kid_under_hs256_stops_start_up():
    with pytest.raises(KeyFileError, match="names none"):
        create_app(hs256_settings("k" * 32, signing_kid="nope"), store=open_store("memory://"))


def test_asymmetric_settings_need_no_secret_and_warn_about_none(key_dir, caplog):
    settings = Settings.from_env({"FLEET_JWT_ALGORITHM": "EdDSA", "FLEET_SIGNING_KEYS": str(key_dir[0])})
    assert settings.secret_key == ""
    assert "FLEET_SECRET_KEY is not set" not in caplog.text


def test_a_group_readable_key_file_warns(key_dir, caplog):
    key_dir[2].chmod(0o644)
    keys_module.load_keyring(eddsa_settings(key_dir[0]))
    assert "readable by others (mode 644)" in caplog.text


# --- python -m fleet_api.keys ------------------------------------------------------------


def run_keys(*args, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")} | env
    return subprocess.run(
        [sys.executable, "-m", "fleet_api.keys", *args],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_new_writes_a_0600_key_and_prints_its_kid(tmp_path):
    directory = tmp_path / "fresh" / "keys"
    result = run_keys("new", str(directory))

    assert result.returncode == 0, result.stderr
    kid = result.stdout.strip()
    [path] = list(directory.iterdir())  # nothing else left behind (no partial file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert path.name.endswith(f"-{kid}.pem")
    assert load_key_file(path).kid == kid and load_key_file(path).algorithm == "EdDSA"
    assert "PRIVATE" not in result.stdout + result.stderr


def test_cli_new_follows_the_configured_algorithm_or_alg(tmp_path):
    by_env = run_keys("new", str(tmp_path / "a"), FLEET_JWT_ALGORITHM="ES256")
    by_flag = run_keys("new", "--alg", "ES256", str(tmp_path / "b"))
    for directory in ("a", "b"):
        [path] = list((tmp_path / directory).iterdir())
        assert load_key_file(path).algorithm == "ES256"
    assert by_env.returncode == by_flag.returncode == 0


def test_cli_list_shows_kids_algorithms_creation_times_and_the_signer(tmp_path):
    _, older = new_key(tmp_path, "EdDSA", clock=lambda: T0)
    _, newer = new_key(tmp_path, "EdDSA", clock=lambda: T0 + 86400)

    result = run_keys("list", str(tmp_path))

    assert result.returncode == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split()[:4] == ["kid", "alg", "created", "(UTC)"]
    assert first.split()[:4] == [newer, "EdDSA", "2027-01-16T08:00:00Z", "signs"]
    assert second.split()[:3] == [older, "EdDSA", "2027-01-15T08:00:00Z"]
    assert "signs" not in second
    chosen = run_keys("list", str(tmp_path), FLEET_SIGNING_KID=older)
    assert "signs" in chosen.stdout.splitlines()[2]


def test_cli_list_fails_on_a_bad_key_without_printing_it(tmp_path):
    new_key(tmp_path, "EdDSA")
    (tmp_path / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")

    result = run_keys("list", str(tmp_path))

    assert result.returncode == 1
    assert "broken.pem: not a PEM private key" in result.stderr
    assert "AAAA" not in result.stderr + result.stdout


def test_cli_list_checks_the_configured_algorithm(key_dir):
    result = run_keys("list", str(key_dir[0]), FLEET_JWT_ALGORITHM="ES256")
    assert result.returncode == 1
    assert "needs a P-256" in result.stderr


def test_cli_without_a_command_is_usage_error():
    assert run_keys().returncode == 2


def test_gunicorn_conf_makes_no_secret_for_eddsa(monkeypatch, key_dir):
    """The conf's random secret is for HS256 only; EdDSA workers load key files."""
    import runpy

    from devtools.gunicorn import GUNICORN_CONF

    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    environ |= {"FLEET_JWT_ALGORITHM": "EdDSA", "FLEET_SIGNING_KEYS": str(key_dir[0])}
    monkeypatch.setattr(os, "environ", environ)
    runpy.run_path(str(GUNICORN_CONF))
    assert "FLEET_SECRET_KEY" not in os.environ
    assert Settings.from_env().jwt_algorithm == "EdDSA"


def test_idempotency_fingerprints_stay_keyed_without_an_hs256_secret(key_dir):
    """Under EdDSA FLEET_SECRET_KEY is empty; the fingerprint key then comes
    from the private key, never from a public constant."""
    ring = keys_module.load_keyring(eddsa_settings(key_dir[0]))
    secret = ring.derived_secret("idempotency")
    assert len(secret) == 64
    assert secret != KeyRing.from_secrets(["k" * 32]).derived_secret("idempotency")
    assert secret == keys_module.load_keyring(eddsa_settings(key_dir[0])).derived_secret("idempotency")
