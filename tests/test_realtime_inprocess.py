"""The real-time core in-process: the hub, its actors and the bus, on a real SQLite store, with
no server process and no sockets. A session here is a plain recorder of what the hub writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.hub import RealtimeHub
from config import load_settings
from messenger.errors import ChatNotFound
from messenger.events import Event
from messenger.models import ChatType, User
from messenger.services import Services


class RecordingSession:
    """A ``Session`` that keeps every stored event it is written, in order."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.cursor = 0
        self.live = False
        self.closed = False
        self.events: list[Event] = []
        self.arrived = asyncio.Event()

    def write_events(self, events: list[Event]) -> None:
        fresh = [e for e in events if e.id > self.cursor]
        if fresh:
            self.events.extend(fresh)
            self.cursor = fresh[-1].id
            self.arrived.set()

    async def write_backlog(self, events: list[Event]) -> None:
        self.write_events(events)

    def resync(self) -> None:
        raise AssertionError("no resync expected")

    def disconnect(self, reason: str) -> None:
        self.closed = True

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        decoded = [orjson.loads(e.payload) for e in self.events]
        return [p for p in decoded if p["type"] == kind]

    async def wait_for(self, kind: str, count: int) -> None:
        async with asyncio.timeout(10.0):
            while len(self.payloads(kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings({"ENV": "test", "JWT_SECRET": "x" * 40, "BCRYPT_ROUNDS": "4",
                              "MESSENGER_DATA_DIR": str(tmp_path), "PRESENCE_GRACE_SECONDS": "0"})
    built = Services.build(settings)
    await built.start()
    yield built
    await built.close()


async def users(services: Services, count: int) -> list[User]:
    return [await services.store.create_user(f"u{i}.{uuid.uuid4().hex[:8]}@example.com",
                                             b"hash", f"User {i}") for i in range(count)]


async def live_session(hub: RealtimeHub, user: User, after: int | None = None
                       ) -> RecordingSession:
    session = RecordingSession()
    await hub.open_session(user.id, session)
    session.cursor = hub.head if after is None else after
    await hub.catch_up(user.id, session, session.resync)
    return session


async def test_concurrent_sends_reach_every_member_session_once_in_seq_order(
    services: Services,
) -> None:
    hub = services.realtime
    ann, bob, eve = await users(services, 3)
    chat, _ = await services.store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    sessions = {name: await live_session(hub, who) for name, who in
                (("ann", ann), ("bob", bob), ("bob2", bob), ("eve", eve))}

    async def sender(who: User, n: int) -> None:
        for i in range(n):
            await hub.send(who.id, chat.id, f"{who.display_name} {i}", f"c-{who.id}-{i}")

    await asyncio.gather(sender(ann, 30), sender(bob, 30),
                         *(hub.send(ann.id, chat.id, f"burst {i}", None) for i in range(20)))
    for name in ("ann", "bob", "bob2"):
        await sessions[name].wait_for("new_message", 80)
        seqs = [p["message"]["seq"] for p in sessions[name].payloads("new_message")]
        assert seqs == list(range(1, 81)), name
    assert sessions["eve"].payloads("new_message") == []  # not a member


async def test_a_session_that_comes_back_gets_exactly_what_it_missed(
    services: Services,
) -> None:
    hub = services.realtime
    ann, bob = await users(services, 2)
    chat, _ = await services.store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    first = await live_session(hub, bob)
    await hub.send(ann.id, chat.id, "one", None)
    await first.wait_for("new_message", 1)
    hub.close_session(bob.id, first)
    first.closed = True
    for text in ("two", "three", "four"):
        await hub.send(ann.id, chat.id, text, None)
    again = await live_session(hub, bob, after=first.cursor)
    await hub.send(ann.id, chat.id, "five", None)
    await again.wait_for("new_message", 4)
    texts = [p["message"]["text"] for p in again.payloads("new_message")]
    assert texts == ["two", "three", "four", "five"]


async def test_the_store_refuses_a_member_removed_behind_the_actors_back(
    services: Services,
) -> None:
    hub = services.realtime
    ann, bob = await users(services, 2)
    chat, _ = await services.store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    await hub.send(bob.id, chat.id, "as a member", None)  # the chat actor caches the members
    await services.store.remove_member(chat.id, bob.id)  # as another process would
    with pytest.raises(ChatNotFound):
        await hub.send(bob.id, chat.id, "after removal", None)
    outcome = await hub.send(ann.id, chat.id, "still here", None)
    assert outcome.message.seq == 2
    with pytest.raises(ChatNotFound):  # the actor reloaded its members: refused up front now
        await hub.send(bob.id, chat.id, "again", None)
