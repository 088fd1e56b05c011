"""The broker interface and its in-process implementation, presence, and a cursor fed by both.

In-process and without sleeps: deliveries are awaited with ``InProcessBroker.delivered`` or
asyncio events, time is a fake clock passed in. History comes from ``MemoryHistory``, a
``HistorySource`` over an in-memory list (the store side is not part of this module); losses
are simulated in ``LossyLink``, a double of the live path between the broker and a node.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from messenger.ids import new_id
from messenger.realtime.broker import (
    BrokerEventHandler,
    BrokerNotRunning,
    ControlKind,
    ControlMessage,
    HistoryInconsistent,
    HistoryTrimmed,
    InProcessBroker,
    InProcessNetwork,
    InvalidBrokerInput,
    NotSubscribed,
    Publication,
    StreamPosition,
    chat_stream,
    user_stream,
)
from messenger.realtime.cursor import StreamCursor, Verdict
from messenger.realtime.presence import InProcessPresence

EPOCH = "e1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryHistory:
    """A ``HistorySource`` over in-memory lists: offsets 1, 2, 3, … per stream, no holes."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Publication]] = {}
        self.trimmed_below = 0  # offsets below it are gone (retention)
        self.reads = 0

    def append(self, stream: str, payload: bytes) -> Publication:
        log = self.streams.setdefault(stream, [])
        pub = Publication(stream, len(log) + 1, EPOCH, payload)
        log.append(pub)
        return pub

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        self.reads += 1
        start = max(after_offset, self.trimmed_below - 1)
        return self.streams.get(stream, [])[start:start + limit]

    async def position(self, stream: str) -> StreamPosition:
        return StreamPosition(len(self.streams.get(stream, [])), EPOCH)


