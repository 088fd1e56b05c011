"""The HTTP server: Tornado's, with connection limits and a guard in front of every request.

* **Connection caps** (``MAX_CONNECTIONS``, ``MAX_CONNECTIONS_PER_IP``): checked as a connection
  is accepted, before anything is read; a refused connection gets one JSON response (503
  ``server_busy`` or 429 ``too_many_connections``) and is closed. ``MAX_CONNECTIONS`` stays
  below the file-descriptor limit, so accepting never fails with ``EMFILE``. A connection from a
  ``TRUSTED_PROXIES`` peer is counted per address under the client its requests name in
  ``X-Forwarded-For``, request by request. A WebSocket keeps its slot until its socket closes.
* **Header timeout** (``HTTP_HEADER_TIMEOUT_SECONDS``): a connection that has not sent a
  complete request header this long after opening, or after its previous response, is closed.
* **Framing** (:mod:`messenger.http_framing`): a request with an ambiguous body length gets 400
  and the connection is closed before anything behind it is read.
* **Nothing runs after a close**: once the server has decided to close a connection (an answer
  given before the request's body was read), requests the client pipelined behind it are
  dropped unread instead of run with their answers lost, and that answer says
  ``Connection: close``.
* **No log storm**: refusals are tallied and logged as one summary line per
  ``LIMIT_LOG_INTERVAL_SECONDS``.
* **Drain** (``drain()``, on shutdown): no connection is accepted any more (the listening
  sockets close: a new connection is refused, and a load balancer sends it elsewhere), and every
  request read from then on is answered with ``Connection: close`` and its connection closed
  after the answer. Requests already read when it began keep their connection until the
  shutdown closes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable
from typing import Any

import tornado.httpserver
from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

from messenger.client_address import TrustedProxies
from messenger.connection_limits import ConnectionLimiter, Refusal
from messenger.errors import ApiError, ServerBusy, TooManyConnections
from messenger.http_framing import error_response, framing_error

log = logging.getLogger("messenger.connections")

#: After an error answer that closes the connection, read and discard what the client still
#: sends for at most this long / this many bytes, so its unread data does not turn our close
#: into a reset that destroys the answer before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20

_REFUSALS: dict[Refusal, ApiError] = {
    Refusal.SERVER_FULL: ServerBusy("the server holds as many connections as it can; retry"),
    Refusal.ADDRESS_FULL: TooManyConnections(
        "too many connections from this address; close some and retry"
    ),
}
_REFUSAL_BYTES = {why: error_response(error, retry_after=1) for why, error in _REFUSALS.items()}


class LimitedHTTPServer(tornado.httpserver.HTTPServer):
    """``HTTPServer`` with the limits above. ``limiter`` is shared with nothing else."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        *,
        limiter: ConnectionLimiter,
        trusted_proxies: TrustedProxies,
        header_timeout: float,
        limit_log_interval: float,
        **kwargs: Any,
    ) -> None:
        # Tornado's idle timeout is also its header timeout: the time allowed from the start
        # of a connection, or from the end of the previous response, to a complete header.
        super().initialize(request_callback, idle_connection_timeout=header_timeout, **kwargs)
        self.limiter = limiter
        self.trusted_proxies = trusted_proxies
        self.limit_log_interval = limit_log_interval
        self._keys: dict[IOStream, str | None] = {}  # each open connection's current key
        self._proxied: dict[IOStream, str] = {}  # connections from trusted proxies: the peer
        self._closers: set[asyncio.Task[None]] = set()
        self._summary_timer: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return self.limiter.total

    # -- accept ------------------------------------------------------------------------------
    def handle_stream(self, stream: IOStream, address: Any) -> None:
        peer = address[0] if isinstance(address, tuple) and address else ""
        key = None if self.trusted_proxies.trusts(peer) else peer
        refusal = self.limiter.admit(key)
        if refusal is not None:
            self._refused()
            # One attempt, no buffering, and the descriptor is freed at once. What the client
            # has sent already is read first, so the close is a FIN, not a reset that could
            # destroy the answer before the client reads it.
            with contextlib.suppress(OSError):
                stream.socket.send(_REFUSAL_BYTES[refusal], socket.MSG_DONTWAIT)
                stream.socket.recv(65536, socket.MSG_DONTWAIT)
            stream.close()
            return
        self._keys[stream] = key
        if key is None:
            self._proxied[stream] = peer
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        stream: IOStream = server_conn.stream  # type: ignore[attr-defined]
        if stream.closed():
            self._release(stream)
        else:
            # Detached from HTTP (a WebSocket, or an answer still being written before a
            # close): the slot is held until the socket closes.
            stream.set_close_callback(lambda: self._release(stream))

    def _release(self, stream: IOStream) -> None:
        self._proxied.pop(stream, None)
        if stream in self._keys:
            self.limiter.release(self._keys.pop(stream))

    # -- each request --------------------------------------------------------------------------
    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        stream: IOStream = server_conn.stream  # type: ignore[attr-defined]
        if stream.closed():
            # The server closed this connection after an early answer; what the client had
            # already pipelined behind it is still buffered. It is not run.
            return _Discard()
        guarded = _GuardedConnection(request_conn)
        delegate = super().start_request(server_conn, guarded)
        return _RequestGuard(self, stream, guarded, delegate)

    def rekey(self, stream: IOStream, forwarded_for: str | None) -> Refusal | None:
        """Count a proxy's connection under the client its current request comes from."""
        peer = self._proxied.get(stream)
        if peer is None or stream not in self._keys:
            return None
        client = self.trusted_proxies.client(peer, forwarded_for)
        refusal = self.limiter.rekey(self._keys[stream], client)
        if refusal is None:
            self._keys[stream] = client
        else:
            self._refused()
        return refusal

    def close_after(self, stream: IOStream, response: bytes) -> None:
        task = asyncio.ensure_future(_answer_and_close(stream, response))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # -- shutdown --------------------------------------------------------------------------------
    def drain(self) -> None:
        """Stop accepting connections; every request read from now on is answered with
        ``Connection: close`` and its connection closed after the answer."""
        self.stop()
        # Tornado reads this per request (HTTP1ConnectionParameters is shared by the
        # server's connections): each answer from now on says ``Connection: close`` and its
        # connection closes once it is written.
        self.conn_params.no_keep_alive = True

    # -- refusals --------------------------------------------------------------------------------
    def _refused(self) -> None:
        if self._summary_timer is None:
            loop = asyncio.get_running_loop()
            self._summary_timer = loop.call_later(self.limit_log_interval, self._log_summary)

    def _log_summary(self) -> None:
        self._summary_timer = None
        line = self.limiter.take_summary()
        if line:
            log.warning("%s (in the last %gs)", line, self.limit_log_interval)

    def stop_summaries(self) -> None:
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._log_summary()


