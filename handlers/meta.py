"""Service endpoints: identity, liveness and readiness."""

from __future__ import annotations

import asyncio
import functools
import hashlib

from handlers.base import BaseHandler
from messenger.api_spec import build_spec, dump_spec
from messenger.drain import Drain
from messenger.errors import ServiceUnavailable
from messenger.store import StoreError

READY_TIMEOUT_SECONDS = 2.0
#: The check that says whether the process is shutting down (``"draining"``) or not.
NODE_CHECK = "node"


class RootHandler(BaseHandler):
    requires_auth = False

    def get(self) -> None:
        self.send_json({"app": "web-messenger", "env": self.services.settings.env})


@functools.cache
def openapi_document() -> tuple[bytes, str]:
    """``openapi.json``'s bytes and their ETag, built once per process (the spec is code)."""
    body = dump_spec(build_spec())
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


class OpenApiHandler(BaseHandler):
    """This API's OpenAPI document (API_CONTRACT.md "Service endpoints")."""

    requires_auth = False

    def get(self) -> None:
        body, etag = openapi_document()
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", "no-cache")
        if etag in self.request.headers.get("If-None-Match", ""):
            self.set_status(304)
            return
        self.set_header("Content-Type", "application/json")
        self.write(body)


class HealthHandler(BaseHandler):
    """Liveness: the process serves requests."""

    requires_auth = False

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """Readiness, three checks always reported: the store answers a ping within
    ``READY_TIMEOUT_SECONDS`` (named by its backend), the broker is connected (named by its
    backend), and the process is not shutting down (``node``: ``"draining"`` once it is). 200
    when all three are ``"ok"``; else 503 ``service_unavailable`` naming each failing one."""

    requires_auth = False

    async def get(self) -> None:
        store = self.services.store
        checks: dict[str, str] = {}
        problems: list[str] = []
        try:
            await asyncio.wait_for(store.ping(), READY_TIMEOUT_SECONDS)
            checks[store.backend] = "ok"
        except (StoreError, TimeoutError):
            checks[store.backend] = "unavailable"
            problems.append(f"{store.backend} is not answering")
        broker = self.services.realtime.broker
        if broker.connected:
            checks[broker.backend] = "ok"
        else:
            checks[broker.backend] = "unavailable"
            problems.append(f"{broker.backend} is not reachable")
        drain: Drain = self.application.drain  # type: ignore[attr-defined]
        if drain.draining:
            checks[NODE_CHECK] = "draining"
            problems.append("this node is shutting down")
        else:
            checks[NODE_CHECK] = "ok"
        if not problems:
            self.send_json({"status": "ok", "checks": checks})
            return
        self.send_json(
            {
                "status": "unavailable",
                "checks": checks,
                "error": {"code": ServiceUnavailable.code, "message": "; ".join(problems)},
            },
            status=503,
        )