class Recorder:
    """A node's handler that records what it receives; ``gate`` (when set up) holds it."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.controls: list[ControlMessage] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail_on: set[int] = set()

    async def on_publication(self, pub: Publication) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if pub.offset in self.fail_on:
            raise RuntimeError(f"handler failure on {pub.offset}")
        self.publications.append(pub)

    async def on_control(self, msg: ControlMessage) -> None:
        self.controls.append(msg)

    async def on_connection_lost(self) -> None:
        raise AssertionError("the in-process broker never loses its connection")

    async def on_reconnected(self) -> None:
        raise AssertionError("the in-process broker never loses its connection")

    def seen(self) -> list[tuple[str, int]]:
        return [(p.stream, p.offset) for p in self.publications]


type StartNode = Callable[[str, BrokerEventHandler], Awaitable[InProcessBroker]]


@pytest.fixture
def network() -> InProcessNetwork:
    return InProcessNetwork()


@pytest.fixture
def store() -> MemoryHistory:
    return MemoryHistory()


@pytest.fixture
async def node(network: InProcessNetwork, store: MemoryHistory) -> AsyncIterator[StartNode]:
    """``await node("a", handler)``: a started broker on the shared network, closed afterwards."""
    brokers: list[InProcessBroker] = []

    async def start(node_id: str, handler: BrokerEventHandler) -> InProcessBroker:
        broker = InProcessBroker(node_id, store, network)
        await broker.start(handler)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await broker.close()


# -- subscriptions and delivery -----------------------------------------------------------------
async def test_a_node_receives_only_its_streams_in_publish_order(
    node: StartNode, store: MemoryHistory
) -> None:
    s1, s2, s3 = user_stream(new_id()), chat_stream(new_id()), user_stream(new_id())
    got_a, got_b = Recorder(), Recorder()
    a = await node("a", got_a)
    b = await node("b", got_b)
    await a.subscribe(s1)
    await b.subscribe(s2)
    await b.subscribe(s1)

    for i in range(30):
        await (a if i % 2 else b).publish(store.append((s1, s2, s3)[i % 3], b"%d" % i))
    await a.delivered()
    await b.delivered()

    s1_sent = [(s1, o) for o in range(1, 11)]
    assert got_a.seen() == s1_sent  # its own publications come back too; never s2 or s3
    assert [x for x in got_b.seen() if x[0] == s1] == s1_sent
    assert [x for x in got_b.seen() if x[0] == s2] == [(s2, o) for o in range(1, 11)]
    assert len(got_b.seen()) == 20
    # publish order across streams is kept too (in-process only; a network broker keeps it per
    # stream)
    assert [p.payload for p in got_b.publications] == [
        b"%d" % i for i in range(30) if i % 3 in (0, 1)
    ]


async def test_an_ephemeral_publication_is_delivered_and_has_no_history(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = chat_stream(new_id())
    got = Recorder()
    a = await node("a", got)
    await a.subscribe(stream)
    typing = Publication(stream, 0, "", b'{"type":"typing"}')
    assert typing.ephemeral and not store.append(stream, b"m").ephemeral
    await a.publish(typing)
    await a.delivered()
    assert got.publications == [typing]
    assert await a.position(stream) == StreamPosition(1, EPOCH)


async def test_subscriptions_count_references(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = user_stream(new_id())
    got = Recorder()
    a = await node("a", got)
    await a.subscribe(stream)  # session 1
    await a.subscribe(stream)  # session 2
    assert a.subscriptions.references(stream) == 2

    await a.unsubscribe(stream)  # session 1 goes: session 2 still follows the stream
    await a.publish(store.append(stream, b"1"))
    await a.delivered()
    assert got.seen() == [(stream, 1)]

    await a.unsubscribe(stream)  # the last local session goes: the stream is dropped
    assert stream not in a.subscriptions
    await a.publish(store.append(stream, b"2"))
    await a.delivered()
    assert got.seen() == [(stream, 1)]

    with pytest.raises(NotSubscribed) as refused:
        await a.unsubscribe(stream)
    assert refused.value.code == "not_subscribed"


async def test_a_slow_handler_never_blocks_the_publisher_nor_other_nodes(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = chat_stream(new_id())
    slow, fast = Recorder(), Recorder()
    slow.gate = asyncio.Event()
    a = await node("slow", slow)
    b = await node("fast", fast)
    await a.subscribe(stream)
    await b.subscribe(stream)

    other = chat_stream(new_id())  # not followed by the slow node: never queued for it
    await b.subscribe(other)
    for i in range(100):
        await b.publish(store.append(stream, b"%d" % i))  # returns with the slow handler stuck
        await b.publish(store.append(other, b"%d" % i))
    await b.delivered()
    await slow.entered.wait()
    assert len(fast.publications) == 200
    assert slow.publications == [] and a.pending == 99  # queued, none dropped

    slow.gate.set()
    await a.delivered()
    assert slow.seen() == [x for x in fast.seen() if x[0] == stream]
    assert slow.seen() == [(stream, o) for o in range(1, 101)]
    assert a.pending == 0


async def test_what_was_queued_for_a_dropped_stream_is_not_delivered(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = user_stream(new_id())
    got = Recorder()
    got.gate = asyncio.Event()
    a = await node("a", got)
    await a.subscribe(stream)
    await a.publish(store.append(stream, b"1"))
    await got.entered.wait()  # the handler is in the middle of offset 1
    await a.publish(store.append(stream, b"2"))
    await a.unsubscribe(stream)
    got.gate.set()
    await a.delivered()
    assert got.seen() == [(stream, 1)]


async def test_a_failing_handler_is_logged_and_delivery_goes_on(
    node: StartNode, store: MemoryHistory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "messenger.realtime.broker")
    stream = user_stream(new_id())
    got = Recorder()
    got.fail_on = {2}
    a = await node("a", got)
    await a.subscribe(stream)
    for i in range(3):
        await a.publish(store.append(stream, b"%d" % i))
    await a.delivered()
    assert got.seen() == [(stream, 1), (stream, 3)]
    assert [r.getMessage() for r in caplog.records] == [
        f"node a: the broker handler failed on {stream} offset 2"
    ]


async def test_control_messages_reach_every_node_with_their_origin(node: StartNode) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await node("a", got_a)
    b = await node("b", got_b)
    chat_id, user_id = new_id(), new_id()
    await a.publish_control(ControlMessage(ControlKind.MEMBER_REMOVED,
                                           {"chat_id": chat_id, "user_id": user_id}))
    await b.publish_control(ControlMessage("session_kicked", {"user_id": user_id}))  # type: ignore[arg-type]
    await a.delivered()
    await b.delivered()
    expected = [
        ControlMessage(ControlKind.MEMBER_REMOVED, {"chat_id": chat_id, "user_id": user_id}, "a"),
        ControlMessage(ControlKind.SESSION_KICKED, {"user_id": user_id}, "b"),
    ]
    assert got_a.controls == got_b.controls == expected  # the publisher's own node included
    assert got_a.publications == []


@pytest.mark.parametrize("kind, data", [
    ("member_promoted", {}),
    ("chat_changed", {"chat": {"nested": "record"}}),
    ("chat_changed", {"name": "x" * 257}),
    ("chat_changed", {f"f{i}": i for i in range(17)}),
    ("chat_changed", {1: "not a string key"}),
])
def test_a_malformed_control_message_is_a_typed_error(kind: str, data: dict) -> None:
    with pytest.raises(InvalidBrokerInput) as refused:
        ControlMessage(kind, data)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_broker_input"


@pytest.mark.parametrize("make", [
    lambda: Publication("x:" + "0" * 24, 1, EPOCH, b""),
    lambda: Publication("u:" + "0" * 24 + "\n", 1, EPOCH, b""),
    lambda: Publication(user_stream(new_id()), -1, EPOCH, b""),
    lambda: Publication(user_stream(new_id()), True, EPOCH, b""),
    lambda: Publication(user_stream(new_id()), 1, "", b""),
    lambda: Publication(user_stream(new_id()), 1, "e" * 65, b""),
    lambda: Publication(user_stream(new_id()), 1, EPOCH, "text"),
    lambda: user_stream("not-an-id"),
])
def test_a_malformed_publication_is_a_typed_error(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidBrokerInput):
        make()


async def test_the_broker_runs_between_start_and_close(
    network: InProcessNetwork, store: MemoryHistory
) -> None:
    stream = user_stream(new_id())
    broker = InProcessBroker("a", store, network)
    with pytest.raises(BrokerNotRunning):
        await broker.subscribe(stream)
    await broker.start(Recorder())
    with pytest.raises(InvalidBrokerInput):
        await InProcessBroker("a", store, network).start(Recorder())  # one node id per network
    await broker.subscribe(stream)
    await broker.close()
    assert stream not in broker.subscriptions
    for call in (broker.subscribe(stream), broker.publish(store.append(stream, b"1"))):
        with pytest.raises(BrokerNotRunning) as refused:
            await call
        assert refused.value.code == "broker_not_running"
    again = InProcessBroker("a", store, network)  # the id is free again after close
    await again.start(Recorder())
    await again.close()


# -- history ------------------------------------------------------------------------------------
async def test_history_is_read_from_the_source_and_checked(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = user_stream(new_id())
    a = await node("a", Recorder())
    for i in range(10):
        store.append(stream, b"%d" % i)
    assert [p.offset for p in await a.history(stream, 3, 4)] == [4, 5, 6, 7]
    assert [p.offset for p in await a.history(stream, 8, 100)] == [9, 10]
    assert await a.history(stream, 10, 100) == []
    assert await a.position(stream) == StreamPosition(10, EPOCH)
    assert await a.position(user_stream(new_id())) == StreamPosition(0, EPOCH)

    store.trimmed_below = 6  # retention removed 1..5: a position of 3 cannot be resumed
    with pytest.raises(HistoryTrimmed) as trimmed:
        await a.history(stream, 3, 4)
    assert trimmed.value.code == "history_trimmed"
    assert [p.offset for p in await a.history(stream, 5, 2)] == [6, 7]

    for bad in ((stream, -1, 1), (stream, 0, 0), ("u:nope", 0, 1)):
        with pytest.raises(InvalidBrokerInput):
            await a.history(*bad)


class HoleyHistory(MemoryHistory):
    """A broken source: it skips an offset in the middle of its answer."""

    async def history(self, stream: str, after_offset: int, limit: int) -> list[Publication]:
        pubs = await super().history(stream, after_offset, limit + 1)
        return pubs[:1] + pubs[2:]


async def test_a_source_answering_with_a_hole_is_refused(network: InProcessNetwork) -> None:
    source = HoleyHistory()
    stream = chat_stream(new_id())
    for i in range(5):
        source.append(stream, b"%d" % i)
    broker = InProcessBroker("a", source, network)
    with pytest.raises(HistoryInconsistent) as refused:
        await broker.history(stream, 0, 3)
    assert refused.value.code == "history_inconsistent"


# -- a node's cursor fed live (lossy) and from history ------------------------------------------
class LossyLink:
    """A double of the live path: loses some publications and delays others (out of order)."""

    def __init__(self, rng: random.Random) -> None:
        self.node: CursorNode | None = None
        self.rng = rng
        self.lost: list[int] = []
        self.late: list[Publication] = []
        self.down = False  # lose everything

    async def on_publication(self, pub: Publication) -> None:
        roll = self.rng.random()
        if self.down or roll < 0.25:
            self.lost.append(pub.offset)
        elif roll < 0.40:
            self.late.append(pub)
        else:
            assert self.node is not None
            await self.node.on_publication(pub)

    async def deliver_late(self) -> None:
        late, self.late = self.late, []
        self.rng.shuffle(late)
        assert self.node is not None
        for pub in late:
            await self.node.on_publication(pub)

    async def on_control(self, msg: ControlMessage) -> None:
        raise AssertionError("no control message in this test")

    async def on_connection_lost(self) -> None:
        raise AssertionError("the in-process broker never loses its connection")

    async def on_reconnected(self) -> None:
        raise AssertionError("the in-process broker never loses its connection")


class CursorNode:
    """What a node does for one stream: a ``StreamCursor`` fed by the broker and by history."""

    HOLD = 0.5

    def __init__(self, broker: InProcessBroker, stream: str, clock: FakeClock) -> None:
        self.broker = broker
        self.stream = stream
        self.clock = clock
        self.cursor: StreamCursor[Publication] | None = None
        self.delivered: list[int] = []
        self.verdicts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    async def resume(self, at: StreamPosition) -> None:
        """A session resuming at ``at``: subscribe first, then read what is already stored."""
        await self.broker.subscribe(self.stream)
        self.cursor = StreamCursor(at.epoch, at.offset, hold=self.HOLD)
        await self.catch_up()

    def accept(self, pub: Publication) -> None:
        assert self.cursor is not None
        verdict = self.cursor.accept(pub.epoch, pub.offset, pub, self.clock())
        self.verdicts[verdict] += 1
        assert verdict is not Verdict.RESYNC
        self.delivered.extend(offset for offset, _ in self.cursor.take_ready())

    async def on_publication(self, pub: Publication) -> None:
        self.accept(pub)

    async def tick(self) -> None:
        """The node's timer: a gap held for ``hold`` seconds is read from history."""
        assert self.cursor is not None
        due = self.cursor.fill_due(self.clock())
        if due is not None:
            first, last = due
            for pub in await self.broker.history(self.stream, first - 1, last - first + 1):
                self.accept(pub)

    async def catch_up(self) -> None:
        """Read up to the stream's position (after subscribing, and on ``on_reconnected``)."""
        assert self.cursor is not None
        top = await self.broker.position(self.stream)
        while self.cursor.offset < top.offset:
            for pub in await self.broker.history(self.stream, self.cursor.offset, 16):
                self.accept(pub)


