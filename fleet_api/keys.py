"""Signing keys: the key ring tokens are signed and verified with, its JWKS,
and `python -m fleet_api.keys new|list DIR` to manage key files.

HS256 signs with the secrets of FLEET_SECRET_KEY (comma-separated, the first
signs). EdDSA (Ed25519) and ES256 (P-256) sign with PEM private keys named by
FLEET_SIGNING_KEYS (a directory of *.pem, or a comma-separated list of
files): the newest signs, or the one FLEET_SIGNING_KID names; every key
verifies. Each key's `kid` is its RFC 7638 thumbprint, so every worker and
every host given the same files or secrets agrees on it without being told.

Nothing here logs or raises with key material in it: errors name the file
and what is wrong with it, reprs leave the keys out.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import hmac
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.utils import base64url_encode

from fleet_api.settings import (
    ALGORITHM_ENV,
    ASYMMETRIC,
    HS256,
    SECRET_ENV,
    SIGNING_KEYS_ENV,
    SIGNING_KID_ENV,
    Settings,
    SettingsError,
)

log = logging.getLogger(__name__)

EDDSA, ES256 = ASYMMETRIC
KEY_SUFFIX = ".pem"
# What each algorithm signs with, in words for error messages.
NEEDS = {EDDSA: "an Ed25519 private key", ES256: "a P-256 (secp256r1) EC private key"}
# RFC 7638 section 3.2: the members a thumbprint hashes, per key type
# (OKP from RFC 8037 section 2).
THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "oct": ("k", "kty"),
}
# `new` names files <UTC creation time>-<kid>.pem, so the newest key is the
# same one on every host however the files were copied.
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_STAMPED = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-")


class KeyFileError(SettingsError):
    """A key file is missing, unreadable, malformed or of the wrong type."""


def thumbprint(jwk: dict) -> str:
    """RFC 7638 section 3: SHA-256 of the required members, in lexicographic
    order, without whitespace, base64url without padding."""
    members = THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = orjson.dumps({name: jwk[name] for name in members}, option=orjson.OPT_SORT_KEYS)
    return base64url_encode(hashlib.sha256(canonical).digest()).decode()


def public_jwk(private_key) -> dict:
    """The public half as a JWK (RFC 7517 section 4, RFC 8037 section 2)."""
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return OKPAlgorithm.to_jwk(public, as_dict=True)
    return ECAlgorithm.to_jwk(public, as_dict=True)


def algorithm_of(private_key) -> str | None:
    """The JWS algorithm this key signs with, or None if we don't use it."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return EDDSA
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP256R1):
        return ES256
    return None


