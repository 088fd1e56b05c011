"""Service endpoints: identity, liveness and readiness."""

from __future__ import annotations

import asyncio

from handlers.base import BaseHandler
from messenger.store import StoreError

READY_TIMEOUT_SECONDS = 2.0


class RootHandler(BaseHandler):
    requires_auth = False

    def get(self) -> None:
        self.send_json({"app": "web-messenger", "env": self.services.settings.env})


class HealthHandler(BaseHandler):
    """Liveness: the process serves requests."""

    requires_auth = False

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """Readiness: the database answers within a short timeout."""

    requires_auth = False

    async def get(self) -> None:
        store = self.services.store
        try:
            await asyncio.wait_for(store.ping(), READY_TIMEOUT_SECONDS)
        except (StoreError, TimeoutError):
            self.send_json(
                {
                    "status": "unavailable",
                    "checks": {store.backend: "unavailable"},
                    "error": {
                        "code": "service_unavailable",
                        "message": f"{store.backend} is not answering",
                    },
                },
                status=503,
            )
            return
        self.send_json({"status": "ok", "checks": {store.backend: "ok"}})
