"""Assemble the Tornado application and run one server process until SIGINT/SIGTERM.

The first SIGTERM or SIGINT shuts the process down gracefully (``shut_down``): it stops
accepting at once, readiness turns 503 (``"node": "draining"``), pending long polls answer;
after ``SHUTDOWN_DRAIN_SECONDS`` every WebSocket is closed with 1001 (going away) behind what
its feed wrote, so clients resume elsewhere from their last cursor without loss; then the
services stop and the process exits 0. A second signal skips what is left of the waiting.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable
from typing import Any

import tornado.netutil
import tornado.web

from config import Settings
from handlers.base import NotFoundHandler
from handlers.metrics import start_metrics_server
from handlers.routes import ROUTES, to_pattern, url_specs
from handlers.ws import HARD_FRAME_FACTOR
from messenger.access_log import AccessFields, RouteTemplates
from messenger.capped_counts import CappedCounts
from messenger.client_address import TrustedProxies
from messenger.connection_limits import ConnectionLimiter
from messenger.drain import Drain
from messenger.gc_policy import ScheduledFullCollections
from messenger.http_server import LimitedHTTPServer
from messenger.logs import fields
from messenger.metrics.measured_store import MeasuredStore
from messenger.metrics.registry import Metrics
from messenger.redaction import redact
from messenger.request_ids import RequestIdTransform
from messenger.services import Services
from messenger.store import open_store

log = logging.getLogger("messenger")
access_log = logging.getLogger("messenger.access")
#: The route template of each request's access-log line (LOG_FORMAT=json).
ROUTE_TEMPLATES = RouteTemplates(ROUTES, to_pattern)

#: On shutdown, after the drain: the longest wait for WebSockets to finish their closing
#: handshake, and then for the other connections to close; what is left then is cut.
SHUTDOWN_GRACE_SECONDS = 5.0
BODY_CEILING_BYTES = 64 * 1024 * 1024


class MessengerApp(tornado.web.Application):
    def __init__(self, services: Services) -> None:
        super().__init__(
            url_specs(),
            default_handler_class=NotFoundHandler,
            log_function=log_request,
            transforms=[RequestIdTransform],  # X-Request-ID on every answer
            compress_response=False,
            xsrf_cookies=False,
            serve_traceback=False,
            # pings and their timeouts: the hub's sweep (messenger/realtime/keepalive.py), not
            # a ping task per connection
            websocket_max_message_size=services.settings.ws_max_frame_bytes * HARD_FRAME_FACTOR,
        )
        self.services = services
        self.trusted_proxies = TrustedProxies(services.settings.trusted_proxies)
        #: WebSocket sessions held by each user here (WS_MAX_SESSIONS_PER_USER).
        self.ws_sessions = CappedCounts(services.settings.ws_max_sessions_per_user)
        #: Whether this process is shutting down, and the long polls to answer when it does.
        self.drain = Drain()
        #: GET /metrics: this application's own registry (messenger/metrics/).
        self.metrics = Metrics(services)


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        request = handler.request
        duration_ms = 1000.0 * request.request_time()
        structured = AccessFields(handler, status, duration_ms, ROUTE_TEMPLATES,
                                  handler.application.trusted_proxies)  # type: ignore[attr-defined]
        access_log.log(
            level,
            "%d %s %s %.1fms",
            status,
            request.method,
            redact(request.uri or ""),
            duration_ms,
            extra=fields(structured),
        )


def describe_store(settings: Settings) -> str:
    if settings.uses_mongo:
        return f"store: MongoDB database {settings.mongo_db!r}"
    return f"store: embedded SQLite store at {settings.sqlite_path}; set MONGO_URL for MongoDB"


def build_server(app: MessengerApp) -> LimitedHTTPServer:
    """The HTTP server of ``app`` with its connection limits (not yet listening)."""
    settings = app.services.settings
    server = LimitedHTTPServer(
        app,
        limiter=ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip),
        trusted_proxies=app.trusted_proxies,
        header_timeout=settings.http_header_timeout,
        limit_log_interval=settings.limit_log_interval,
        max_body_size=BODY_CEILING_BYTES,
    )
    app.metrics.watch_server(server)
    return server


class ShutdownSignals:
    """SIGINT and SIGTERM: the first asks for a shutdown, any later one to hurry it."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.received)

    def received(self) -> None:
        if self.requested.is_set():
            if not self.hurry.is_set():
                log.info("second signal: not waiting any longer")
            self.hurry.set()
        else:
            self.requested.set()


