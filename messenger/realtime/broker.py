"""The broker: how stored events and commands travel between the nodes (processes) of a messenger.

Cut like Centrifuge's ``Broker`` (``broker.go``): a node publishes a ``Publication`` to a
stream *after* its durable write, receives only the streams it subscribed to, and reads
history to fill gaps. Unlike Centrifuge's brokers, ours stores nothing: the store is the only
history (every stream offset exists there, without holes, once it is visible), so ``history``
and ``position`` are answered by a ``HistorySource`` port that the store side implements.

Guarantees of the interface (every implementation):

* ``publish`` is at most once per subscribed node: a network broker may lose publications (a
  dropped connection, a full buffer), never reorder those of one stream, never invent any.
  Loss is detected by offsets alone (``StreamCursor``): a node that sees offset *n + 2* after
  *n* reads *n + 1* through ``history``; a node told ``on_connection_lost`` /
  ``on_reconnected`` compares each stream's ``position`` with its cursor and reads the rest.
* Nothing is ordered *across* streams, nor between publications and control messages: a
  node must not rely on it (a control message that must follow a stored event names it).
* ``subscribe(stream)`` returns once the subscription is in effect: every publication
  published after it returns reaches the node (or is detectably lost). A node therefore
  subscribes first and reads ``position`` / ``history`` second, so that nothing falls between.
* Subscriptions count references: the node calls ``subscribe`` once per local session that
  follows a stream and ``unsubscribe`` once when that session goes; the stream is dropped when
  the last reference goes. An ``unsubscribe`` without a reference is ``NotSubscribed``.
* A node receives its own publications and control messages back through its handler, like
  every other node: the handler is the one path by which events reach local sessions.
* Offset ``0`` marks an *ephemeral* publication (typing, presence: about now, not stored, not
  in ``history``, no ``epoch``); it is delivered like the others, at most once, and must not be
  given to a ``StreamCursor``.

``InProcessBroker`` is the implementation for nodes of one process (``InProcessNetwork`` is the
medium they share, what the Redis server is to the Redis broker). It never loses: every
control message, and every publication of a stream the node follows both when it is published
and when its turn comes, is handed to each node's handler exactly once, in the order the
``publish`` calls were made, across streams too (``on_connection_lost`` is never called).
``publish`` never waits for a handler: it appends to each subscribed node's unbounded queue and
returns; one task per node awaits its handler one item at a time. A slow handler therefore
delays only its own node, and its queue (``pending``) grows without a bound — the handler is
expected to hand off quickly (to the actors' bounded inboxes), not to do I/O. A handler that
raises is logged (stream and offset, not the payload) and delivery goes on with the next item;
``close`` cancels the handler's current call and drops what is still queued.

None of the errors here is an ``ApiError``: they stay inside the server. ``HistoryTrimmed``
means the client's position is older than retention (``resync_required``); a
``BrokerUnavailable`` on ``publish`` after the durable write loses nothing (the store has the
event; readiness reports the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from messenger.ids import is_valid_id
from messenger.store.streams import STREAM_KEY

log = logging.getLogger("messenger.realtime.broker")

#: ``u:<user id>`` (a user's stream) or ``c:<chat id>`` (a large chat's stream).
MAX_EPOCH_CHARS = 64
MAX_CONTROL_FIELDS = 16
MAX_CONTROL_VALUE_CHARS = 256

type ControlValue = str | int | bool | None


# -- errors ---------------------------------------------------------------------------------------
class BrokerError(Exception):
    """Base of the broker's and the presence manager's errors; ``code`` is stable."""

    code: str = "broker_error"


class BrokerUnavailable(BrokerError):
    """The broker's server cannot be reached (never raised by the in-process broker)."""

    code = "broker_unavailable"


class BrokerNotRunning(BrokerError):
    """Subscribing before ``start`` or using a broker after ``close``."""

    code = "broker_not_running"


class InvalidBrokerInput(BrokerError, ValueError):
    """A malformed stream key, publication, control message, limit or TTL."""

    code = "invalid_broker_input"


class NotSubscribed(BrokerError):
    """``unsubscribe`` of a stream this node holds no reference to."""

    code = "not_subscribed"


class HistoryTrimmed(BrokerError):
    """The store no longer has the offsets right after the one asked for (older than retention)."""

    code = "history_trimmed"