async def test_live_losses_are_filled_from_history_each_event_once_in_order(
    node: StartNode, store: MemoryHistory
) -> None:
    stream = chat_stream(new_id())
    clock = FakeClock()
    for i in range(40):  # stored before the session resumes at offset 25
        store.append(stream, b"old %d" % i)
    writer = await node("writer", Recorder())
    link = LossyLink(random.Random(9))
    cursor_node = link.node = CursorNode(await node("reader", link), stream, clock)
    await cursor_node.resume(StreamPosition(25, EPOCH))
    assert cursor_node.delivered == list(range(26, 41))

    for i in range(300):
        link.down = i >= 295  # the last ones are lost with nothing after them to tell
        await writer.publish(store.append(stream, b"new %d" % i))
        if i % 7 == 6:
            await cursor_node.broker.delivered()
            clock.now += CursorNode.HOLD
            await cursor_node.tick()
        if i % 41 == 40 and i < 200:  # the rest stay late until after the fills
            await link.deliver_late()
    await cursor_node.broker.delivered()
    while cursor_node.cursor is not None and cursor_node.cursor.held:
        clock.now += CursorNode.HOLD
        await cursor_node.tick()
    assert cursor_node.delivered[-1] < 336
    await cursor_node.catch_up()  # what a node does on_reconnected, or on a position check
    skipped = cursor_node.verdicts[Verdict.SKIP]
    late = len(link.late)
    await link.deliver_late()  # live copies arriving after their filled copies

    assert cursor_node.delivered == list(range(26, 341))  # every one, once, in offset order
    assert len(link.lost) > 30 and cursor_node.verdicts[Verdict.GAP] > 30 and store.reads > 30
    assert late > 10 and cursor_node.verdicts[Verdict.SKIP] == skipped + late
    assert store.reads > 10


