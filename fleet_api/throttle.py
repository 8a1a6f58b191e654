"""Brute-force throttling of logins, counted in the shared store.

Failed logins are counted per user name (tight) and per client address
(loose); past either limit a login gets 429 with Retry-After until the
window ends, even with the right password. Because the counters live in the
store, every worker and host sees the same counts, and so do the RateLimit
headers built from them: they count down across workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import time

import falcon

from fleet_api.store import Store


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int, headers: dict[str, str] | None = None, violated=()) -> None:
        super().__init__(retry_after)
        self.retry_after = max(retry_after, 1)
        self.headers = headers or {}
        self.violated = list(violated)  # the policies ("user", "ip") over their quota


@dataclasses.dataclass(frozen=True)
class Quota:
    """Failures counted so far per policy ("user", "ip") and when each
    policy's window ends, as the store reported them at `now`."""

    counts: dict[str, int]
    ends: dict[str, int]
    now: int


class LoginThrottle:
    def __init__(
        self,
        store: Store,
        user_limit: int,
        ip_limit: int,
        window: int,
        trusted_proxies: str = "",
        clock=time.time,
    ):
        self._store = store
        self._limits = {"user": user_limit, "ip": ip_limit}
        self._window = window
        self._trusted = _networks(trusted_proxies)
        self._clock = clock
        # draft-ietf-httpapi-ratelimit-headers-11, section 3: a List of quota
        # policy Items, each a String with q (quota) and w (window, seconds).
        # Only failed logins use up the quota (section 3.1.2 leaves to the
        # server which requests consume a unit).
        self._policy = ", ".join(f'"{kind}";q={limit};w={window}' for kind, limit in self._limits.items())

    def keys(self, req: falcon.Request, username: str) -> dict[str, str]:
        # Hashed, so a megabyte of user name costs the store 64 bytes.
        digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return {"user": f"user:{digest}", "ip": f"ip:{client_address(req, self._trusted)}"}

    def check(self, keys: dict[str, str]) -> Quota:
        """Each key's failures so far; TooManyAttempts while any is locked
        out, until the last lock ends."""
        now = int(self._clock())
        counts, ends = {}, {}
        for kind, key in keys.items():
            counts[kind], ends[kind] = self._store.failures(key, now)
        quota = Quota(counts, ends, now)
        locked = [kind for kind in keys if counts[kind] >= self._limits[kind]]
        if locked:
            retry_after = max(ends[kind] - now for kind in locked)
            raise TooManyAttempts(retry_after, self.headers(quota), locked)
        return quota

    def failed(self, keys: dict[str, str]) -> Quota:
        now = int(self._clock())
        counts, ends = {}, {}
        for kind, key in keys.items():
            counts[kind], ends[kind] = self._store.count_failure(key, self._window, now)
        return Quota(counts, ends, now)

    def client(self, req: falcon.Request) -> str:
        """The client's address by the same trusted-proxy rule the counters use."""
        return client_address(req, self._trusted)

    def succeeded(self, keys: dict[str, str], quota: Quota) -> Quota:
        """Reset the user's count: a write only when there was one to reset."""
        if not quota.counts["user"]:
            return quota
        self._store.clear_failures(keys["user"])
        return Quota({**quota.counts, "user": 0}, {**quota.ends, "user": quota.now}, quota.now)

    def headers(self, quota: Quota) -> dict[str, str]:
        """RateLimit-Policy and RateLimit for this client's partitions."""
        limits = []
        for kind, limit in self._limits.items():
            count = quota.counts[kind]
            # Section 4.1: r is the quota left, t the seconds until it is
            # restored; with no failure yet, a window would start now.
            remaining = max(limit - count, 0)
            reset = max(quota.ends[kind] - quota.now, 1) if count else self._window
            limits.append(f'"{kind}";r={remaining};t={reset}')
        return {"RateLimit-Policy": self._policy, "RateLimit": ", ".join(limits)}


def _networks(spec: str) -> list | str:
    spec = spec.strip()
    if spec == "*":
        return "*"
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


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