def _describe(private_key) -> str:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return f"an EC {private_key.curve.name} private key"
    return f"a {type(private_key).__name__.removeprefix('_').removesuffix('PrivateKey') or 'private'} key"


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """One key: what signs (secret or private key), what verifies (secret or
    public key), and its public JWK (None for a secret, which is never published)."""

    kid: str
    algorithm: str
    source: str  # the file, or which FLEET_SECRET_KEY item: for `list` and errors
    created: float | None = None  # Unix time, when known
    signing: Any = dataclasses.field(default=None, repr=False, compare=False)
    verifying: Any = dataclasses.field(default=None, repr=False, compare=False)
    jwk: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_secret(cls, secret: str, source: str) -> SigningKey:
        raw = secret.encode()
        # The kid of a secret is the thumbprint of its "oct" JWK. It tells no
        # more about the secret than any token's HMAC already does.
        kid = thumbprint({"kty": "oct", "k": base64url_encode(raw).decode()})
        return cls(kid=kid, algorithm=HS256, source=source, signing=raw, verifying=raw)

    @classmethod
    def from_private_key(cls, private_key, source: str, created: float | None = None) -> SigningKey:
        algorithm = algorithm_of(private_key)
        if algorithm is None:
            raise KeyFileError(f"{source}: {_describe(private_key)}, which Fleet API does not sign with")
        jwk = public_jwk(private_key)
        return cls(
            kid=thumbprint(jwk),
            algorithm=algorithm,
            source=source,
            created=created,
            signing=private_key,
            verifying=private_key.public_key(),
            jwk=jwk,
        )

    def published(self) -> dict:
        """The JWKS entry: RFC 7517 section 4 members kid, alg and use."""
        return {**self.jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


class KeyRing:
    """Every key that verifies, one algorithm, and the one key that signs."""

    def __init__(self, algorithm: str, keys: Sequence[SigningKey], signing_kid: str = "") -> None:
        """`keys` in order of preference: the first signs unless `signing_kid` names another."""
        if not keys:
            raise KeyFileError("no signing key")
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            if key.algorithm != algorithm:
                raise KeyFileError(
                    f"{key.source}: a key for {key.algorithm}, but {ALGORITHM_ENV}={algorithm}"
                    + (f" needs {NEEDS[algorithm]}" if algorithm in NEEDS else "")
                )
            if key.kid in by_kid:
                raise KeyFileError(f"{key.source}: the same key as {by_kid[key.kid].source} (kid {key.kid})")
            by_kid[key.kid] = key
        if signing_kid and signing_kid not in by_kid:
            raise KeyFileError(f"{SIGNING_KID_ENV}={signing_kid} names none of the keys")
        self.algorithm = algorithm
        self.keys: tuple[SigningKey, ...] = tuple(keys)
        self.signer = by_kid[signing_kid] if signing_kid else keys[0]
        self._by_kid = by_kid

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def derived_secret(self, purpose: str) -> str:
        """A server-only secret for another MAC (e.g. idempotency fingerprints),
        derived from the signing key, for deployments whose FLEET_SECRET_KEY is
        empty because they sign with a private key."""
        key = self.signer.signing
        raw = (
            key
            if isinstance(key, bytes)
            else key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return hmac.new(raw, purpose.encode(), hashlib.sha256).hexdigest()

    def jwks(self) -> dict:
        """RFC 7517 section 5 key set of every public key, sorted by kid so
        every host serves the same bytes (and ETag). Secrets: `{"keys": []}`."""
        return {"keys": [k.published() for k in sorted(self.keys, key=lambda k: k.kid) if k.jwk]}

    @classmethod
    def from_secrets(cls, secrets: Iterable[str], signing_kid: str = "") -> KeyRing:
        keys = [SigningKey.from_secret(s, f"{SECRET_ENV}[{i}]") for i, s in enumerate(secrets)]
        return cls(HS256, keys, signing_kid)

    @classmethod
    def from_files(cls, spec: str, algorithm: str | None = None, signing_kid: str = "") -> KeyRing:
        """The keys of FLEET_SIGNING_KEYS, newest first; `algorithm` None
        takes the newest key's (for `list` without a configured algorithm)."""
        keys = sorted((load_key_file(path) for path in key_paths(spec)), key=_age_order, reverse=True)
        return cls(algorithm or keys[0].algorithm, keys, signing_kid)


def _age_order(key: SigningKey) -> tuple[float, str]:
    return (key.created or 0.0, Path(key.source).name)


def load_keyring(settings: Settings) -> KeyRing:
    """The settings' key ring; raises KeyFileError (a SettingsError) so a
    bad key stops start-up, not a request later."""
    if settings.jwt_algorithm == HS256:
        ring = KeyRing.from_secrets(settings.secret_keys, settings.signing_kid)
    else:
        ring = KeyRing.from_files(settings.signing_keys, settings.jwt_algorithm, settings.signing_kid)
    log.info(
        "%s tokens signed with kid %s; %d key(s) verify: %s",
        ring.algorithm,
        ring.signer.kid,
        len(ring.keys),
        ", ".join(k.kid for k in ring.keys),
    )
    return ring


def key_paths(spec: str) -> list[Path]:
    """A directory's *.pem files (dot files left out), or a comma-separated list of files."""
    spec = spec.strip()
    if not spec:
        raise KeyFileError(f"{SIGNING_KEYS_ENV} is empty")
    if "," not in spec and Path(spec).is_dir():
        directory = Path(spec)
        try:
            found = sorted(
                p for p in directory.iterdir() if p.name.endswith(KEY_SUFFIX) and not p.name.startswith(".")
            )
        except OSError as exc:
            raise KeyFileError(f"{directory}: cannot list the key directory ({exc.strerror})") from None
        if not found:
            raise KeyFileError(f"{directory}: no *{KEY_SUFFIX} key files in the key directory")
        return found
    paths = [item.strip() for item in spec.split(",")]
    if not all(paths):
        raise KeyFileError(f"{SIGNING_KEYS_ENV} has an empty item: {spec!r}")
    return [Path(p) for p in paths]


def load_key_file(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
        status = path.stat()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror})") from None
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted; store it unencrypted, mode 0600") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key (PKCS#8 or traditional)") from None
    if status.st_mode & 0o077:
        log.warning(
            "%s: the key file is readable by others (mode %03o); chmod 600 it", path, status.st_mode & 0o777
        )
    return SigningKey.from_private_key(private_key, str(path), created=created_at(path, status.st_mtime))