# -- presence -----------------------------------------------------------------------------------
async def test_presence_add_and_remove() -> None:
    presence = InProcessPresence(FakeClock())
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", 30)
    assert await presence.online([alice, bob]) == {alice}
    await presence.remove(alice, "n1")
    await presence.remove(alice, "n1")  # absent: nothing happens
    assert await presence.online([alice, bob]) == set()
    assert presence.entries == 0


async def test_presence_expires_after_the_ttl_unless_refreshed() -> None:
    clock = FakeClock()
    presence = InProcessPresence(clock)
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", 30)
    await presence.add(bob, "n2", 30)
    clock.now += 20
    await presence.refresh("n1", 30)  # n1's heartbeat; n2 has stopped beating
    clock.now += 9.5
    assert await presence.online([alice, bob]) == {alice, bob}
    clock.now += 0.5  # n2's entries reach their deadline
    assert await presence.online([alice, bob]) == {alice}
    clock.now += 19.5
    assert await presence.online([alice, bob]) == {alice}
    clock.now += 0.5
    assert await presence.online([alice, bob]) == set()
    await presence.refresh("n1", 30)  # too late: an expired entry is not revived
    assert await presence.online([alice, bob]) == set()
    assert sorted(await presence.expire()) == sorted([alice, bob])  # each user once
    assert await presence.expire() == []
    assert presence.entries == 0