async def serve(settings: Settings) -> None:
    """Run the HTTP server until SIGINT or SIGTERM, then shut down gracefully (``shut_down``)
    and stop the services."""
    # Every store call is timed for GET /metrics (MeasuredStore: the store interface as is).
    services = Services.build(settings, store=MeasuredStore(open_store(settings)))
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
    metrics_server = start_metrics_server(app, log_request)  # None: /metrics is on PORT

    signals = ShutdownSignals()
    signals.install(asyncio.get_running_loop())
    await signals.requested.wait()

    await shut_down(app, server, signals.hurry)
    if metrics_server is not None:
        metrics_server.stop()
    collections.stop()
    await services.close()
    log.info("stopped")


async def shut_down(app: MessengerApp, server: LimitedHTTPServer,
                    hurry: asyncio.Event | None = None) -> None:
    """Take this process out of service without losing any client's place.

    1. At once: no connection is accepted any more, and every answer from now on closes its
       connection (``LimitedHTTPServer.drain``); ``/api/readyz`` answers 503 and every pending
       long poll answers now, with what it has and its cursor, as does every later one
       (``Drain.begin``); WebSocket handshakes are refused.
    2. For ``SHUTDOWN_DRAIN_SECONDS`` the open WebSocket sessions go on as before.
    3. Each WebSocket is closed with 1001 behind every frame written to it (``go_away``);
       the wait for them to close, then for the other connections, lasts at most
       ``SHUTDOWN_GRACE_SECONDS`` each; what is still open then is cut.

    Setting ``hurry`` (a second signal) ends every wait at once: the close frames are still
    written, the sockets are cut right after. The services are left running (the caller
    stops them).
    """
    hurry = hurry or asyncio.Event()
    drain_for = app.services.settings.shutdown_drain
    log.info("shutting down: draining for %gs (a second signal skips the wait)", drain_for)
    server.drain()
    server.stop_summaries()
    app.drain.begin()
    await _wait(None, drain_for, hurry)

    cut = await close_websockets(app, SHUTDOWN_GRACE_SECONDS, hurry)
    if cut:
        log.warning("%d WebSockets cut without their closing handshake", cut)
    if not await _wait(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS, hurry):
        log.warning("connections still open after %gs; closing anyway", SHUTDOWN_GRACE_SECONDS)


async def close_websockets(app: MessengerApp, bound: float, hurry: asyncio.Event) -> int:
    """Close every WebSocket session with 1001 and wait until each has closed, at most
    ``bound`` seconds (or until ``hurry``); those still open then are cut. A session that
    opens meanwhile (its handshake began before the drain) is closed the same way. Returns how
    many were cut."""
    hub = app.services.realtime
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while sessions := hub.websocket_sessions():
        for session in sessions:
            session.go_away()
        closed = asyncio.gather(*(session.wait_closed() for session in sessions))
        if not await _wait(closed, deadline - loop.time(), hurry):
            break
    left = hub.websocket_sessions()
    for session in left:
        session.abort()
    return len(left)


async def _wait(work: Awaitable[object] | None, at_most: float, hurry: asyncio.Event) -> bool:
    """Wait for ``work`` (None: for nothing but the time) at most ``at_most`` seconds, or until
    ``hurry`` is set; True if ``work`` finished. ``work`` is cancelled if it did not."""
    pending: set[asyncio.Future[Any]] = {asyncio.ensure_future(hurry.wait())}
    task = None if work is None else asyncio.ensure_future(work)
    if task is not None:
        pending.add(task)
    try:
        if not hurry.is_set() and at_most > 0:
            await asyncio.wait(pending, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        return task is not None and task.done() and not task.cancelled()
    finally:
        for future in pending:
            if not future.done():
                future.cancel()