class _GuardedConnection(httputil.HTTPConnection):
    """The request's connection, as the application sees it.

    An answer written before the request has been read to its end closes the connection
    (Tornado cannot know where the next request starts); this says so with
    ``Connection: close``. Everything else passes through to Tornado's connection.
    """

    def __init__(self, inner: httputil.HTTPConnection) -> None:
        self._inner = inner
        self.request_read = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Awaitable[None]:
        if not self.request_read and isinstance(start_line, httputil.ResponseStartLine) \
                and start_line.code != 101:
            headers["Connection"] = "close"
        return self._inner.write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Awaitable[None]:
        return self._inner.write(chunk)

    def finish(self) -> None:
        self._inner.finish()


class _RequestGuard(httputil.HTTPMessageDelegate):
    """Checks a request's header before the application sees it, then passes it on."""

    def __init__(
        self,
        server: LimitedHTTPServer,
        stream: IOStream,
        connection: _GuardedConnection,
        delegate: httputil.HTTPMessageDelegate,
    ) -> None:
        self.server = server
        self.stream = stream
        self.connection = connection
        self.delegate: httputil.HTTPMessageDelegate = delegate

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        problem = framing_error(headers)
        if problem is not None:
            return self._close_with(ApiError(f"malformed request: {problem}"), None)
        refusal = self.server.rekey(self.stream, headers.get("X-Forwarded-For"))
        if refusal is not None:
            return self._close_with(_REFUSALS[refusal], 1)
        return self.delegate.headers_received(start_line, headers)

    def _close_with(self, error: ApiError, retry_after: int | None) -> None:
        """Answer ``error`` and close, reading nothing more as a request."""
        self.delegate = _Discard()
        stream = self.connection.detach()  # type: ignore[attr-defined]
        self.server.close_after(stream, error_response(error, retry_after))

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.connection.request_read = True
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class _Discard(httputil.HTTPMessageDelegate):
    """A request that is read and dropped."""


async def _answer_and_close(stream: IOStream, response: bytes) -> None:
    """Write ``response``, stop sending, drain briefly what the client still sends, close."""
    try:
        await stream.write(response)
        stream.socket.shutdown(socket.SHUT_WR)
        drained = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        while drained < LINGER_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            chunk = await asyncio.wait_for(stream.read_bytes(65536, partial=True), remaining)
            drained += len(chunk)
    except (StreamClosedError, OSError, TimeoutError):
        pass
    finally:
        stream.close()
