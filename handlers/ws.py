"""``GET /ws?token=<access JWT>[&last_event_id=N]``: the WebSocket session of one user.

The handshake is refused with a JSON error — 401 for a missing, bad or expired token, 403 for
an ``Origin`` that is neither this host nor in ``ALLOWED_ORIGINS``, 422 for a bad
``last_event_id``, 400 for a plain HTTP request — before any socket exists. Once open, the
session is a ``Session`` of the user's actor: it is first sent ``ready`` and what it missed,
then live events. Client frames are parsed by ``messenger.protocol`` and handed to the hub; a
bad frame gets an ``error`` frame and the socket stays usable. Limits (frame size, frames per
second, idle time, bytes queued for a client that does not read) come from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.websocket

from actors.runtime import ActorError
from handlers.base import BaseHandler
from messenger import events, protocol, validation
from messenger.errors import (
    ApiError,
    InternalError,
    OriginNotAllowed,
    RateLimited,
    ServiceUnavailable,
    TooManySessions,
    Unauthorized,
    UpgradeRequired,
)
from messenger.events import Event
from messenger.origins import origin_allowed
from messenger.ratelimit import TokenBucket
from messenger.store import StoreUnavailable

if TYPE_CHECKING:
    from actors.hub import RealtimeHub

log = logging.getLogger("messenger.ws")

#: Tornado closes (1009) frames this many times over WS_MAX_FRAME_BYTES without reading them;
#: up to that, an oversized frame only gets an error frame.
HARD_FRAME_FACTOR = 4


class WebSocketHandler(tornado.websocket.WebSocketHandler):
    """One user's WebSocket connection; also that connection's ``Session``."""

    user_id: str
    token_expires_at: float

    def initialize(self) -> None:
        self.id = uuid.uuid4().hex
        self.cursor = 0
        self.live = False
        self.closed = False
        self.last_frame_at = time.monotonic()
        self._after: int | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._holds_quota = False
        settings = self.application.services.settings  # type: ignore[attr-defined]
        self._bucket = TokenBucket(settings.ws_messages_per_second, settings.ws_burst)

    @property
    def hub(self) -> RealtimeHub:
        return self.application.services.realtime  # type: ignore[attr-defined, no-any-return]

    # -- handshake -------------------------------------------------------------------------
    async def prepare(self) -> None:
        settings = self.application.services.settings  # type: ignore[attr-defined]
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise UpgradeRequired("this endpoint speaks WebSocket only (Upgrade: websocket)")
        token = self.get_query_argument("token", None)
        if not token:
            raise Unauthorized("a token query parameter with an access token is required")
        claims = await self.application.services.authenticate(token)  # type: ignore
        self.user_id = claims.user_id
        self.token_expires_at = claims.expires_at.timestamp()
        origin = self.request.headers.get("Origin")
        if origin is not None and not origin_allowed(
            origin, self.request.host, settings.allowed_origins
        ):
            raise OriginNotAllowed("this origin may not open a WebSocket here")
        raw = self.get_query_argument("last_event_id", None)
        if raw is not None:
            self._after = validation.query_int(raw, "last_event_id", default=0, minimum=0,
                                               maximum=2**53)
        quota = self.application.ws_sessions  # type: ignore[attr-defined]
        if not quota.acquire(self.user_id):
            raise TooManySessions(
                f"this user already has {quota.limit} WebSocket sessions open here;"
                " close one first", limit=quota.limit,
            )
        self._holds_quota = True

    def _release_quota(self) -> None:
        if self._holds_quota:
            self._holds_quota = False
            self.application.ws_sessions.release(self.user_id)  # type: ignore[attr-defined]

    def on_finish(self) -> None:
        if self.get_status() != 101:  # the handshake failed after prepare()
            self._release_quota()

    def check_origin(self, origin: str) -> bool:
        return True  # checked in prepare(), where the refusal can be a JSON error

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        if self.ws_connection is None and not self._finished:
            tornado.web.RequestHandler.send_error(self, status_code, **kwargs)
        elif self.ws_connection is not None:
            self.ws_connection.stream.close()

    write_error = BaseHandler.write_error  # type: ignore[assignment]
    _api_error = staticmethod(BaseHandler._api_error)
    allowed_methods = BaseHandler.allowed_methods
    log_exception = BaseHandler.log_exception  # type: ignore[assignment]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def get_compression_options(self) -> None:
        return None  # permessage-deflate stays off (memory and compression attacks)

    # -- session -----------------------------------------------------------------------------
    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        settings = self.application.services.settings  # type: ignore[attr-defined]
        if self.ws_connection is not None:
            stream = self.ws_connection.stream
            # Past this many bytes queued in the process, a write raises StreamBufferFullError
            # and the client that does not read is cut off (it resumes from its cursor).
            stream.max_write_buffer_size = settings.ws_send_buffer_bytes
            if settings.ws_socket_sndbuf:
                with contextlib.suppress(OSError):
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                             settings.ws_socket_sndbuf)
        hub = self.hub
        delay = self.token_expires_at - time.time()
        self._expiry_timer = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._token_expired
        )
        hub.track(self)
        try:
            await hub.open_session(self.user_id, self)
            self.cursor = hub.head if self._after is None else self._after
            self.write_control("ready", user_id=self.user_id, session_id=self.id)
            await hub.catch_up(self.user_id, self, self._resync)
        except Exception as exc:
            if not self.closed:
                log.warning("closing session of %s that could not start: %r", self.user_id, exc)
                self.close(1011, "server error")

    def _resync(self) -> None:
        self.write_control("resync_required")

    async def write_backlog(self, batch: list[Event]) -> None:
        """Write missed events at the pace the client reads them (no slow-consumer cut)."""
        for event in batch:
            conn = self.ws_connection
            if conn is None or self.closed or conn.is_closing():
                return
            if event.id <= self.cursor:
                continue
            self.cursor = event.id
            try:
                conn.stream.write(event.ws_frame_for(self.id))
                if conn.stream.writing():  # the kernel's buffer is full: wait until it drains
                    await conn.stream.write(b"")  # resolves once our buffer is flushed
            except tornado.iostream.StreamClosedError:
                return
            except tornado.iostream.StreamBufferFullError:
                self.disconnect("slow consumer: send buffer full")
                return

    def write_events(self, batch: list[Event]) -> None:
        conn = self.ws_connection
        if conn is None or self.closed or conn.is_closing():
            return
        cursor = self.cursor
        frames = [event.ws_frame_for(self.id) for event in batch if event.id > cursor]
        if not frames:
            return
        self.cursor = max(cursor, batch[-1].id)
        self._write_raw(frames[0] if len(frames) == 1 else b"".join(frames))

    def write_control(self, kind: str, **fields: Any) -> None:
        self._write_raw(events.ws_text_frame(events.control(kind, self.cursor, **fields)))

    def _write_raw(self, data: bytes) -> None:
        conn = self.ws_connection
        if conn is None or self.closed or conn.is_closing():
            return
        try:
            conn.stream.write(data)
        except tornado.iostream.StreamClosedError:
            return
        except tornado.iostream.StreamBufferFullError:
            self.disconnect("slow consumer: send buffer full")

    def disconnect(self, reason: str) -> None:
        if self.closed:
            return
        log.info("disconnecting session of %s: %s", self.user_id, reason)
        conn = self.ws_connection
        if conn is not None:
            conn.stream.close()  # no closing handshake: the client is not reading

    def _token_expired(self) -> None:
        if not self.closed:
            self.close(1008, "token expired")

    def check_idle(self, now: float, idle_timeout: float) -> None:
        if not self.closed and now - self.last_frame_at > idle_timeout:
            self.close(1001, "idle timeout")

    def on_ping(self, data: bytes) -> None:
        self.last_frame_at = time.monotonic()

    def on_pong(self, data: bytes) -> None:
        self.last_frame_at = time.monotonic()

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release_quota()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        hub = self.hub
        hub.untrack(self)
        hub.close_session(self.user_id, self)
        for task in self._tasks:
            task.cancel()

    # -- client frames -----------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        self.last_frame_at = time.monotonic()
        settings = self.application.services.settings  # type: ignore[attr-defined]
        try:
            frame = protocol.parse_client_frame(
                message, max_bytes=settings.ws_max_frame_bytes,
                max_text=settings.max_message_length,
                max_attachments=settings.max_attachments_per_message,
                max_depth=settings.json_max_depth,
            )
        except protocol.FrameError as exc:
            self.write_error_frame(exc.error, exc.ref)
            return
        if not self._bucket.consume():
            self.write_error_frame(RateLimited(
                f"more than {settings.ws_messages_per_second:g} frames per second"
            ), frame.ref)
            return
        if isinstance(frame, protocol.Ping):
            self.write_control("pong", ref=frame.ref)
            return
        task = asyncio.get_running_loop().create_task(self._run(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, frame: protocol.ClientFrame) -> None:
        hub = self.hub
        try:
            if isinstance(frame, protocol.SendMessage):
                outcome = await hub.send(self.user_id, frame.chat_id, frame.text,
                                         frame.client_msg_id, frame.attachment_ids, self.id)
                if not outcome.created:  # a retry: the ack again, nothing new to anyone
                    self.write_control("message_sent", client_msg_id=frame.client_msg_id,
                                       message=outcome.message.to_json())
            elif isinstance(frame, protocol.Typing):
                await hub.set_typing(self.user_id, frame.chat_id, frame.is_typing)
            elif isinstance(frame, protocol.MarkRead):
                await hub.mark_read(self.user_id, frame.chat_id, frame.seq)
        except ApiError as error:
            self.write_error_frame(error, frame.ref)
        except StoreUnavailable:
            self.write_error_frame(
                ServiceUnavailable("the database is not answering; try again shortly"),
                frame.ref)
        except ActorError:  # overloaded, timed out, or restarting after a failure
            self.write_error_frame(ServiceUnavailable("busy; try again shortly"), frame.ref)
        except Exception:
            log.exception("frame %s from %s failed", type(frame).__name__, self.user_id)
            self.write_error_frame(InternalError("internal server error"), frame.ref)

    def write_error_frame(self, error: ApiError, ref: str | None) -> None:
        fields: dict[str, Any] = {"code": error.code, "message": error.message, "ref": ref}
        fields.update(error.details)
        self.write_control("error", **fields)