class HistoryInconsistent(BrokerError):
    """A ``HistorySource`` answered something other than the next offsets of the stream."""

    code = "history_inconsistent"


# -- values ---------------------------------------------------------------------------------------
def user_stream(user_id: str) -> str:
    """The stream key of a user's stream."""
    return _stream_of("u", user_id)


def chat_stream(chat_id: str) -> str:
    """The stream key of a large chat's stream."""
    return _stream_of("c", chat_id)


def _stream_of(kind: str, object_id: str) -> str:
    if not is_valid_id(object_id):
        raise InvalidBrokerInput(f"not an id: {object_id!r}")
    return f"{kind}:{object_id}"


def check_stream(stream: object) -> str:
    if not isinstance(stream, str) or STREAM_KEY.fullmatch(stream) is None:
        raise InvalidBrokerInput(f"not a stream key: {stream!r}")
    return stream


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """The last offset of a stream (``0``: none yet) in its epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One event of a stream: its ``offset`` (1, 2, 3, … without holes; ``0`` if ephemeral), the
    stream's ``epoch`` and the frame bytes, encoded once for every session."""

    stream: str
    offset: int
    epoch: str
    payload: bytes
    #: A fan-out copy in a user stream: the chat whose log entry it copies (else "").
    source: str = ""
    #: A marker copy: the user starts following the chat's stream at this chat offset.
    source_offset: int = 0
    marker: bool = False
    #: The session whose request caused it (a globally unique id), and the payload that session
    #: gets instead (``message_sent``); live only: what is read from the store has neither.
    origin: str = ""
    ack: bytes | None = None
    _tail: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_stream(self.stream)
        # Interned: every feed's lane of the stream is keyed by the same interned string, so
        # the lookup of thousands of feeds per publication matches by identity.
        object.__setattr__(self, "stream", sys.intern(self.stream))
        if type(self.offset) is not int or self.offset < 0:
            raise InvalidBrokerInput(f"offset must be an int >= 0, not {self.offset!r}")
        if not isinstance(self.epoch, str) or len(self.epoch) > MAX_EPOCH_CHARS:
            raise InvalidBrokerInput("epoch must be a string of at most 64 characters")
        if self.offset > 0 and not self.epoch:
            raise InvalidBrokerInput("a stored publication (offset > 0) needs its epoch")
        if not isinstance(self.payload, bytes):
            raise InvalidBrokerInput("payload must be bytes")

    @property
    def tail(self) -> bytes:
        """``",`` + the payload after its ``{``: what follows a session's cursor in its frame
        (``{"event_id":"<cursor>`` + this), made once per publication, not once per session."""
        tail = self._tail
        if tail is None:
            tail = b'",' + self.payload[1:]
            object.__setattr__(self, "_tail", tail)
        return tail

    @property
    def ephemeral(self) -> bool:
        """Not stored: no offset, no history, no cursor (typing, presence)."""
        return self.offset == 0

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.offset, self.epoch)


class ControlKind(enum.StrEnum):
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    CHAT_CHANGED = "chat_changed"
    SESSION_KICKED = "session_kicked"


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A command for every node: ``kind`` and a few scalar fields (ids, not records).

    ``origin`` is the publishing node's id (set by the broker), so that a node that already
    acted locally can skip its own message.
    """

    kind: ControlKind
    data: Mapping[str, ControlValue] = field(default_factory=dict)
    origin: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", ControlKind(self.kind))
        except ValueError:
            raise InvalidBrokerInput(f"unknown control kind: {self.kind!r}") from None
        if not isinstance(self.data, Mapping) or len(self.data) > MAX_CONTROL_FIELDS:
            raise InvalidBrokerInput("control data must be a mapping of at most 16 fields")
        for key, value in self.data.items():
            if not isinstance(key, str) or not (
                value is None or type(value) in (int, bool)
                or (isinstance(value, str) and len(value) <= MAX_CONTROL_VALUE_CHARS)
            ):
                raise InvalidBrokerInput(f"control field {key!r}: a short scalar is required")
        object.__setattr__(self, "data", dict(self.data))
        if not isinstance(self.origin, str):
            raise InvalidBrokerInput("origin must be a node id")


# -- ports ----------------------------------------------------------------------------------------
class HistorySource(Protocol):
    """The store side of gap filling: what has been durably written to each stream."""

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        """The stored publications of ``stream`` with offsets above ``after_offset``, ascending
        and consecutive, at most ``limit``; they start above ``after_offset + 1`` only if the
        stream was trimmed (retention)."""
        ...

    async def position(self, stream: str) -> StreamPosition:
        """The stream's last stored offset and its epoch."""
        ...


