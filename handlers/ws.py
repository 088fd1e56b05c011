"""``GET /ws?token=<access JWT>[&last_event_id=<cursor>]``: the WebSocket session of one user.

The handshake is refused with a JSON error — 401 for a missing, bad or expired token, 403 for
an ``Origin`` that is neither this host nor in ``ALLOWED_ORIGINS``, 422 for a cursor this
server did not make, 400 for a plain HTTP request — before any socket exists. Once open, the
session counts for the user's presence and has a feed (``messenger/realtime/feed.py``), whose
outlet it is: it is first sent ``ready`` and what it missed, then live events. Client frames
are parsed by ``messenger.realtime.protocol`` and handed to the hub; a
bad frame gets an ``error`` frame and the socket stays usable. Limits (frame size, frames per
second, idle time, bytes queued for a client that does not read) come from settings.

On shutdown (``messenger/app.py``) the handshake is refused with 503 ``service_unavailable``
while the process drains, and each open session is closed by ``go_away()``: 1001 with the
reason ``server shutting down``, behind every frame its feed has written.
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
from messenger import request_ids
from messenger.clock import isoformat, utcnow
from messenger.errors import (
    ApiError,
    InternalError,
    OriginNotAllowed,
    RateLimited,
    ServiceUnavailable,
    TooManySessions,
    Unauthorized,
    UpgradeRequired,
    ValidationFailed,
)
from messenger.origins import origin_allowed
from messenger.ratelimit import TokenBucket
from messenger.realtime import frames, protocol
from messenger.realtime.feed import Feed
from messenger.realtime.keepalive import CLOSE_CODES, Action, Keepalive, KeepalivePolicy
from messenger.realtime.resume import CursorError, OutdatedCursor, ResumeCursor
from messenger.store import StoreUnavailable

if TYPE_CHECKING:
    from actors.hub import RealtimeHub

log = logging.getLogger("messenger.ws")

#: Tornado closes (1009) frames this many times over WS_MAX_FRAME_BYTES without reading them;
#: up to that, an oversized frame only gets an error frame.
HARD_FRAME_FACTOR = 4
#: The close code and reason of a session closed because the process shuts down.
GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down"


class WebSocketHandler(tornado.websocket.WebSocketHandler):
    """One user's WebSocket connection: a ``Session`` for presence and its feed's ``Outlet``."""

    # The session's own state lives in slots. An instance's attribute names share one key
    # table per class up to 30 names; past that each instance gets a dict with keys of its
    # own (~1.6 KiB, and every attribute read and method lookup goes through it). Tornado
    # itself sets 27 names on a WebSocket handler (seven of them methods it disables after the
    # handshake), so ours go in slots, which do not count.
    __slots__ = (
        "_bucket",
        "_conn",
        "_gone",
        "_holds_quota",
        "_ready_cursor",
        "_resume",
        "_socket",
        "_tasks",
        "closed",
        "feed",
        "id",
        "keepalive",
        "token_expires_at",
        "user_id",
    )

    user_id: str
    token_expires_at: float

    def initialize(self) -> None:
        self.id = uuid.uuid4().hex
        self.keepalive = Keepalive(time.monotonic(), self.hub.keepalive_policy)
        self.closed = False
        self.feed: Feed | None = None
        #: a reconnect's cursor, until the feed started from it
        self._resume: ResumeCursor | None = None
        self._ready_cursor = ""
        self._tasks: set[asyncio.Task[None]] | None = None  # made with the first one
        self._holds_quota = False
        self._gone: asyncio.Future[None] | None = None  # made by wait_closed, set by on_close
        self._bucket: TokenBucket | None = None  # made by the first client frame
        #: Once open: the connection, and the socket a write may go to directly (None for a
        #: TLS stream, whose socket is wrapped). Kept here for the hot path (``write_frame``).
        self._conn: tornado.websocket.WebSocketProtocol | None = None
        self._socket: socket.socket | None = None

    @property
    def session_id(self) -> str:
        return self.id

    @property
    def _stream(self) -> tornado.iostream.IOStream | None:
        """The connection's stream once open (None before, and after the close)."""
        conn = self.ws_connection
        return conn.stream if conn is not None else None

    @property
    def hub(self) -> RealtimeHub:
        return self.application.services.realtime  # type: ignore[attr-defined, no-any-return]

    # -- handshake -------------------------------------------------------------------------
    async def prepare(self) -> None:
        settings = self.application.services.settings  # type: ignore[attr-defined]
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise UpgradeRequired("this endpoint speaks WebSocket only (Upgrade: websocket)")
        if self.application.drain.draining:  # type: ignore[attr-defined]
            raise ServiceUnavailable("this server is shutting down; connect again")
        token = self.get_query_argument("token", None)
        if not token:
            raise Unauthorized("a token query parameter with an access token is required")
        claims = await self.application.services.authenticate(  # type: ignore[attr-defined]
            token, remember=False)
        self.user_id = claims.user_id
        self.token_expires_at = claims.expires_at.timestamp()
        origin = self.request.headers.get("Origin")
        if origin is not None and not origin_allowed(
            origin, self.request.host, settings.allowed_origins
        ):
            raise OriginNotAllowed("this origin may not open a WebSocket here")
        resume = resume_cursor(self.get_query_argument("last_event_id", None))
        if resume is not None:
            self._resume = resume
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
        self._forget_handshake()
        settings = self.application.services.settings  # type: ignore[attr-defined]
        if self.ws_connection is not None:
            self._conn = self.ws_connection
            stream = self.ws_connection.stream
            if type(stream) is tornado.iostream.IOStream:
                self._socket = stream.socket
            # Past this many bytes queued in the process, a write raises StreamBufferFullError
            # and the client that does not read is cut off (it resumes from its cursor).
            stream.max_write_buffer_size = settings.ws_send_buffer_bytes
            if settings.ws_socket_sndbuf:
                with contextlib.suppress(OSError):
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                             settings.ws_socket_sndbuf)
        hub = self.hub
        hub.track(self)  # from here the hub's sweep closes it once its token has expired
        try:
            await hub.open_session(self.user_id, self)
            # taken before the feed subscribes: a presence change after it comes after it
            online = await hub.online_contacts(self.user_id)
            taken = isoformat(utcnow())
            # ready goes out before anything the feed writes: nothing runs between the feed's
            # start and this write (its catch-up is a task that starts after it)
            self.feed, self._ready_cursor, resynced = await hub.open_feed(
                self.user_id, self, self._resume)
            self._resume = None  # the feed has started from it
            self.write_control("ready", user_id=self.user_id, session_id=self.id)
            for contact in online:
                self.write_control("presence", user_id=contact, status="online",
                                   last_seen=taken)
            if resynced:
                self.resync(self._ready_cursor)
            self._ready_cursor = ""  # the feed's cursor from here on
            if self.closed:
                await self.feed.close()
        except Exception as exc:
            if not self.closed:
                log.warning("closing session of %s that could not start: %r", self.user_id, exc)
                self.close(1011, "server error")

    @property
    def cursor(self) -> str:
        """The session's position: what a control frame carries as its ``event_id``."""
        return self.feed.cursor_text() if self.feed is not None else self._ready_cursor

    # -- Outlet ------------------------------------------------------------------------------
    #: The feed gives this outlet WebSocket frames, ready to write.
    websocket = True

    def write_frames(self, batch: list[bytes]) -> None:
        self.write_frame(batch[0] if len(batch) == 1 else b"".join(batch))

    async def write_paced(self, batch: list[bytes]) -> None:
        """Write missed events at the pace the client reads them (no slow-consumer cut)."""
        for frame in batch:
            conn = self.ws_connection
            if conn is None or self.closed or conn.is_closing():
                return
            try:
                conn.stream.write(frame)
                if conn.stream.writing():  # the kernel's buffer is full: wait until it drains
                    await conn.stream.write(b"")  # resolves once our buffer is flushed
            except tornado.iostream.StreamClosedError:
                return
            except tornado.iostream.StreamBufferFullError:
                self.disconnect("slow consumer: send buffer full")
                return

    def resync(self, cursor: str) -> None:
        self.write_frame(frames.ws_text_frame(frames.control("resync_required", cursor)))

    def write_control(self, kind: str, **fields: Any) -> None:
        if self.feed is not None:
            self.feed.flush()  # its cursor counts them: they go first
        self.write_frame(frames.ws_text_frame(frames.control(kind, self.cursor, **fields)))

    def write_frame(self, data: bytes) -> None:
        """Write WebSocket frames (bytes ready for the wire) now, in order behind everything
        written before; nothing once the connection is closing."""
        conn = self._conn
        # (the connection's flags, not ``is_closing()``: two calls fewer on the hot path)
        if conn is None or self.closed or conn.server_terminated or conn.client_terminated:
            return
        stream = conn.stream
        sock = self._socket
        if sock is not None and not stream.writing():
            # Nothing queued in the stream: hand the frames to the kernel at once (the stream's
            # own write costs a future and several calls per write, the bulk of a fan-out to
            # thousands of sockets). What the kernel does not take goes to the stream, which
            # keeps the order and the WS_SEND_BUFFER_BYTES limit from there on. A closed
            # stream's socket is closed too: its send fails.
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                stream.close()  # reset or gone: on_close follows
                return
            if sent == len(data):
                return
            data = data[sent:]
        try:
            stream.write(data)
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

    # -- shutdown ------------------------------------------------------------------------------
    def go_away(self) -> None:
        """Close with 1001 (going away) because the process shuts down: first the frames the
        feed keeps for the end of this loop turn, then the close frame behind everything
        written so far, so the ``event_id`` of the last frame the client gets covers all it
        got. Nothing is written after it. Does nothing once the session is closing."""
        if self.closed or self.ws_connection is None or self.ws_connection.is_closing():
            return
        if self.feed is not None:
            self.feed.flush()
        self.close(GOING_AWAY, SHUTDOWN_REASON)

    async def wait_closed(self) -> None:
        """Return once the socket has closed (``on_close`` has run)."""
        if self.closed:
            return
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._gone)

    def abort(self) -> None:
        """Close the socket now, without waiting for the client's closing handshake."""
        if not self.closed and self._stream is not None:
            self._stream.close()

    def _forget_handshake(self) -> None:
        """The handshake is answered (and logged): drop what only it needed. The query holds
        the access token, which the session must not keep in memory for its whole life, and its
        parsed copies cost ~1.5 KiB per session; the rest is another ~2.5 KiB."""
        # Tornado keeps its template namespace (``ui``) for the session's life, in case the
        # handler renders a template; this one never does.
        self.ui = None
        request = self.request
        request.query_arguments.clear()
        request.arguments.clear()
        request.uri = request.path
        request.query = ""
        # The HTTP connection of the handshake, detached from the socket: it keeps the request
        # line (with the token) and the headers as they came, ~2 KiB, until it is dropped.
        request.connection = None
        # Read during the handshake only. Emptied, not replaced: Tornado's handshake coroutine
        # holds the same object for the session's life (~1 KiB of header values).
        request.headers.clear()
        request_ids.forget(request)  # logged already; the session does not need it

    def check_alive(self, now: float, wall: float, policy: KeepalivePolicy) -> None:
        """The hub's sweep (``policy.period``): ping, or close once the token has expired, the
        client has been silent too long or a ping went unanswered (messenger/realtime/
        keepalive.py). One sweep for every session instead of a timer and a ping task each."""
        if self.closed:
            return
        action = self.keepalive.check(now, wall, self.token_expires_at, policy)
        if action is Action.NONE:
            return
        if action is Action.PING:
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                self.ping()
            return
        self.close(CLOSE_CODES[action], action.value)

    def on_ping(self, data: bytes) -> None:
        self.keepalive.heard(time.monotonic())

    def on_pong(self, data: bytes) -> None:
        self.keepalive.pong(time.monotonic())

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self._release_quota()
        hub = self.hub
        hub.untrack(self)
        hub.close_session(self.user_id, self)
        for task in self._tasks or ():
            task.cancel()
        if self.feed is not None:
            feed, self.feed = self.feed, None
            self._spawn(feed.close())

    # -- client frames -----------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        self.keepalive.heard(time.monotonic())
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
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = TokenBucket(settings.ws_messages_per_second,
                                                settings.ws_burst)
        if not bucket.consume():
            self.write_error_frame(RateLimited(
                f"more than {settings.ws_messages_per_second:g} frames per second"
            ), frame.ref)
            return
        if isinstance(frame, protocol.Ping):
            self.write_control("pong", ref=frame.ref)
            return
        self._spawn(self._run(frame))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, frame: protocol.SendMessage) -> None:
        """The ack comes through the feed with the message's event (``Feed.expect_ack``: also
        when that event is read back from the store), or from here when the event is not
        this send's: a retry (nothing new to anyone), or another process wrote it first."""
        feed = self.feed
        if feed is not None:
            feed.expect_ack(frame.client_msg_id)
        outcome = None
        try:
            outcome = await self.hub.send(self.user_id, frame.chat_id, frame.text,
                                          frame.client_msg_id, frame.attachment_ids, self.id)
        finally:
            if feed is not None and (outcome is None or not outcome.announced):
                feed.ack_settled(frame.client_msg_id)  # failed, or answered from here
        if not outcome.announced:
            self.write_control("message_sent", client_msg_id=frame.client_msg_id,
                               message=outcome.message.to_json())

    async def _run(self, frame: protocol.ClientFrame) -> None:
        hub = self.hub
        try:
            if isinstance(frame, protocol.SendMessage):
                await self._send(frame)
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



def resume_cursor(raw: str | None) -> ResumeCursor | None:
    """The ``last_event_id`` query argument as a cursor (422 if this server did not make it;
    one of another version is served as ``resync_required``)."""
    if raw is None:
        return None
    try:
        return ResumeCursor.decode(raw)
    except OutdatedCursor:
        return ResumeCursor("")  # no store has an empty epoch: resync_required
    except CursorError as exc:
        raise ValidationFailed("last_event_id", f"last_event_id: {exc}") from None