async def test_expire_returns_only_users_with_no_live_entry_left() -> None:
    clock = FakeClock()
    presence = InProcessPresence(clock)
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", 10)
    await presence.add(alice, "n2", 30)  # alice also on a node that keeps beating
    await presence.add(bob, "n1", 10)
    clock.now += 10  # n1 stopped
    assert await presence.expire() == [bob]
    assert await presence.online([alice, bob]) == {alice}
    assert presence.entries == 1


async def test_a_user_is_online_while_any_node_holds_them() -> None:
    clock = FakeClock()
    presence = InProcessPresence(clock)
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", 30)
    await presence.add(alice, "n2", 60)
    await presence.add(bob, "n2", 60)
    await presence.remove(alice, "n1")
    assert await presence.online([alice, bob]) == {alice, bob}
    await presence.add(alice, "n1", 30)
    await presence.remove_node("n2")  # n2 shuts down (or restarts under its id)
    assert await presence.online([alice, bob]) == {alice}
    clock.now += 30  # n1 died without a word
    assert await presence.online([alice, bob]) == set()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "30"])
async def test_a_bad_presence_ttl_is_a_typed_error(ttl: object) -> None:
    presence = InProcessPresence(FakeClock())
    with pytest.raises(InvalidBrokerInput):
        await presence.add(new_id(), "n1", ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidBrokerInput):
        await presence.refresh("n1", ttl)  # type: ignore[arg-type]
