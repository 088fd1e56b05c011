"""``GET /metrics``: the application's Prometheus metrics (API_CONTRACT.md §4).

With ``METRICS_PORT`` unset the route answers on the public port like any other. With it set,
``start_metrics_server`` serves ``MetricsApplication`` — ``/metrics`` and nothing else — on
``HOST:METRICS_PORT``, and the same route on the public port answers 404 ``not_found``, as an
unknown path does: the route table (and so ``openapi.json``) stays the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from handlers.base import BaseHandler, NotFoundHandler
from messenger.errors import NotFound
from messenger.metrics.registry import Metrics

log = logging.getLogger("messenger")


class MetricsHandler(BaseHandler):
    requires_auth = False

    async def check_request(self) -> None:
        if not getattr(self.application, "metrics_only", False) and (
                self.services.settings.metrics_port is not None):
            raise NotFound("no such resource")  # served on METRICS_PORT only

    def get(self) -> None:
        metrics: Metrics = self.application.metrics  # type: ignore[attr-defined]
        body, content_type = metrics.render(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class MetricsApplication(tornado.web.Application):
    """What ``METRICS_PORT`` serves: ``/metrics`` of ``main`` (a ``MessengerApp``), nothing
    else (404 ``not_found``); its answers go through ``main``'s transforms (``X-Request-ID``)."""

    metrics_only = True

    def __init__(self, main: tornado.web.Application, **settings: Any) -> None:
        super().__init__([(r"/metrics$", MetricsHandler)], transforms=list(main.transforms),
                         default_handler_class=NotFoundHandler, compress_response=False,
                         serve_traceback=False, **settings)
        self.services = main.services  # type: ignore[attr-defined]
        self.trusted_proxies = main.trusted_proxies  # type: ignore[attr-defined]
        self.metrics = main.metrics  # type: ignore[attr-defined]


def start_metrics_server(main: tornado.web.Application,
                         log_function: Callable[[tornado.web.RequestHandler], None]
                         ) -> tornado.httpserver.HTTPServer | None:
    """Serve ``main``'s metrics on ``HOST:METRICS_PORT``; None when ``METRICS_PORT`` is unset."""
    settings = main.services.settings  # type: ignore[attr-defined]
    if settings.metrics_port is None:
        return None
    server = tornado.httpserver.HTTPServer(
        MetricsApplication(main, log_function=log_function),
        idle_connection_timeout=settings.http_header_timeout)
    sockets = tornado.netutil.bind_sockets(settings.metrics_port, settings.host)
    server.add_sockets(sockets)
    log.info("metrics on http://%s:%d/metrics (and not on the public port)", settings.host,
             sockets[0].getsockname()[1])
    return server
