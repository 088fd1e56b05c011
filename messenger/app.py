"""Assemble the Tornado application and run one server process until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import tornado.netutil
import tornado.web

from config import Settings
from handlers.base import NotFoundHandler
from handlers.routes import url_specs
from handlers.ws import HARD_FRAME_FACTOR
from messenger.capped_counts import CappedCounts
from messenger.client_address import TrustedProxies
from messenger.connection_limits import ConnectionLimiter
from messenger.gc_policy import ScheduledFullCollections
from messenger.http_server import LimitedHTTPServer
from messenger.redaction import redact
from messenger.services import Services

log = logging.getLogger("messenger")
access_log = logging.getLogger("messenger.access")

SHUTDOWN_GRACE_SECONDS = 5.0
BODY_CEILING_BYTES = 64 * 1024 * 1024


class MessengerApp(tornado.web.Application):
    def __init__(self, services: Services) -> None:
        super().__init__(
            url_specs(),
            default_handler_class=NotFoundHandler,
            log_function=log_request,
            compress_response=False,
            xsrf_cookies=False,
            serve_traceback=False,
            websocket_ping_interval=services.settings.ws_ping_interval,
            websocket_ping_timeout=services.settings.ws_ping_timeout,
            websocket_max_message_size=services.settings.ws_max_frame_bytes * HARD_FRAME_FACTOR,
        )
        self.services = services
        self.trusted_proxies = TrustedProxies(services.settings.trusted_proxies)
        #: WebSocket sessions held by each user here (WS_MAX_SESSIONS_PER_USER).
        self.ws_sessions = CappedCounts(services.settings.ws_max_sessions_per_user)


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        request = handler.request
        access_log.log(
            level,
            "%d %s %s %.1fms",
            status,
            request.method,
            redact(request.uri or ""),
            1000.0 * request.request_time(),
        )


def describe_store(settings: Settings) -> str:
    if settings.uses_mongo:
        return f"store: MongoDB database {settings.mongo_db!r}"
    return f"store: embedded SQLite store at {settings.sqlite_path}; set MONGO_URL for MongoDB"


def build_server(app: MessengerApp) -> LimitedHTTPServer:
    """The HTTP server of ``app`` with its connection limits (not yet listening)."""
    settings = app.services.settings
    return LimitedHTTPServer(
        app,
        limiter=ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip),
        trusted_proxies=app.trusted_proxies,
        header_timeout=settings.http_header_timeout,
        limit_log_interval=settings.limit_log_interval,
        max_body_size=BODY_CEILING_BYTES,
    )


async def serve(settings: Settings) -> None:
    """Run the HTTP server until SIGINT or SIGTERM, then stop cleanly."""
    services = Services.build(settings)
    await services.start()
    # Long-lived objects made at start (modules, settings, the app) leave the collector's
    # view; with many sockets open, collections otherwise dominate fan-out time.
    gc.freeze()
    collections = ScheduledFullCollections(settings.gc_full_collection_interval).start()
    app = MessengerApp(services)
    # Handlers enforce MAX_BODY_BYTES with a JSON 413 (by Content-Length before reading, or as
    # chunks arrive). This ceiling only bounds what Tornado reads of one chunk before that check.
    server = build_server(app)
    sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    log.info("messenger listening on http://%s:%d; %s; ENV=%s",
             settings.host, port, describe_store(settings), settings.env)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down")
    server.stop()
    server.stop_summaries()
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    except TimeoutError:
        log.warning("connections still open after %.0fs; closing anyway", SHUTDOWN_GRACE_SECONDS)
    collections.stop()
    await services.close()
    log.info("stopped")
