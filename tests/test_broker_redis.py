"""The Redis broker (messenger/realtime/redis_broker.py) between nodes of one test process,
over a real valkey-server on loopback: delivery, references, loopback, order, fan-out by
script, junk, restarts, a silent server, shutdown.

No sleeps that hope: every wait is for a condition with a deadline. "Did not arrive" is shown
with a *barrier*: a later publication on a channel the node follows, from the same writer,
which Redis delivers after anything published before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as redis

from messenger.ids import new_id
from messenger.realtime import wire
from messenger.realtime.broker import (
    BrokerNotRunning,
    BrokerUnavailable,
    ControlKind,
    ControlMessage,
    InvalidBrokerInput,
    NotSubscribed,
    Publication,
    StreamPosition,
    chat_stream,
    user_stream,
)
from messenger.realtime.redis_broker import RedisBroker
from tests.support.redis_server import RedisServer
from tests.test_realtime_broker import EPOCH, MemoryHistory

DEADLINE = 5.0


class Recorder:
    """A node's handler that records every call, in order; ``until`` waits for a condition."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.controls: list[ControlMessage] = []
        self.calls: list[str] = []
        self._changed = asyncio.Condition()
        self.fail_on: set[int] = set()

    async def _record(self, call: str) -> None:
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()

    async def on_publication(self, pub: Publication) -> None:
        if pub.offset in self.fail_on:
            raise RuntimeError(f"handler failure on {pub.offset}")
        self.publications.append(pub)
        await self._record("publication")

    async def on_control(self, msg: ControlMessage) -> None:
        self.controls.append(msg)
        await self._record("control")

    async def on_connection_lost(self) -> None:
        await self._record("lost")

    async def on_reconnected(self) -> None:
        await self._record("reconnected")

    async def until(self, condition: Callable[[], bool], within: float = DEADLINE) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(condition)

    def offsets(self, stream: str) -> list[int]:
        return [p.offset for p in self.publications if p.stream == stream]

    def got(self, pub: Publication) -> int:
        return sum(1 for p in self.publications if p == pub)


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """For what only the server can tell (its subscription counts): poll with a deadline."""
    async with asyncio.timeout(DEADLINE):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


type StartNode = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A valkey-server of the test's own, to stop, restart or freeze."""
    srv = RedisServer()
    yield srv
    srv.close()


@pytest.fixture
def store() -> MemoryHistory:
    return MemoryHistory()


@pytest.fixture
def prefix() -> str:
    return f"t{new_id()[-8:]}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


def node_factory(url: str, store: MemoryHistory, prefix: str,
                 brokers: list[RedisBroker], clients: list[redis.Redis]) -> StartNode:
    async def start(node_id: str, handler: Recorder, **options: object) -> RedisBroker:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        clients.append(client)
        broker = RedisBroker(node_id, store, client, prefix, reconnect_max=0.2,
                             **options)  # type: ignore[arg-type]
        brokers.append(broker)
        await broker.start(handler)
        return broker

    return start


@pytest.fixture
async def node(redis_server: RedisServer, store: MemoryHistory, prefix: str
               ) -> AsyncIterator[StartNode]:
    """``await node("a", handler)``: a started broker on the module's server, closed after."""
    brokers: list[RedisBroker] = []
    clients: list[redis.Redis] = []
    yield node_factory(redis_server.url, store, prefix, brokers, clients)
    for broker in brokers:
        await broker.close()
    for c in clients:
        await c.aclose()


@pytest.fixture
async def own_node(own_server: RedisServer, store: MemoryHistory, prefix: str
                   ) -> AsyncIterator[StartNode]:
    """Like ``node``, on the test's own server."""
    brokers: list[RedisBroker] = []
    clients: list[redis.Redis] = []
    yield node_factory(own_server.url, store, prefix, brokers, clients)
    for broker in brokers:
        await broker.close()
    for c in clients:
        await c.aclose()


async def barrier(sender: RedisBroker, receiver: Recorder, store: MemoryHistory,
                  stream: str) -> None:
    """Publish on ``stream`` (followed by the receiver) and wait for it: whatever ``sender``
    published before has reached the receiver by then, if it was going to."""
    pub = store.append(stream, b'{"barrier":1}')
    await sender.publish(pub)
    await receiver.until(lambda: receiver.got(pub) > 0)


def subscribers(client: redis.Redis, prefix: str, stream: str) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return (await client.pubsub_numsub(f"{prefix}:s:{stream}"))[0][1]

    return count


