"""`python -m fleet_api.purge`: forget what has expired, now, on demand.

The stores already sweep as they go (a write of a kind drops that kind's
expired rows, at most once a minute: the policy in fleet_api/store/base.py);
this is the on-demand sweep for a quiet deployment or a cron job, like
simplejwt's `flushexpiredtokens`. It reads the same settings as the server
(FLEET_STORE, ...), so it purges the store the server uses.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from fleet_api.settings import SECRET_ENV, Settings
from fleet_api.store import Store, open_store


def purge(store: Store, now: float) -> dict[str, int]:
    """Rows removed, by kind."""
    return store.purge_expired(now)


def main(environ=None, clock: Callable[[], float] = time.time) -> int:
    env = dict(os.environ if environ is None else environ)
    env.setdefault(SECRET_ENV, "unused: the purge signs and verifies nothing")  # no ephemeral-key warning
    settings = Settings.from_env(env)
    store = open_store(settings.store_url, clock)
    try:
        for kind, count in purge(store, clock()).items():
            print(f"{kind}: {count} expired removed")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
