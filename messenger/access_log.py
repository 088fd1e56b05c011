"""What a request's access-log line says in ``LOG_FORMAT=json`` (API_CONTRACT.md §11).

``AccessFields`` builds the structured fields of one finished request — ``request_id``,
``method``, ``route`` (the route *template*, e.g. ``/api/chats/{chat_id}``), ``status``,
``duration_ms``, ``client_address``, and ``user_id`` when the request was authenticated — and
the line's message, ``GET /api/chats/{chat_id} 200 1.2ms``. A path no route matches has
``route: null`` and its ``path``, redacted (``messenger.redaction``). Nothing else of the
request is read: no query string, no header but ``X-Request-ID`` and ``X-Forwarded-For`` (for
the address, from trusted proxies only), no body, so no token or password can reach the line.

``RouteTemplates`` finds the template a handler was routed by: by its class when one route
uses that class, else by matching the path against that class's routes in table order, as
Tornado's router does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import tornado.web

from messenger import request_ids
from messenger.client_address import TrustedProxies
from messenger.redaction import redact

type Routes = Sequence[tuple[str, type[tornado.web.RequestHandler]]]


class RouteTemplates:
    """Which route template of ``routes`` a request was handled by."""

    def __init__(self, routes: Routes, to_pattern: Callable[[str], str]) -> None:
        by_class: dict[type, list[tuple[re.Pattern[str], str]]] = {}
        for template, handler_class in routes:
            by_class.setdefault(handler_class, []).append((re.compile(to_pattern(template)),
                                                           template))
        self._only = {cls: found[0][1] for cls, found in by_class.items() if len(found) == 1}
        self._several = {cls: found for cls, found in by_class.items() if len(found) > 1}

    def template(self, handler_class: type, path: str) -> str | None:
        """The template of the route that sent ``path`` to ``handler_class``; None for none."""
        only = self._only.get(handler_class)
        if only is not None:
            return only
        for pattern, template in self._several.get(handler_class, ()):
            if pattern.match(path):
                return template
        return None


class AccessFields:
    """The access-log fields of one request (called when the line is written)."""

    __slots__ = ("_duration_ms", "_handler", "_proxies", "_routes", "_status")

    def __init__(self, handler: tornado.web.RequestHandler, status: int, duration_ms: float,
                 routes: RouteTemplates, proxies: TrustedProxies) -> None:
        self._handler = handler
        self._status = status
        self._duration_ms = duration_ms
        self._routes = routes
        self._proxies = proxies

    def __call__(self) -> dict[str, Any]:
        request = self._handler.request
        method = request.method or ""
        route = self._routes.template(type(self._handler), request.path)
        shown = route if route is not None else redact(request.path)
        fields: dict[str, Any] = {
            "message": f"{method} {shown} {self._status} {self._duration_ms:.1f}ms",
            "request_id": request_ids.request_id(request),
            "method": method,
            "route": route,
            "status": self._status,
            "duration_ms": round(self._duration_ms, 3),
            "client_address": self._proxies.client(
                request.remote_ip or "", request.headers.get("X-Forwarded-For")),
        }
        if route is None:
            fields["path"] = shown
        user_id = getattr(self._handler, "user_id", None)
        if isinstance(user_id, str):
            fields["user_id"] = user_id
        return fields
