"""Password hashing with scrypt (memory-hard, in the standard library).

Hashes are self-describing (`scrypt$n$r$p$salt$hash`) so the cost can be
raised later without breaking existing users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_KEY_LEN = 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class PasswordHasher:
    def __init__(self, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        self.n, self.r, self.p = n, r, p
        # Verified against when the user is unknown, so that a wrong name
        # costs exactly what a wrong password does.
        self._dummy = self.hash(os.urandom(16).hex())

    def _derive(self, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(
            password.encode(),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=256 * n * r + 1024 * 1024,
            dklen=_KEY_LEN,
        )

    def hash(self, password: str) -> str:
        salt = os.urandom(16)
        key = self._derive(password, salt, self.n, self.r, self.p)
        return f"scrypt${self.n}${self.r}${self.p}${_b64(salt)}${_b64(key)}"

    def verify(self, password: str, encoded: str | None) -> bool:
        """Constant-time check; `encoded=None` burns the same time and fails."""
        known = encoded is not None
        _, n, r, p, salt, key = (encoded or self._dummy).split("$")
        derived = self._derive(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(derived, base64.b64decode(key)) and known
