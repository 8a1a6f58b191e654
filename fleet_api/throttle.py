"""Brute-force throttling of logins, counted in the shared store.

Failed logins are counted per user name (tight) and per client address
(loose); past either limit a login gets 429 with Retry-After until the
window ends, even with the right password. Because the counters live in the
store, every worker and host sees the same counts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time

import falcon

from fleet_api.store import Store


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = max(retry_after, 1)


class LoginThrottle:
    def __init__(self, store: Store, user_limit: int, ip_limit: int, window: int, trusted_proxies: str = ""):
        self._store = store
        self._limits = {"user": user_limit, "ip": ip_limit}
        self._window = window
        self._trusted = _networks(trusted_proxies)

    def keys(self, req: falcon.Request, username: str) -> dict[str, str]:
        # Hashed, so a megabyte of user name costs the store 64 bytes.
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return {"user": f"user:{digest}", "ip": f"ip:{client_address(req, self._trusted)}"}

    def check(self, keys: dict[str, str]) -> dict[str, int]:
        """Each key's failures so far; TooManyAttempts while any is locked out."""
        now = int(time.time())
        counts = {}
        for kind, key in keys.items():
            count, end = self._store.failures(key, now)
            if count >= self._limits[kind]:
                raise TooManyAttempts(end - now)
            counts[kind] = count
        return counts

    def failed(self, keys: dict[str, str]) -> None:
        now = int(time.time())
        for key in keys.values():
            self._store.count_failure(key, self._window, now)

    def client(self, req: falcon.Request) -> str:
        """The client's address by the same trusted-proxy rule the counters use."""
        return client_address(req, self._trusted)

    def succeeded(self, keys: dict[str, str], counts: dict[str, int]) -> None:
        """Reset the user's count: a write only when there was one to reset."""
        if counts["user"]:
            self._store.clear_failures(keys["user"])


def _networks(spec: str) -> list | str:
    spec = spec.strip()
    if spec == "*":
        return "*"
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


trusted_networks = _networks  # for others that find the client address the same way (sessions)


def _is_trusted(address: str, trusted) -> bool:
    if trusted == "*":
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(req: falcon.Request, trusted) -> str:
    """The peer's address, or behind a trusted proxy the nearest untrusted
    hop of X-Forwarded-For: only trusted proxies may speak for a client."""
    address = req.remote_addr or "unknown"
    if not trusted or not _is_trusted(address, trusted):
        return address
    hops = [hop.strip() for hop in (req.get_header("X-Forwarded-For") or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else address