class BrokerEventHandler(Protocol):
    """What a node implements to receive from its broker (one call at a time, in order)."""

    async def on_publication(self, pub: Publication) -> None: ...

    async def on_control(self, msg: ControlMessage) -> None: ...

    async def on_connection_lost(self) -> None:
        """Publications may be lost from now on until ``on_reconnected``."""
        ...

    async def on_reconnected(self) -> None:
        """Subscriptions are back: compare each stream's ``position`` and fill from history."""
        ...


class Broker(Protocol):
    """One node's connection to the others (see the module docstring for the guarantees)."""

    node_id: str

    async def start(self, handler: BrokerEventHandler) -> None:
        """Begin delivering to ``handler``; called once, before ``subscribe``."""
        ...

    async def close(self) -> None:
        """Stop delivering and drop this node's subscriptions; what is queued is not delivered."""
        ...

    async def publish(self, pub: Publication) -> None:
        """Hand a publication, already durably stored (unless ephemeral), to subscribed nodes."""
        ...

    async def publish_control(self, msg: ControlMessage) -> None:
        """Hand a command to every node (this one included), with ``origin`` set to this node."""
        ...

    async def subscribe(self, stream: str) -> None:
        """Add a reference; the first one makes this node receive ``stream`` from now on."""
        ...

    async def unsubscribe(self, stream: str) -> None:
        """Drop a reference; with the last one this node stops receiving ``stream``."""
        ...

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        """Publications above ``after_offset`` (``HistoryTrimmed`` if the next one is gone)."""
        ...

    async def position(self, stream: str) -> StreamPosition: ...

    @property
    def pending(self) -> int:
        """Publications and control messages received and not yet handed to the handler (0
        when the one being handled is the last for now)."""
        ...

    async def flushed(self) -> None:
        """Return once every publication made so far has left this node (or was dropped):
        a node calls it before ``close`` on shutdown."""
        ...

    #: What readiness names this broker (``in-process``, ``redis``).
    backend: str
    #: Whether a publication can be lost on the way (a network broker): the node then also
    #: checks its streams' positions against the store periodically.
    may_lose: bool

    @property
    def connected(self) -> bool:
        """Whether the broker's server is reachable now (always True in process)."""
        ...