# -- subscriptions and delivery ------------------------------------------------------------------
async def test_a_publication_reaches_another_node_only_while_it_follows_the_stream(
    node: StartNode, store: MemoryHistory
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await node("a", got_a)
    b = await node("b", got_b)
    fence = chat_stream(new_id())
    await b.subscribe(fence)
    for _ in range(20):  # subscribe returns once in effect: the very next publish arrives
        stream = user_stream(new_id())
        await b.subscribe(stream)
        pub = store.append(stream, b'{"n":1}')
        await a.publish(pub)
        await got_b.until(lambda pub=pub: got_b.got(pub) == 1)
        await b.unsubscribe(stream)
        late = store.append(stream, b'{"n":2}')
        await a.publish(late)
        await barrier(a, got_b, store, fence)
        assert got_b.got(late) == 0
    assert got_a.publications == []  # a follows nothing
    assert a.connected and b.connected and a.backend == "redis"


async def test_subscriptions_count_references(
    node: StartNode, store: MemoryHistory, client: redis.Redis, prefix: str
) -> None:
    got = Recorder()
    a = await node("a", Recorder())
    b = await node("b", got)
    stream, fence = user_stream(new_id()), chat_stream(new_id())
    await b.subscribe(fence)
    await b.subscribe(stream)  # session 1
    await b.subscribe(stream)  # session 2
    assert b.subscriptions.references(stream) == 2
    assert await subscribers(client, prefix, stream)() == 1

    await b.unsubscribe(stream)  # session 1 goes: session 2 still follows
    first = store.append(stream, b"{}")
    await a.publish(first)
    await got.until(lambda: got.got(first) == 1)

    await b.unsubscribe(stream)  # the last one: the node stops receiving the stream
    second = store.append(stream, b"{}")
    await a.publish(second)
    await barrier(a, got, store, fence)
    assert got.offsets(stream) == [1]
    await eventually(lambda: _is(subscribers(client, prefix, stream), 0))
    with pytest.raises(NotSubscribed):
        await b.unsubscribe(stream)


async def _is(count: Callable[[], Awaitable[int]], value: int) -> bool:
    return await count() == value


async def test_a_nodes_own_publication_reaches_it_once_without_redis_round_trip(
    node: StartNode, store: MemoryHistory
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await node("a", got_a)
    b = await node("b", got_b)
    stream = user_stream(new_id())
    await a.subscribe(stream)
    await b.subscribe(stream)
    pub = store.append(stream, b'{"mine":1}')
    await a.publish(pub)
    await got_a.until(lambda: got_a.got(pub) == 1)  # handed over directly
    await a.flushed()  # Redis has it: its copy to a comes before anything published later
    await barrier(b, got_a, store, stream)  # a's copy from Redis has come back by now: dropped
    await a.publish_control(ControlMessage(ControlKind.CHAT_CHANGED, {"chat_id": new_id()}))
    await b.publish_control(ControlMessage(ControlKind.CHAT_CHANGED, {"chat_id": new_id()}))
    await got_a.until(lambda: len(got_a.controls) == 2)
    await got_b.until(lambda: len(got_b.controls) == 2)
    await a.flushed()
    await barrier(b, got_a, store, stream)
    assert got_a.got(pub) == 1 and got_b.got(pub) == 1
    assert [c.origin for c in got_a.controls] == ["a", "b"]
    assert len(got_a.controls) == 2


async def test_control_messages_reach_every_node_with_their_origin(node: StartNode) -> None:
    recorders = [Recorder() for _ in range(3)]
    a, b, _ = [await node(name, r) for name, r in zip("abc", recorders, strict=True)]
    chat_id, user_id = new_id(), new_id()
    removed = ControlMessage(ControlKind.MEMBER_REMOVED, {"chat_id": chat_id, "user_id": user_id})
    kicked = ControlMessage(ControlKind.SESSION_KICKED, {"user_id": user_id, "n": 3,
                                                         "all": True, "none": None})
    await a.publish_control(removed)
    await b.publish_control(kicked)
    for r in recorders:
        await r.until(lambda r=r: len(r.controls) == 2)
    for r in recorders:
        assert sorted(r.controls, key=lambda c: c.origin) == [
            ControlMessage(removed.kind, removed.data, "a"),
            ControlMessage(kicked.kind, kicked.data, "b"),
        ]
        assert r.publications == []
    with pytest.raises(InvalidBrokerInput):  # refused before anyone gets it
        await a.publish_control(ControlMessage(ControlKind.CHAT_CHANGED, {"n": 2**64}))


async def test_each_stream_keeps_its_order_under_a_thousand_quick_publishes(
    node: StartNode, store: MemoryHistory
) -> None:
    got = Recorder()
    a = await node("a", Recorder())
    b = await node("b", got)
    streams = [user_stream(new_id()), chat_stream(new_id())]
    for stream in streams:
        await b.subscribe(stream)
    for i in range(1000):
        await a.publish(store.append(streams[i % 2], b'{"i":%d}' % i))
        if i % 97 == 0:
            await asyncio.sleep(0)  # the writer takes what is queued: batches of every size
    typing = Publication(streams[0], 0, "", b'{"type":"typing"}', new_id())  # ephemeral
    await a.publish(typing)
    await got.until(lambda: len(got.publications) == 1001)
    for stream in streams:
        assert got.offsets(stream) == [*range(1, 501), *([0] if stream == streams[0] else [])]
    assert got.got(typing) == 1


async def test_fan_out_copies_are_one_command_and_arrive_as_publications_of_each_stream(
    node: StartNode, store: MemoryHistory, client: redis.Redis
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await node("a", got_a)
    b = await node("b", got_b)
    chat = new_id()
    members = [user_stream(new_id()) for _ in range(100)]
    followed = members[::2]
    for stream in followed:
        await b.subscribe(stream)
    await a.subscribe(members[1])  # a local session of the publishing node
    for stream in members:
        store.append(stream, b"{}")  # earlier events: the copies go at offset 2
    payload, ack = b'{"type":"new_message","n":1}', b'{"type":"message_sent"}'
    copies = [Publication(stream, 2, EPOCH, payload, chat, 7, False, "session-1", ack)
              for stream in members]
    await client.config_resetstat()
    for pub in copies:
        await a.publish(pub)
    await a.flushed()
    stats = await client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1  # one command for the hundred copies

    await got_b.until(lambda: len(got_b.publications) == len(followed))
    assert got_b.publications == [p for p in copies if p.stream in followed]
    assert all(p.ack == ack and p.origin == "session-1" for p in got_b.publications)
    assert got_a.publications == [copies[1]]

    # two copies of an event are two PUBLISHes; a copy of another event starts another group
    await client.config_resetstat()
    other = b'{"type":"read"}'
    pair = [Publication(s, 3, EPOCH, other, chat, 8) for s in followed[:2]]
    third = Publication(followed[2], 3, EPOCH, bytes(bytearray(other)), chat, 8)  # equal, but
    assert third.payload is not other  # another object: another event
    for pub in (*pair, third):
        await a.publish(pub)
    await got_b.until(lambda: len(got_b.publications) == len(followed) + 3)
    stats = await client.info("commandstats")
    assert stats.get("cmdstat_evalsha", {"calls": 0})["calls"] == 0
    assert stats["cmdstat_publish"]["calls"] == 3
    assert got_b.publications[-3:] == [*pair, third]


async def test_the_script_is_loaded_again_when_redis_forgot_it(
    node: StartNode, store: MemoryHistory, client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    got = Recorder()
    a = await node("a", Recorder())
    b = await node("b", got)
    members = [user_stream(new_id()) for _ in range(3)]
    for stream in members:
        await b.subscribe(stream)

    async def event(n: int) -> list[Publication]:
        payload = b'{"n":%d}' % n
        pubs = [Publication(s, n, EPOCH, payload, "c" * 24, n) for s in members]
        for pub in pubs:
            await a.publish(pub)
        await a.flushed()
        return pubs

    first = await event(1)
    await got.until(lambda: len(got.publications) == 3)
    await client.script_flush()
    with caplog.at_level(logging.WARNING, "messenger.realtime.redis_broker"):
        await event(2)  # lost (at most once), and the script is loaded again
    assert "the fan-out script was gone" in caplog.text
    third = await event(3)
    await got.until(lambda: len(got.publications) == 6)
    assert got.publications == [*first, *third]


async def test_junk_on_a_channel_is_dropped_with_one_log_line(
    node: StartNode, store: MemoryHistory, client: redis.Redis, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "messenger.realtime.redis_broker")
    got = Recorder()
    a = await node("a", Recorder())
    b = await node("b", got)
    stream, other = user_stream(new_id()), user_stream(new_id())
    await b.subscribe(stream)
    good = wire.encode_publication(store.append(stream, b"{}"), "x")
    for junk in (b"", b"garbage", good[:-1], good + b"!", good.replace(b"P1", b"P9", 1),
                 wire.encode_publication(Publication(other, 1, EPOCH, b"{}"), "x")):
        await client.publish(f"{prefix}:s:{stream}", junk)
    await client.publish(f"{prefix}:control", b"C1[\"x\",\"no_such_kind\",{}]")
    await client.publish(f"{prefix}:control", good)  # a publication on the control channel
    await client.publish(f"{prefix}:s:{stream}", good)  # the real one goes through
    pub = store.append(stream, b'{"after":1}')
    await a.publish(pub)
    await got.until(lambda: got.got(pub) == 1)
    assert got.offsets(stream) == [1, 2] and got.controls == []
    lines = [r.getMessage() for r in caplog.records if r.name == "messenger.realtime.redis_broker"]
    # one line per node for all of it: b saw junk on both channels, a on the control channel
    assert sorted(line[:38] for line in lines) == [
        "node a: dropped a malformed message on", "node b: dropped a malformed message on"]


async def test_a_failing_handler_is_logged_and_delivery_goes_on(
    node: StartNode, store: MemoryHistory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "messenger.realtime.redis_broker")
    got = Recorder()
    got.fail_on = {2}
    a = await node("a", Recorder())
    b = await node("b", got)
    stream = user_stream(new_id())
    await b.subscribe(stream)
    for i in range(3):
        await a.publish(store.append(stream, b"%d" % i))
    await got.until(lambda: len(got.publications) == 2)
    assert got.offsets(stream) == [1, 3]
    assert [r.getMessage() for r in caplog.records] == [
        f"node b: the broker handler failed on {stream} offset 2"]


async def test_history_and_position_come_from_the_source(
    node: StartNode, store: MemoryHistory
) -> None:
    a = await node("a", Recorder())
    stream = user_stream(new_id())
    for i in range(5):
        store.append(stream, b"%d" % i)
    assert [p.offset for p in await a.history(stream, 2, 2)] == [3, 4]
    assert await a.position(stream) == StreamPosition(5, EPOCH)


async def test_a_full_outbox_refuses_after_the_local_delivery(
    node: StartNode, store: MemoryHistory
) -> None:
    got = Recorder()
    a = await node("a", got, max_outbox=10)
    stream = user_stream(new_id())
    await a.subscribe(stream)
    for _ in range(10):  # no await yields: the writer has not taken any yet
        await a.publish(store.append(stream, b"{}"))
    eleventh = store.append(stream, b"{}")
    with pytest.raises(BrokerUnavailable) as refused:
        await a.publish(eleventh)
    assert refused.value.code == "broker_unavailable"
    await got.until(lambda: got.got(eleventh) == 1)  # its local session has it all the same


# -- losing Redis --------------------------------------------------------------------------------
async def test_a_restarted_redis_is_noticed_and_the_subscriptions_come_back(
    own_node: StartNode, own_server: RedisServer, store: MemoryHistory
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await own_node("a", got_a)
    b = await own_node("b", got_b)
    held, added, dropped = (user_stream(new_id()) for _ in range(3))
    for stream in (held, dropped):
        await a.subscribe(stream)
        await b.subscribe(stream)

    own_server.stop()
    await got_a.until(lambda: "lost" in got_a.calls)
    await got_b.until(lambda: "lost" in got_b.calls)
    assert not a.connected and not b.connected
    down = store.append(held, b'{"while":"down"}')
    with pytest.raises(BrokerUnavailable):
        await a.publish(down)
    await got_a.until(lambda: got_a.got(down) == 1)  # a's own session has it all the same
    await b.subscribe(added)  # while down: references only, applied on reconnect
    await b.unsubscribe(dropped)

    own_server.start()
    await got_a.until(lambda: "reconnected" in got_a.calls)
    await got_b.until(lambda: "reconnected" in got_b.calls)
    assert a.connected and b.connected
    assert got_b.calls == ["lost", "reconnected"]  # once each, in order
    assert got_a.calls == ["lost", "publication", "reconnected"]

    after = [store.append(s, b'{"after":1}') for s in (held, added, dropped)]
    for pub in after:
        await a.publish(pub)
    await got_b.until(lambda: got_b.got(after[0]) == 1 and got_b.got(after[1]) == 1)
    await barrier(a, got_b, store, held)
    assert got_b.got(after[2]) == 0 and got_b.got(down) == 0


async def test_subscribe_returns_only_once_redis_has_confirmed_it(
    own_node: StartNode, own_server: RedisServer, store: MemoryHistory
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await own_node("a", got_a)
    b = await own_node("b", got_b)
    stream = user_stream(new_id())
    own_server.pause()  # the SUBSCRIBE is sent, and not answered yet
    try:
        first = asyncio.create_task(b.subscribe(stream))
        second = asyncio.create_task(b.subscribe(stream))  # a second session meanwhile
        for _ in range(50):  # turns of the loop: enough to send, not to be answered
            await asyncio.sleep(0)
        assert not first.done() and not second.done()
    finally:
        own_server.resume()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(first, second)
    assert b.connected and got_b.calls == []  # confirmed, not released by a loss
    pub = store.append(stream, b"{}")
    await a.publish(pub)
    await got_b.until(lambda: got_b.got(pub) == 1)


async def test_a_silent_redis_is_noticed_by_the_watchdog(
    own_node: StartNode, own_server: RedisServer, store: MemoryHistory
) -> None:
    got_a, got_b = Recorder(), Recorder()
    a = await own_node("a", got_a, ping_interval=0.1)
    b = await own_node("b", got_b, ping_interval=0.1)
    stream = user_stream(new_id())
    await b.subscribe(stream)
    own_server.pause()  # the connections stay open; nothing answers
    try:
        await got_b.until(lambda: "lost" in got_b.calls, within=3)
        await got_a.until(lambda: "lost" in got_a.calls, within=3)
    finally:
        own_server.resume()
    await got_b.until(lambda: "reconnected" in got_b.calls)
    await got_a.until(lambda: "reconnected" in got_a.calls)
    pub = store.append(stream, b"{}")
    await a.publish(pub)
    await got_b.until(lambda: got_b.got(pub) == 1)


async def test_a_node_started_while_redis_is_down_runs_and_connects_later(
    own_server: RedisServer, store: MemoryHistory, prefix: str
) -> None:
    own_server.stop()
    client = redis.Redis.from_url(own_server.url, socket_connect_timeout=0.5)
    got = Recorder()
    broker = RedisBroker("a", store, client, prefix, reconnect_max=0.2)
    try:
        await broker.start(got)  # returns: the node runs without Redis
        assert not broker.connected
        stream = user_stream(new_id())
        await broker.subscribe(stream)
        with pytest.raises(BrokerUnavailable):
            await broker.publish(store.append(stream, b"{}"))
        await got.until(lambda: got.calls == ["lost", "publication"])
        own_server.start()
        await got.until(lambda: "reconnected" in got.calls)
        assert broker.connected
        pub = store.append(stream, b"{}")
        await broker.publish(pub)
        await got.until(lambda: got.got(pub) == 1)
    finally:
        await broker.close()
        await client.aclose()


async def test_close_is_clean(redis_server: RedisServer, store: MemoryHistory, prefix: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    got = Recorder()
    broker = RedisBroker("a", store, client, prefix)
    before = asyncio.all_tasks()
    await broker.start(got)
    stream = user_stream(new_id())
    await broker.subscribe(stream)
    for _ in range(100):
        await broker.publish(store.append(stream, b"{}"))
    await broker.close()
    assert asyncio.all_tasks() == before  # no task of the broker's left behind
    assert not broker.connected and stream not in broker.subscriptions
    for call in (broker.subscribe(stream), broker.publish(store.append(stream, b"{}")),
                 broker.publish_control(ControlMessage(ControlKind.CHAT_CHANGED, {}))):
        with pytest.raises(BrokerNotRunning):
            await call
    await broker.close()  # twice is harmless
    with pytest.raises(BrokerNotRunning):
        await broker.start(got)
    await client.aclose()


@pytest.mark.parametrize("options", [
    {"node_id": ""}, {"prefix": ""}, {"reconnect_max": 0}, {"ping_interval": float("inf")},
    {"max_outbox": 0}, {"fanout_script_min_copies": 1},
])
async def test_bad_settings_are_a_typed_error(
    options: dict, store: MemoryHistory, client: redis.Redis
) -> None:
    settings = {"node_id": "a", **options}
    node_id = settings.pop("node_id")
    with pytest.raises(InvalidBrokerInput):
        RedisBroker(node_id, store, client, **settings)