def created_at(path: Path, mtime: float) -> float:
    """The creation time `new` wrote into the name, else the file's mtime."""
    stamped = _STAMPED.match(path.name)
    if stamped:
        try:
            moment = datetime.datetime.strptime(stamped.group(1), _STAMP_FORMAT)
        except ValueError:
            raise KeyFileError(f"{path}: the creation time in its name is not a valid date") from None
        return moment.replace(tzinfo=datetime.UTC).timestamp()
    return mtime


def generate(algorithm: str):
    if algorithm == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    raise KeyFileError(f"no key files for {algorithm}; choose {' or '.join(ASYMMETRIC)}")


def new_key(
    directory: Path, algorithm: str = EDDSA, clock: Callable[[], float] = time.time
) -> tuple[Path, str]:
    """Write a new private key into `directory` (made 0700 if missing), mode
    0600, under a name that holds its creation time and kid. It is written
    to a dot file first and renamed, so a reload never sees half a key."""
    private_key = generate(algorithm)
    created = datetime.datetime.fromtimestamp(clock(), datetime.UTC)
    kid = SigningKey.from_private_key(private_key, "new key").kid
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{created.strftime(_STAMP_FORMAT)}-{kid}{KEY_SUFFIX}"
    partial = directory / f".{path.name}.partial"
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path, kid


def _iso(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def listing(ring: KeyRing) -> list[str]:
    """One line per key, newest first: kid, algorithm, creation time, the signer marked."""
    lines = [f"{'kid':<43}  {'alg':<5}  {'created (UTC)':<20}  {'':<5}  file"]
    for key in ring.keys:
        mark = "signs" if key is ring.signer else ""
        lines.append(f"{key.kid:<43}  {key.algorithm:<5}  {_iso(key.created):<20}  {mark:<5}  {key.source}")
    return lines


def main(argv: list[str] | None = None, environ: dict | None = None) -> int:
    env = os.environ if environ is None else environ
    configured = env.get(ALGORITHM_ENV, "")
    parser = argparse.ArgumentParser(prog="python -m fleet_api.keys", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="write a new private key file (mode 0600) and print its kid")
    new.add_argument("directory", type=Path)
    new.add_argument(
        "--alg",
        choices=ASYMMETRIC,
        default=configured if configured in ASYMMETRIC else EDDSA,
        help=f"the algorithm (default: {ALGORITHM_ENV} when it is one of these, else {EDDSA})",
    )
    show = commands.add_parser(
        "list", help="check every key as the server would and show kids, algorithms, creation times"
    )
    show.add_argument("keys", help=f"a key directory or comma-separated files, as {SIGNING_KEYS_ENV}")
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            path, kid = new_key(args.directory, args.alg)
            print(f"wrote {path} ({args.alg})", file=sys.stderr)
            print(kid)
        else:
            algorithm = configured if configured in ASYMMETRIC else None
            ring = KeyRing.from_files(args.keys, algorithm, env.get(SIGNING_KID_ENV, ""))
            print("\n".join(listing(ring)))
    except (KeyFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
