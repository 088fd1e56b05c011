"""The broker over Redis pub/sub: one channel per stream, one for control messages.

Cut like Centrifuge's ``RedisBroker`` (``broker_redis.go``): a node subscribes to
``{prefix}:s:{stream}`` for each stream one of its local sessions follows and to
``{prefix}:control``, and publishes with ``PUBLISH``; Redis stores nothing (``history`` and
``position`` are the store's, through ``HistorySource``). Messages are ``wire.py``'s format.
The guarantees are ``broker.py``'s (at most once, in order per stream, nothing invented);
exactly, for this implementation:

* **Two connections of its own** per node, made from the ``redis.asyncio.Redis`` client's
  connection settings (host, credentials, TLS, database), in RESP2, without redis-py's
  retries (a retried pipeline could publish twice): a *subscriber* that one reader task
  reads, and a *publisher* that one writer task writes. The client's own pool is not used.
  Node ids must be unique among the nodes on one Redis and prefix (see loopback).
* **Local loopback.** A node's own publications (of streams it follows) and control messages
  go to its own handler directly from ``publish`` / ``publish_control``, as in process; when
  they come back from Redis they are recognised by the node id in their header and dropped.
  So a node's sessions get its own events without a round trip, also while Redis is down.
* **publish does not wait for Redis.** It queues the publication and returns; the writer
  sends everything queued so far in one pipelined write per batch (at most
  ``BATCH_MAX_COMMANDS`` commands), in ``publish`` order, and reads the replies; what is
  queued meanwhile is the next batch. While Redis is known to be down (``connected`` is
  False) ``publish`` raises ``BrokerUnavailable`` after the local delivery, and queues
  nothing; also when ``max_outbox`` publications wait already (a full buffer). A batch that
  fails is dropped, not sent again (at most once): the store has every stored event.
  ``flushed()`` returns once what was queued has been sent. Publishing needs ``start``.
* **One command per chat event.** Consecutive publications that are copies of one event
  (the same payload object, ``ack``, source, source offset, marker, origin and epoch; any
  streams) are one ``EVALSHA`` of ``FANOUT_SCRIPT`` when there are at least
  ``fanout_script_min_copies`` (3; at most ``FANOUT_SCRIPT_MAX_COPIES`` a call): the script
  ``PUBLISH``es each copy inside Redis, its message made by concatenation
  (``wire.publication_copy``). It costs the publishing node ~2.5 times less CPU than a
  PUBLISH per copy at 100 copies, and Redis ~1.7 times more. The writer loads the script on
  each connection it makes; a ``NOSCRIPT`` loses that event's copies and reloads it.
* **Subscriptions** count references (``Subscriptions``); the first ``subscribe`` of a
  stream sends ``SUBSCRIBE`` and returns once Redis has confirmed it (a second one while it
  is on its way waits for the same confirmation); the last ``unsubscribe`` sends
  ``UNSUBSCRIBE`` without waiting (what still arrives for the stream is dropped, as is what
  was received for it and not yet handed over). While the subscriber is down they change
  the references only and return at once: the reconnection applies them.
* **Connection loss.** The reader notices a closed or failing connection at once, and a
  silent one by the watchdog: when nothing arrived for ``ping_interval`` seconds it sends
  ``PING``, and when nothing arrived for another ``ping_interval`` the connection is taken
  as dead (within three intervals). Then the handler's ``on_connection_lost`` is called
  once (in order with the other calls), and the reader reconnects with exponential backoff
  and jitter (from ``RECONNECT_MIN`` to ``reconnect_max`` seconds), subscribes again to
  every stream it holds references to and, once Redis has confirmed them all, calls
  ``on_reconnected``. A ``start`` whose first attempt fails returns all the same (the node
  runs without Redis) after ``on_connection_lost`` is queued, and goes on trying.
* **Malformed messages** on a channel (``WireError``, or a stream that is not the
  channel's) are dropped; at most one log line per ``JUNK_LOG_INTERVAL`` seconds says how
  many. A handler that raises is logged and delivery goes on, as in process.
* ``close`` stops the tasks, closes both connections and drops what is queued either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from messenger.realtime import wire
from messenger.realtime.broker import (
    BrokerEventHandler,
    BrokerNotRunning,
    BrokerUnavailable,
    ControlMessage,
    HistorySource,
    InvalidBrokerInput,
    Publication,
    StreamPosition,
    Subscriptions,
    check_stream,
    read_history,
)

log = logging.getLogger("messenger.realtime.redis_broker")

#: ARGV: head, tail, channel prefix, then stream and offset of each copy.
FANOUT_SCRIPT = """\
local head, tail, prefix = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 2 do
  local stream = ARGV[i]
  redis.call('PUBLISH', prefix .. stream, head .. stream .. '",' .. ARGV[i + 1] .. tail)