# -- shared pieces of every implementation --------------------------------------------------------
class Subscriptions:
    """Reference counts of one node's streams (sans-I/O)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, stream: str) -> bool:
        """Count a reference; True if it is the first (the node must subscribe)."""
        count = self._counts.get(check_stream(stream), 0)
        self._counts[stream] = count + 1
        return count == 0

    def remove(self, stream: str) -> bool:
        """Drop a reference; True if it was the last (the node must unsubscribe)."""
        count = self._counts.get(check_stream(stream), 0)
        if count == 0:
            raise NotSubscribed(f"no subscription to {stream}")
        if count == 1:
            del self._counts[stream]
            return True
        self._counts[stream] = count - 1
        return False

    def references(self, stream: str) -> int:
        return self._counts.get(stream, 0)

    def __contains__(self, stream: object) -> bool:
        return stream in self._counts

    def streams(self) -> frozenset[str]:
        return frozenset(self._counts)

    def clear(self) -> None:
        self._counts.clear()


async def read_history(
    source: HistorySource, stream: str, after_offset: int, limit: int
) -> list[Publication]:
    """``source.history`` with its answer checked: the next offsets of ``stream``, no holes."""
    check_stream(stream)
    if type(after_offset) is not int or after_offset < 0:
        raise InvalidBrokerInput("after_offset must be an int >= 0")
    if type(limit) is not int or limit < 1:
        raise InvalidBrokerInput("limit must be an int >= 1")
    pubs = await source.history(stream, after_offset, limit)
    if len(pubs) > limit:
        raise HistoryInconsistent(f"{stream}: {len(pubs)} publications for a limit of {limit}")
    if pubs and pubs[0].stream == stream and pubs[0].offset > after_offset + 1:
        raise HistoryTrimmed(f"{stream} starts at {pubs[0].offset}, after {after_offset}")
    for expected, pub in enumerate(pubs, start=after_offset + 1):
        if pub.stream != stream or pub.offset != expected:
            raise HistoryInconsistent(
                f"{stream} after {after_offset}: got {pub.stream} at {pub.offset}, "
                f"expected offset {expected}"
            )
    return pubs


# -- the in-process implementation ----------------------------------------------------------------
class InProcessNetwork:
    """What the in-process brokers of one process share: who is attached, who follows what."""

    def __init__(self) -> None:
        self._brokers: dict[str, InProcessBroker] = {}

    def attach(self, broker: InProcessBroker) -> None:
        if broker.node_id in self._brokers:
            raise InvalidBrokerInput(f"node {broker.node_id!r} is attached already")
        self._brokers[broker.node_id] = broker

    def detach(self, broker: InProcessBroker) -> None:
        if self._brokers.get(broker.node_id) is broker:
            del self._brokers[broker.node_id]

    def route(self, pub: Publication) -> None:
        for broker in self._brokers.values():
            if pub.stream in broker.subscriptions:
                broker.enqueue(pub)

    def broadcast(self, msg: ControlMessage) -> None:
        for broker in self._brokers.values():
            broker.enqueue(msg)


class InProcessBroker:
    """A node's broker inside one process (see the module docstring): never loses, never
    reorders, never makes the publisher wait for a handler."""

    def __init__(
        self,
        node_id: str,
        source: HistorySource,
        network: InProcessNetwork | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise InvalidBrokerInput("node_id must be a non-empty string")
        self.node_id = node_id
        self.subscriptions = Subscriptions()
        self._source = source
        self._network = network if network is not None else InProcessNetwork()
        self._queue: asyncio.Queue[Publication | ControlMessage] = asyncio.Queue()
        self._handler: BrokerEventHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.published = 0  # metrics: publications published here
        self.received = 0  # metrics: items queued for this node (its own included)

    async def start(self, handler: BrokerEventHandler) -> None:
        if self._closed or self._handler is not None:
            raise BrokerNotRunning("start is called once, before close")
        self._network.attach(self)
        self._handler = handler
        self._task = asyncio.create_task(self._deliver(), name=f"broker {self.node_id}")

    async def close(self) -> None:
        self._closed = True
        self._network.detach(self)
        self.subscriptions.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, pub: Publication) -> None:
        self._check_open()
        self.published += 1
        self._network.route(pub)

    async def publish_control(self, msg: ControlMessage) -> None:
        self._check_open()
        self._network.broadcast(ControlMessage(msg.kind, msg.data, self.node_id))

    async def subscribe(self, stream: str) -> None:
        self._check_running()
        self.subscriptions.add(stream)

    async def unsubscribe(self, stream: str) -> None:
        self._check_running()
        self.subscriptions.remove(stream)

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        return await read_history(self._source, stream, after_offset, limit)

    async def position(self, stream: str) -> StreamPosition:
        return await self._source.position(check_stream(stream))

    @property
    def pending(self) -> int:
        """Publications and control messages queued for this node's handler."""
        return self._queue.qsize()

    async def flushed(self) -> None:
        """Nothing waits to leave: ``publish`` hands over at once."""

    backend = "in-process"
    may_lose = False

    @property
    def connected(self) -> bool:
        return True

    async def delivered(self) -> None:
        """Return once everything queued for this node so far has been handled."""
        self._check_running()
        await self._queue.join()

    def enqueue(self, item: Publication | ControlMessage) -> None:
        """Queue one item for this node's handler (called by the network, never blocks)."""
        self.received += 1
        self._queue.put_nowait(item)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerNotRunning(f"the broker of node {self.node_id!r} is closed")

    def _check_running(self) -> None:
        self._check_open()
        if self._handler is None:
            raise BrokerNotRunning(f"the broker of node {self.node_id!r} is not started")

    async def _deliver(self) -> None:
        handler = self._handler
        assert handler is not None
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, ControlMessage):
                    await handler.on_control(item)
                elif item.stream in self.subscriptions:  # not dropped since it was queued
                    await handler.on_publication(item)
            except Exception:
                what = item.kind if isinstance(item, ControlMessage) else (
                    f"{item.stream} offset {item.offset}")
                log.exception("node %s: the broker handler failed on %s", self.node_id, what)
            finally:
                self._queue.task_done()
