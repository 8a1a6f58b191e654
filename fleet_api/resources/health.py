"""GET /health for load balancers: 200 while the store answers, 503 when not."""

from __future__ import annotations

import logging

import falcon

from fleet_api.openapi import ok, operation, ref
from fleet_api.schemas import HealthStatus
from fleet_api.store import Store

log = logging.getLogger(__name__)


class Health:
    def __init__(self, store: Store) -> None:
        self._store = store

    @operation(
        "meta",
        "health",
        responses={200: ok("The store answers.", ref(HealthStatus), ("Cache-Control",))},
        errors=(503,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Health check for load balancers"""
        resp.cache_control = ["no-store"]
        try:
            self._store.ping()
        except Exception:
            log.exception("health check: the store does not answer")
            raise falcon.HTTPServiceUnavailable(description="The store does not answer.") from None
        resp.media = {"status": "ok"}