end
return (#ARGV - 3) / 2
"""
FANOUT_SCRIPT_SHA = hashlib.sha1(FANOUT_SCRIPT.encode()).hexdigest()
#: From this many copies of one event on, the script is used instead of one PUBLISH each
#: (``fanout_script_min_copies``; a very large one turns the script off).
FANOUT_SCRIPT_MIN_COPIES = 3
#: At most this many copies in one script call (a longer run of copies is several calls).
FANOUT_SCRIPT_MAX_COPIES = 1000
#: Commands per pipelined write (a larger batch is several writes, in order).
BATCH_MAX_COMMANDS = 1000
#: Channels per SUBSCRIBE when subscribing again after a reconnection.
SUBSCRIBE_CHUNK = 1000
RECONNECT_MIN = 0.05
JUNK_LOG_INTERVAL = 10.0
#: The connect and write timeout of the broker's connections when the client sets none.
DEFAULT_SOCKET_TIMEOUT = 5.0

#: Redis connection failures: the connection is lost (a reply error is not one).
_LOST_ERRORS = (RedisError, OSError, TimeoutError)


class _Signal:
    """A connection event queued for the handler in order with the publications."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_LOST = _Signal("on_connection_lost")
_RECONNECTED = _Signal("on_reconnected")


class _Event:
    """Copies of one event queued for the writer: the first publication and every
    ``(stream, offset)`` (the first one's included)."""

    __slots__ = ("copies", "pub")

    def __init__(self, pub: Publication) -> None:
        self.pub = pub
        self.copies: list[tuple[str, int]] = [(pub.stream, pub.offset)]

    def same_event(self, pub: Publication) -> bool:
        first = self.pub
        return (pub.payload is first.payload and pub.ack is first.ack
                and pub.source == first.source and pub.source_offset == first.source_offset
                and pub.marker is first.marker and pub.origin == first.origin
                and pub.epoch == first.epoch)


class _Throttled:
    """A warning logged at most once per ``interval`` seconds, with how many it stands for."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._count = 0

    def __call__(self, message: str, *args: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            log.warning(message + " (%d since the last such line)", *args, self._count)
            self._count = 0


class RedisBroker:
    """A node's broker over Redis (see the module docstring for the exact guarantees)."""

    backend = "redis"
    may_lose = True

    def __init__(
        self,
        node_id: str,
        source: HistorySource,
        client: redis.Redis,
        prefix: str = "messenger",
        reconnect_max: float = 5.0,
        *,
        ping_interval: float = 1.0,
        max_outbox: int = 100_000,
        fanout_script_min_copies: int = FANOUT_SCRIPT_MIN_COPIES,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise InvalidBrokerInput("node_id must be a non-empty string")
        if not isinstance(prefix, str) or not prefix:
            raise InvalidBrokerInput("prefix must be a non-empty string")
        pool = getattr(client, "connection_pool", None)
        if not hasattr(pool, "connection_class") or not hasattr(pool, "connection_kwargs"):
            raise InvalidBrokerInput("client must be a redis.asyncio.Redis on a connection pool")
        if not (0 < reconnect_max < math.inf and 0 < ping_interval < math.inf):
            raise InvalidBrokerInput("reconnect_max and ping_interval are seconds > 0")
        if type(max_outbox) is not int or max_outbox < 1:
            raise InvalidBrokerInput("max_outbox must be an int >= 1")
        if type(fanout_script_min_copies) is not int or fanout_script_min_copies < 2:
            raise InvalidBrokerInput("fanout_script_min_copies must be an int >= 2")
        self.node_id = node_id
        self.subscriptions = Subscriptions()
        self._source = source
        self._client = client
        self._reconnect_max = float(reconnect_max)
        self._ping_interval = float(ping_interval)
        self._max_outbox = max_outbox
        self._script_min = fanout_script_min_copies
        self._stream_prefix = f"{prefix}:s:".encode()
        self._control_channel = f"{prefix}:control".encode()
        self._head = wire.publication_head(node_id)
        self._own = wire.own_marker(node_id)
        self._handler: BrokerEventHandler | None = None
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        # the subscriber
        self._channels: dict[bytes, str] = {}  # channel → stream, for each held stream
        self._confirming: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._sub: AbstractConnection | None = None
        self._sub_lock = asyncio.Lock()  # commands on the subscriber go out in call order
        self._read_deadline: asyncio.Timeout | None = None
        self._resync = 0  # confirmations still expected before the reconnection is complete
        self._up = False
        self._lost = False  # on_connection_lost queued, on_reconnected not yet
        self._attempt = 0
        self._started: asyncio.Future[None] | None = None
        self._received = 0
        self._junk = _Throttled(JUNK_LOG_INTERVAL)
        self._still_down = _Throttled(JUNK_LOG_INTERVAL)
        # to the handler
        self._inbox: deque[Publication | ControlMessage | _Signal] = deque()
        self._inbox_ready = asyncio.Event()
        # the publisher
        self._pub: AbstractConnection | None = None
        self._script_loaded = False
        self._renew_pub = False  # the subscriber was lost: so is, likely, the publisher
        self._outbox: list[_Event | bytes] = []
        self._outbox_count = 0
        self._outbox_ready = asyncio.Event()
        self._writing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._write_failed = _Throttled(JUNK_LOG_INTERVAL)
        # metrics (messenger/metrics/): counted here, read when scraped
        self.published = 0  # publications published here
        self.received = 0  # publications and control messages of other nodes, from Redis
        self.looped_back = 0  # items queued for the handler here: own ones, signals
        self.reconnects = 0  # connections made again after a loss

    # -- Broker ------------------------------------------------------------------------------
    async def start(self, handler: BrokerEventHandler) -> None:
        """Connect and subscribe to the control channel; returns once that is in effect, or
        after the first attempt failed (the broker then goes on trying)."""
        if self._closed or self._handler is not None:
            raise BrokerNotRunning("start is called once, before close")
        self._handler = handler
        self._started = asyncio.get_running_loop().create_future()
        for run, name in ((self._deliver, "deliver"), (self._write, "write"),
                          (self._read, "read"), (self._watch, "watch")):
            self._tasks.append(
                asyncio.create_task(run(), name=f"redis broker {self.node_id} {name}"))
        await asyncio.shield(self._started)

    async def close(self) -> None:
        self._closed = True
        self._up = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in (self._sub, self._pub):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
        self._sub = self._pub = None
        self._release_confirmations()
        self.subscriptions.clear()
        self._channels.clear()
        self._inbox.clear()
        self._outbox.clear()
        self._outbox_count = 0
        self._idle.set()
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    async def publish(self, pub: Publication) -> None:
        self._check_running()
        self.published += 1
        if pub.stream in self.subscriptions:
            self._enqueue(pub)
        self._check_writable()
        outbox = self._outbox
        last = outbox[-1] if outbox else None
        if type(last) is _Event and last.same_event(pub) and (
                len(last.copies) < FANOUT_SCRIPT_MAX_COPIES):
            last.copies.append((pub.stream, pub.offset))
        else:
            outbox.append(_Event(pub))
        self._outbox_count += 1
        self._outbox_ready.set()

    async def publish_control(self, msg: ControlMessage) -> None:
        self._check_running()
        msg = ControlMessage(msg.kind, msg.data, self.node_id)
        data = wire.encode_control(msg, self.node_id)  # refused before anyone gets it
        self._enqueue(msg)
        self._check_writable()
        self._outbox.append(data)
        self._outbox_count += 1
        self._outbox_ready.set()

    async def subscribe(self, stream: str) -> None:
        self._check_running()
        channel = self._stream_prefix + check_stream(stream).encode()
        first = self.subscriptions.add(stream)
        if first:
            self._channels[channel] = stream
        conn = self._sub
        if conn is None:
            return  # down: the reconnection subscribes
        waiting = self._confirming.get(channel)
        if not first:
            if waiting:  # on its way: in effect when that confirmation comes
                await asyncio.shield(waiting[-1])
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channel, deque()).append(confirmed)
        with contextlib.suppress(*_LOST_ERRORS):  # the reader notices the loss
            await self._command(conn, "SUBSCRIBE", channel)
        await asyncio.shield(confirmed)  # set by the confirmation, or by the loss

    async def unsubscribe(self, stream: str) -> None:
        self._check_running()
        channel = self._stream_prefix + check_stream(stream).encode()
        if not self.subscriptions.remove(stream):
            return
        del self._channels[channel]
        conn = self._sub
        if conn is not None:
            with contextlib.suppress(*_LOST_ERRORS):
                await self._command(conn, "UNSUBSCRIBE", channel)

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        return await read_history(self._source, stream, after_offset, limit)

    async def position(self, stream: str) -> StreamPosition:
        return await self._source.position(check_stream(stream))

    @property
    def pending(self) -> int:
        """Publications and control messages received and not yet handed to the handler."""
        return len(self._inbox)

    @property
    def connected(self) -> bool:
        """Subscribed (every held stream confirmed) on a live connection to Redis."""
        return self._up

    async def flushed(self) -> None:
        """Return once everything queued for Redis so far has been sent (or dropped)."""
        while self._outbox or self._writing:
            self._idle.clear()
            await self._idle.wait()

    # -- state ---------------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._closed:
            raise BrokerNotRunning(f"the broker of node {self.node_id!r} is closed")
        if self._handler is None:
            raise BrokerNotRunning(f"the broker of node {self.node_id!r} is not started")

    def _check_writable(self) -> None:
        if not self._up:
            raise BrokerUnavailable(f"node {self.node_id}: Redis is not reachable")
        if self._outbox_count >= self._max_outbox:
            raise BrokerUnavailable(
                f"node {self.node_id}: {self._outbox_count} publications wait for Redis")

    def _enqueue(self, item: Publication | ControlMessage | _Signal) -> None:
        self.looped_back += 1
        self._inbox.append(item)
        self._inbox_ready.set()

    def _went_down(self, error: BaseException) -> None:
        self._up = False
        self._sub = None
        self._read_deadline = None
        self._resync = 0
        self._release_confirmations()
        self._renew_pub = True
        reason = str(error) or type(error).__name__
        if not self._lost:
            self._lost = True
            log.warning("node %s: the Redis connection is lost (%s); reconnecting",
                        self.node_id, reason)
            self._enqueue(_LOST)
        else:
            self._still_down("node %s: Redis is still unreachable (%s)", self.node_id, reason)
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _came_up(self) -> None:
        self._up = True
        self._attempt = 0
        if self._lost:
            self._lost = False
            self.reconnects += 1
            log.warning("node %s: reconnected to Redis, %d streams subscribed", self.node_id,
                        len(self._channels))
            self._enqueue(_RECONNECTED)
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _release_confirmations(self) -> None:
        for waiting in self._confirming.values():
            for confirmed in waiting:
                if not confirmed.done():
                    confirmed.set_result(None)
        self._confirming.clear()

    def _connection(self) -> AbstractConnection:
        """A connection of the broker's own, with the client's settings (see the docstring)."""
        pool = self._client.connection_pool
        kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        kwargs.pop("maint_notifications_pool_handler", None)
        kwargs.pop("oss_cluster_maint_notifications_handler", None)
        kwargs.update(protocol=2, decode_responses=False, retry=Retry(NoBackoff(), 0),
                      health_check_interval=0, maint_notifications_config=None)
        for timeout in ("socket_timeout", "socket_connect_timeout"):
            kwargs[timeout] = kwargs.get(timeout) or DEFAULT_SOCKET_TIMEOUT
        return pool.connection_class(**kwargs)

    # -- the subscriber --------------------------------------------------------------------------
    async def _command(self, conn: AbstractConnection, *args: str | bytes) -> None:
        """Send a command on the subscriber (its reply comes to the reader)."""
        async with self._sub_lock:
            if self._sub is conn:
                await conn.send_command(*args, check_health=False)

    async def _read(self) -> None:
        """The reader: connect, subscribe to everything held, read until the connection is
        lost; then back off and again."""
        while True:
            conn = self._connection()
            try:
                await conn.connect()
                self._sub = conn
                channels = [self._control_channel, *self._channels]
                self._resync = len(channels)
                loop = asyncio.get_running_loop()
                for channel in channels:
                    self._confirming.setdefault(channel, deque()).append(loop.create_future())
                for i in range(0, len(channels), SUBSCRIBE_CHUNK):
                    await self._command(conn, "SUBSCRIBE", *channels[i:i + SUBSCRIBE_CHUNK])
                await self._receive(conn)
            except _LOST_ERRORS as error:
                self._went_down(error)
            except Exception as error:  # a bug: logged, and handled as a lost connection
                log.exception("node %s: the Redis reader failed", self.node_id)
                self._went_down(error)
            finally:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            delay = min(self._reconnect_max, RECONNECT_MIN * 2 ** self._attempt)
            self._attempt = min(self._attempt + 1, 32)
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _receive(self, conn: AbstractConnection) -> None:
        """Read the subscriber until it fails (the watchdog ends a silent one by the deadline)."""
        channels = self._channels
        control = self._control_channel
        own = self._own
        inbox = self._inbox
        ready = self._inbox_ready
        decode = wire.decode
        read = conn.read_response
        async with asyncio.timeout(None) as deadline:
            self._read_deadline = deadline
            while True:
                reply = await read(timeout=math.inf, disconnect_on_error=False)
                self._received += 1
                if type(reply) is not list or len(reply) != 3:
                    continue  # PONG before SUBSCRIBE: nothing to do
                kind, channel, data = reply
                if kind == b"message":
                    if data.startswith(own, 2):
                        continue  # this node's own: delivered when it was published
                    stream = channels.get(channel)
                    if stream is None and channel != control:
                        continue  # not followed (any more)
                    try:
                        item = decode(data)[1]
                    except wire.WireError as error:
                        self._junk("node %s: dropped a malformed message on %s: %s",
                                   self.node_id, channel.decode(errors="replace"), error)
                        continue
                    if (type(item) is not Publication or item.stream != stream
                            if stream is not None else type(item) is not ControlMessage):
                        self._junk("node %s: dropped a message on %s that is not of it",
                                   self.node_id, channel.decode(errors="replace"))
                        continue
                    inbox.append(item)
                    self.received += 1
                    ready.set()
                elif kind == b"subscribe":
                    self._confirmed(channel)

    def _confirmed(self, channel: bytes) -> None:
        waiting = self._confirming.get(channel)
        if waiting:
            confirmed = waiting.popleft()
            if not waiting:
                del self._confirming[channel]
            if not confirmed.done():
                confirmed.set_result(None)
        if self._resync:
            self._resync -= 1
            if not self._resync:
                self._came_up()

    async def _watch(self) -> None:
        """The watchdog: PING a silent subscriber, and end it when the PING gets no answer."""
        seen, pinged = -1, False
        while True:
            await asyncio.sleep(self._ping_interval)
            conn = self._sub
            if conn is None or self._received != seen:
                seen, pinged = self._received, False
                continue
            if not pinged:
                pinged = True
                with contextlib.suppress(*_LOST_ERRORS):
                    await self._command(conn, "PING")
                continue
            deadline = self._read_deadline
            if deadline is not None and self._sub is conn:
                log.warning("node %s: Redis has not answered for %.1f s", self.node_id,
                            2 * self._ping_interval)
                deadline.reschedule(asyncio.get_running_loop().time())
            seen, pinged = -1, False

    # -- the handler ---------------------------------------------------------------------------
    async def _deliver(self) -> None:
        handler = self._handler
        assert handler is not None
        inbox, ready, subscriptions = self._inbox, self._inbox_ready, self.subscriptions
        while True:
            if not inbox:
                ready.clear()
                await ready.wait()
                continue
            item = inbox.popleft()
            try:
                if type(item) is Publication:
                    if item.stream in subscriptions:  # not dropped since it was received
                        await handler.on_publication(item)
                elif item is _LOST:
                    await handler.on_connection_lost()
                elif item is _RECONNECTED:
                    await handler.on_reconnected()
                else:
                    assert isinstance(item, ControlMessage)
                    await handler.on_control(item)
            except Exception:
                what = (f"{item.stream} offset {item.offset}" if type(item) is Publication
                        else item.name if isinstance(item, _Signal) else item.kind)
                log.exception("node %s: the broker handler failed on %s", self.node_id, what)

    # -- the publisher -------------------------------------------------------------------------
    async def _write(self) -> None:
        """The writer: everything queued so far, in order, in pipelined writes."""
        while True:
            if not self._outbox:
                self._writing = False
                self._idle.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            self._writing = True
            batch, self._outbox = self._outbox, []
            self._outbox_count = 0
            if not self._up:  # lost with the connection (at most once)
                self._write_failed("node %s: Redis went down: %d publications dropped",
                                   self.node_id, sum(
                                       len(i.copies) if type(i) is _Event else 1 for i in batch))
                continue
            try:
                await self._send(batch)
            except _LOST_ERRORS as error:
                self._write_failed("node %s: publishing to Redis failed (%s); dropped",
                                   self.node_id, error)
                pub, self._pub = self._pub, None
                if pub is not None:
                    with contextlib.suppress(Exception):
                        await pub.disconnect(nowait=True)

    async def _send(self, batch: list[_Event | bytes]) -> None:
        conn = self._pub
        if conn is not None and self._renew_pub:
            self._pub = None
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            conn = None
        if conn is None:
            self._renew_pub = False
            conn = self._connection()
            await conn.connect()
            self._pub, self._script_loaded = conn, False
        if not self._script_loaded:
            await conn.send_command("SCRIPT", "LOAD", FANOUT_SCRIPT, check_health=False)
            async with asyncio.timeout(self._reply_timeout):
                sha = await conn.read_response(timeout=math.inf)
            if sha != FANOUT_SCRIPT_SHA.encode():
                raise ResponseError(f"SCRIPT LOAD answered {sha!r}")
            self._script_loaded = True
        commands: list[tuple[Any, ...]] = []
        for item in batch:
            if type(item) is bytes:
                commands.append(("PUBLISH", self._control_channel, item))
            else:
                assert isinstance(item, _Event)
                self._commands_of(item, commands.append)
            if len(commands) >= BATCH_MAX_COMMANDS:
                await self._pipeline(conn, commands)
                commands = []
        if commands:
            await self._pipeline(conn, commands)

    def _commands_of(self, event: _Event, add: Callable[[tuple[Any, ...]], None]) -> None:
        try:
            tail = wire.publication_tail(event.pub)
        except InvalidBrokerInput as error:
            self._write_failed("node %s: a publication was not sent: %s", self.node_id, error)
            return
        head, prefix, copies = self._head, self._stream_prefix, event.copies
        if len(copies) >= self._script_min:
            args: list[Any] = ["EVALSHA", FANOUT_SCRIPT_SHA, 0, head, tail, prefix]
            for stream, offset in copies:
                args.append(stream)
                args.append(offset)
            add(tuple(args))
        else:
            copy = wire.publication_copy
            for stream, offset in copies:
                add(("PUBLISH", prefix + stream.encode(), copy(head, stream, offset, tail)))

    async def _pipeline(self, conn: AbstractConnection, commands: list[tuple[Any, ...]]) -> None:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        read = conn.read_response
        async with asyncio.timeout(self._reply_timeout):
            for _ in commands:
                try:
                    await read(timeout=math.inf)
                except NoScriptError:
                    self._script_loaded = False
                    self._write_failed("node %s: the fan-out script was gone; one event lost",
                                       self.node_id)
                except ResponseError as error:
                    self._write_failed("node %s: Redis refused a publication: %s",
                                       self.node_id, error)

    @property
    def _reply_timeout(self) -> float:
        return max(DEFAULT_SOCKET_TIMEOUT, 3 * self._ping_interval)
