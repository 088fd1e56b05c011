"""Presence in Redis (messenger/realtime/redis_presence.py) against a real valkey-server: the
rules of presence.py, deadlines on the server's clock, and the sweep that hands each user
who went offline by expiry to exactly one caller.

Expiry takes real (short) TTLs on the server's clock; waits poll ``online`` with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from messenger.ids import new_id
from messenger.realtime.broker import InvalidBrokerInput
from messenger.realtime.presence import PresenceUnavailable
from messenger.realtime.redis_presence import RedisPresence
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer

DEADLINE = 5.0
SHORT = 0.25  # a TTL that passes within the test


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[redis.Redis]]:
    """Two clients: two nodes' connections."""
    made = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    yield made
    for c in made:
        await c.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{new_id()[-8:]}"


@pytest.fixture
def presence(clients: list[redis.Redis], prefix: str) -> RedisPresence:
    return RedisPresence(clients[0], prefix)


@pytest.fixture
def other(clients: list[redis.Redis], prefix: str) -> RedisPresence:
    """The same presence seen from another node's client."""
    return RedisPresence(clients[1], prefix)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll the server (its clock decides) until ``condition`` holds, within the deadline."""
    async with asyncio.timeout(DEADLINE):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


def offline(presence: RedisPresence, *users: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await presence.online(users)

    return check


async def test_add_remove_and_online(presence: RedisPresence, other: RedisPresence) -> None:
    alice, bob = new_id(), new_id()
    assert await presence.online([]) == set()
    await presence.add(alice, "n1", 30)
    assert await other.online([alice, bob, alice]) == {alice}  # seen from every node
    await presence.remove(alice, "n1")
    await presence.remove(alice, "n1")  # absent: nothing happens
    await presence.remove(bob, "n9")
    assert await other.online([alice, bob]) == set()
    await presence.add(alice, "n1", 30)
    await presence.add(alice, "n1", 30)  # a set, not a count
    await presence.remove(alice, "n1")
    assert await other.online([alice]) == set()


async def test_a_user_is_online_while_any_node_holds_them(presence: RedisPresence) -> None:
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", 30)
    await presence.add(alice, "n2", 60)
    await presence.add(bob, "n2", 60)
    await presence.remove(alice, "n1")
    assert await presence.online([alice, bob]) == {alice, bob}
    await presence.add(alice, "n1", 30)
    await presence.remove_node("n2")  # n2 shuts down (or restarts under its id)
    await presence.remove_node("n2")
    assert await presence.online([alice, bob]) == {alice}
    assert await presence.expire() == []  # removed, not expired: nobody is told


async def test_deadlines_are_set_on_the_servers_clock(
    presence: RedisPresence, clients: list[redis.Redis], prefix: str
) -> None:
    alice = new_id()
    await presence.add(alice, "n1", 90)
    seconds, micros = await clients[0].time()
    now_ms = seconds * 1000 + micros // 1000
    deadline = await clients[0].zscore(f"{prefix}:p:u:{alice}", "n1")
    assert now_ms + 90_000 - 1000 <= deadline <= now_ms + 90_000
    await presence.refresh("n1", 3600)
    deadline = await clients[0].zscore(f"{prefix}:p:u:{alice}", "n1")
    assert now_ms + 3_600_000 - 1000 <= deadline <= now_ms + 3_600_000 + 1000
    assert await clients[0].zscore(f"{prefix}:p:due", f"{alice}\x1fn1") == deadline


async def test_entries_expire_after_the_ttl_unless_refreshed(presence: RedisPresence) -> None:
    alice, bob = new_id(), new_id()
    await presence.add(alice, "n1", SHORT)
    await presence.add(bob, "n2", SHORT)
    started = time.monotonic()

    async def bob_gone_with_alice_kept() -> bool:
        await presence.refresh("n1", SHORT)  # n1's heartbeat; n2 has stopped beating
        online = await presence.online([alice, bob])
        assert alice in online
        return bob not in online

    await until(bob_gone_with_alice_kept)
    assert time.monotonic() - started >= SHORT - 0.05  # not before its TTL (either clock)
    await until(offline(presence, alice))  # n1 stops beating too
    await presence.refresh("n1", 30)  # too late: an expired entry is not revived
    assert await presence.online([alice, bob]) == set()
    assert sorted(await presence.expire()) == sorted([alice, bob])
    assert await presence.expire() == []


async def test_a_user_on_two_nodes_stays_online_when_one_nodes_entries_expire(
    presence: RedisPresence,
) -> None:
    alice, bob = new_id(), new_id()
    await presence.add(alice, "dying", SHORT)
    await presence.add(bob, "dying", SHORT)
    await presence.add(alice, "alive", 30)
    await until(offline(presence, bob))
    assert await presence.online([alice, bob]) == {alice}
    assert await presence.expire() == [bob]  # alice is still held by "alive"
    assert await presence.online([alice]) == {alice}
    await presence.add(alice, "alive", SHORT)  # now "alive" goes quiet as well
    await until(offline(presence, alice))
    assert await presence.expire() == [alice]


async def test_each_user_gone_by_expiry_is_returned_to_exactly_one_caller(
    presence: RedisPresence, other: RedisPresence
) -> None:
    dead_only = [new_id() for _ in range(60)]
    twice_dead = dead_only[:10]  # held by two nodes that both died: swept in other pages
    everywhere = [new_id() for _ in range(10)]
    for user in dead_only + everywhere:
        await presence.add(user, "killed", SHORT)
    for user in twice_dead:
        await presence.add(user, "killed too", SHORT)
    for user in everywhere:
        await presence.add(user, "survivor", 30)
    await until(offline(presence, *dead_only))

    returned: list[str] = []

    async def sweep(p: RedisPresence) -> None:
        while gone := await p.expire(limit=7):  # small pages: the two interleave
            returned.extend(gone)

    await asyncio.gather(sweep(presence), sweep(other), sweep(presence), sweep(other))
    assert Counter(returned) == Counter(dead_only)  # each once, nobody still held
    assert await presence.online(everywhere) == set(everywhere)
    assert await other.expire() == []


async def test_refresh_is_one_call_for_thousands_of_users(
    presence: RedisPresence, clients: list[redis.Redis]
) -> None:
    users = [new_id() for _ in range(3000)]
    for i in range(0, len(users), 50):
        await asyncio.gather(*(presence.add(u, "big", 30) for u in users[i:i + 50]))
    await clients[0].config_resetstat()
    await presence.refresh("big", 60)
    stats = await clients[0].info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert stats["cmdstat_zadd"]["calls"] == 2 * len(users)  # every entry moved, once
    await presence.remove_node("big")
    assert await presence.online(users) == set()


@pytest.mark.parametrize("call", [
    lambda p: p.add(new_id(), "n1", 0),
    lambda p: p.add(new_id(), "n1", float("nan")),
    lambda p: p.add(new_id(), "n1", True),
    lambda p: p.refresh("n1", -1),
    lambda p: p.add(new_id(), "n\x1f1", 30),
    lambda p: p.add("", "n1", 30),
    lambda p: p.remove(new_id(), ""),
    lambda p: p.online(["a\x1fb"]),
    lambda p: p.expire(0),
    lambda p: p.expire(True),
])
async def test_bad_input_is_a_typed_error(
    presence: RedisPresence, call: Callable[[RedisPresence], Awaitable[object]]
) -> None:
    with pytest.raises(InvalidBrokerInput):
        await call(presence)


async def test_an_unreachable_redis_is_presence_unavailable() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    presence = RedisPresence(client)
    try:
        for call in (presence.add(new_id(), "n1", 30), presence.online([new_id()]),
                     presence.refresh("n1", 30), presence.expire()):
            with pytest.raises(PresenceUnavailable) as refused:
                await call
            assert refused.value.code == "presence_unavailable"
    finally:
        await client.aclose()
