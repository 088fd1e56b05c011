"""The real-time core in-process: the hub, its actors, the node and the in-process broker, on a
real SQLite store, with no server process and no sockets. A session here is a plain outlet
that records what its feed writes."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.hub import RealtimeHub
from config import load_settings
from messenger.errors import ChatNotFound
from messenger.models import ChatType, MessageDraft, SenderNotMember, User
from messenger.realtime import frames
from messenger.realtime.feed import Feed
from messenger.realtime.resume import ResumeCursor
from messenger.services import Services
from messenger.store import StoreUnavailable

FANOUT_MAX = 3  # chats above this many members get their own stream here


class RecordingOutlet:
    """An ``Outlet`` that keeps every frame its feed writes, in order."""

    def __init__(self) -> None:
        self.session_id = uuid.uuid4().hex
        self.frames: list[dict[str, Any]] = []
        self.resyncs = 0
        self.arrived = asyncio.Event()

    def write_frames(self, batch: list[bytes]) -> None:
        self.frames.extend(orjson.loads(frame) for frame in batch)
        self.arrived.set()

    def write_frame(self, frame: bytes) -> None:
        self.write_frames([frame])

    async def write_paced(self, batch: list[bytes]) -> None:
        self.write_frames(batch)

    def resync(self, cursor: str) -> None:
        self.resyncs += 1

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def seqs(self) -> list[int]:
        return [f["message"]["seq"] for f in self.of("new_message")]

    async def wait_for(self, kind: str, count: int) -> None:
        async with asyncio.timeout(10.0):
            while len(self.of(kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings({"ENV": "test", "JWT_SECRET": "x" * 40, "BCRYPT_ROUNDS": "4",
                              "MESSENGER_DATA_DIR": str(tmp_path), "PRESENCE_GRACE_SECONDS": "0",
                              "STREAM_FANOUT_MAX_MEMBERS": str(FANOUT_MAX)})
    built = Services.build(settings)
    await built.start()
    yield built
    await built.close()


async def users(services: Services, count: int) -> list[User]:
    return [await services.store.create_user(f"u{i}.{uuid.uuid4().hex[:8]}@example.com",
                                             b"hash", f"User {i}") for i in range(count)]


async def session(hub: RealtimeHub, user: User, cursor: str | None = None
                  ) -> tuple[Feed, RecordingOutlet]:
    outlet = RecordingOutlet()
    resume = None if cursor is None else ResumeCursor.decode(cursor)
    feed, _, resynced = await hub.open_feed(user.id, outlet, resume)
    assert not resynced
    return feed, outlet


async def test_concurrent_sends_reach_every_member_session_once_in_seq_order(
    services: Services,
) -> None:
    hub = services.realtime
    ann, bob, eve = await users(services, 3)
    chat, _ = await services.store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    outlets = {name: (await session(hub, who))[1] for name, who in
               (("ann", ann), ("bob", bob), ("bob2", bob), ("eve", eve))}

    async def sender(who: User, n: int) -> None:
        for i in range(n):
            await hub.send(who.id, chat.id, f"{who.display_name} {i}", f"c-{who.id}-{i}")

    await asyncio.gather(sender(ann, 30), sender(bob, 30),
                         *(hub.send(ann.id, chat.id, f"burst {i}", None) for i in range(20)))
    for name in ("ann", "bob", "bob2"):
        await outlets[name].wait_for("new_message", 80)
        assert outlets[name].seqs() == list(range(1, 81)), name
    assert outlets["eve"].of("new_message") == []  # not a member


async def test_a_session_that_comes_back_gets_exactly_what_it_missed(
    services: Services,
) -> None:
    hub = services.realtime
    ann, bob = await users(services, 2)
    chat, _ = await services.store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    feed, first = await session(hub, bob)
    await hub.send(ann.id, chat.id, "one", None)
    await first.wait_for("new_message", 1)
    cursor = first.frames[-1]["event_id"]
    await feed.close()
    for text in ("two", "three", "four"):
        await hub.send(ann.id, chat.id, text, None)
    _, again = await session(hub, bob, cursor)
    await hub.send(ann.id, chat.id, "five", None)
    await again.wait_for("new_message", 4)
    texts = [f["message"]["text"] for f in again.of("new_message")]
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


async def test_a_chat_that_grows_large_switches_to_its_own_stream_without_a_gap(
    services: Services,
) -> None:
    """Members live across the switch from fan-out to the chat's own stream get every message
    once, in order; afterwards a message is one stored entry whatever the chat's size."""
    hub, store = services.realtime, services.store
    people = await users(services, FANOUT_MAX + 3)
    owner, *others = people
    view, _ = await services.chats.create_chat(
        owner.id, ChatType.GROUP, [o.id for o in others[:FANOUT_MAX - 1]], "t")
    chat = view.chat
    small = [p.id for p in people[:FANOUT_MAX]]
    sessions = {p.id: await session(hub, p) for p in people}
    outlets = {user_id: outlet for user_id, (_, outlet) in sessions.items()}
    for i in range(5):
        await hub.send(owner.id, chat.id, f"small {i}", None)
    await services.chats.add_members(owner.id, chat.id, [p.id for p in others[FANOUT_MAX - 1:]])
    for i in range(5):
        await hub.send(owner.id, chat.id, f"large {i}", None)
    for user_id, outlet in outlets.items():
        expected = list(range(1, 11)) if user_id in small else list(range(6, 11))
        await outlet.wait_for("new_message", len(expected))
        assert outlet.seqs() == expected, user_id
        feed = sessions[user_id][0]
        await feed.settled()
        # each frame's cursor is the position after it; the last one is where the feed is
        assert outlet.frames[-1]["event_id"] == feed.cursor_text()
        assert ResumeCursor.decode(feed.cursor_text()).chats[chat.id] > 0
    assert (await store.get_chat(chat.id)).streamed
    heads = await store.stream_bounds([f"u:{owner.id}", f"c:{chat.id}"])
    before = heads[f"u:{owner.id}"][1]
    await hub.send(owner.id, chat.id, "one entry", None)
    after = await store.stream_bounds([f"u:{owner.id}", f"c:{chat.id}"])
    assert after[f"u:{owner.id}"][1] == before  # nothing copied into the members' streams
    assert after[f"c:{chat.id}"][1] == heads[f"c:{chat.id}"][1] + 1


async def test_a_large_chat_reaches_new_sessions_resumed_ones_and_stops_at_removal(
    services: Services,
) -> None:
    hub = services.realtime
    people = await users(services, FANOUT_MAX + 2)
    owner, *others = people
    view, _ = await services.chats.create_chat(owner.id, ChatType.GROUP,
                                               [o.id for o in others], "big")
    chat = view.chat
    leaver = others[0]
    feed, first = await session(hub, leaver)
    await hub.send(owner.id, chat.id, "one", None)
    await first.wait_for("new_message", 1)
    cursor = first.frames[-1]["event_id"]
    assert ResumeCursor.decode(cursor).chats == {chat.id: 2}  # chat_created, then "one"
    await feed.close()
    await hub.send(owner.id, chat.id, "two", None)
    await services.chats.leave(leaver.id, chat.id, leaver.id)
    await hub.send(owner.id, chat.id, "three", None)
    again_feed, again = await session(hub, leaver, cursor)
    _, fresh = await session(hub, others[1])
    await hub.send(owner.id, chat.id, "four", None)
    await fresh.wait_for("new_message", 1)
    assert [f["message"]["text"] for f in fresh.of("new_message")] == ["four"]
    # The removed member's resumed session follows the chat no more: nothing of it after the
    # cursor (a cursor names no user, so a chat's stream is read only for its members).
    await again_feed.settled()
    assert again.of("new_message") == [] and ResumeCursor.decode(
        again_feed.cursor_text()).chats == {}


async def test_a_live_member_removed_from_a_large_chat_gets_the_removal_and_nothing_after(
    services: Services,
) -> None:
    hub = services.realtime
    people = await users(services, FANOUT_MAX + 2)
    owner, leaver, *others = people
    view, _ = await services.chats.create_chat(
        owner.id, ChatType.GROUP, [leaver.id, *(o.id for o in others)], "big")
    chat = view.chat
    feed, outlet = await session(hub, leaver)
    _, stays = await session(hub, others[0])
    await hub.send(owner.id, chat.id, "one", None)
    await services.chats.leave(leaver.id, chat.id, leaver.id)
    await hub.send(owner.id, chat.id, "two", None)
    await stays.wait_for("new_message", 2)
    await outlet.wait_for("member_removed", 1)
    await feed.settled()
    assert [f["message"]["text"] for f in outlet.of("new_message")] == ["one"]
    assert ResumeCursor.decode(feed.cursor_text()).chats == {}


async def test_a_message_stored_by_a_writer_that_stopped_is_announced_by_the_next(
    services: Services,
) -> None:
    """A writer that stored message 1 and stopped before writing its event (a crash): the next
    message's writer writes the event of 1 first, so sessions get 1 then 2."""
    hub, store = services.realtime, services.store
    ann, bob = await users(services, 2)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    _, outlet = await session(hub, bob)
    await store.append_messages(chat.id, [MessageDraft(ann.id, "stored, unsaid")])
    await hub.send(ann.id, chat.id, "next", None)
    await outlet.wait_for("new_message", 2)
    assert [f["message"]["text"] for f in outlet.of("new_message")] == ["stored, unsaid", "next"]


@pytest.mark.timeout(60)
async def test_a_send_the_store_fails_is_followed_by_the_events_of_what_it_stored(
    services: Services,
) -> None:
    """A send fails on the store (another process holds the write lock past the busy
    timeout) while a message stands stored without its event (what a failed or killed write
    leaves): the sender gets ``StoreUnavailable``, and once the lock is gone the chat actor
    writes the stored message's event itself, with no other request to the chat."""
    hub, store = services.realtime, services.store
    ann, bob = await users(services, 2)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    _, outlet = await session(hub, bob)
    await store.append_messages(chat.id, [MessageDraft(ann.id, "stored, unsaid")])
    other_process = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    other_process.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable):
            await hub.send(ann.id, chat.id, "during", "k1")
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()
    await outlet.wait_for("new_message", 1)
    assert [f["message"]["text"] for f in outlet.of("new_message")] == ["stored, unsaid"]
    history, _ = await store.list_messages(chat.id, None, 10)
    assert [m.text for m in history] == ["stored, unsaid"]  # the failed send stored nothing


async def test_an_event_stored_but_never_published_is_read_from_the_store(
    services: Services,
) -> None:
    """A writer that stored an event and stopped before publishing it: the session sees the
    next offset, holds it STREAM_GAP_HOLD_SECONDS, reads the missing one from the store, and
    delivers both in order."""
    hub, store = services.realtime, services.store
    ann, bob = await users(services, 2)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    _, outlet = await session(hub, bob)
    [stored] = await store.append_messages(chat.id, [MessageDraft(ann.id, "unpublished")])
    assert not isinstance(stored, SenderNotMember)
    await store.append_chat_event(chat.id, frames.new_message(stored.message),
                                  [ann.id, bob.id], message_seq=stored.message.seq)
    await hub.send(ann.id, chat.id, "published", None)
    await outlet.wait_for("new_message", 2)
    assert [f["message"]["text"] for f in outlet.of("new_message")] == ["unpublished",
                                                                         "published"]
    cursors = [f["event_id"] for f in outlet.of("new_message")]
    assert [ResumeCursor.decode(c).user_offset for c in cursors] == [1, 2]


async def test_a_send_whose_event_is_read_back_from_the_store_still_gets_its_ack(
    services: Services,
) -> None:
    """The sending session's feed gets the event of its own send from the store, not live (as
    right after it starts to follow a chat that has just grown large): it is written as the
    ack (``message_sent``, once), not as ``new_message``; another session's is not."""
    hub, store = services.realtime, services.store
    ann, bob = await users(services, 2)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    feed, outlet = await session(hub, bob)
    other_feed, other = await session(hub, bob)  # bob's other device: sent nothing
    feed.expect_ack("mine")
    [stored] = await store.append_messages(chat.id, [MessageDraft(bob.id, "from bob", "mine")])
    assert not isinstance(stored, SenderNotMember)
    await store.append_chat_event(chat.id, frames.new_message(stored.message),
                                  [ann.id, bob.id], message_seq=stored.message.seq)
    await hub.send(ann.id, chat.id, "published", None)  # the gap shows; both read it back
    await outlet.wait_for("new_message", 1)
    await other.wait_for("new_message", 2)
    [ack] = outlet.of("message_sent")
    assert ack["client_msg_id"] == "mine" and ack["message"] == stored.message.to_json()
    assert [f["type"] for f in outlet.frames] == ["message_sent", "new_message"]
    assert ResumeCursor.decode(ack["event_id"]).user_offset == 1  # its place in the stream
    assert [f["message"]["text"] for f in other.of("new_message")] == ["from bob", "published"]
    assert other.of("message_sent") == []
    # settled: the same message read again (a resume from before it) is a new_message
    start = ResumeCursor(ResumeCursor.decode(feed.cursor_text()).epoch, 0, {}).encode()
    _, again = await session(hub, bob, start)
    await again.wait_for("new_message", 2)
    assert again.of("message_sent") == []
    await feed.close()
    await other_feed.close()


async def test_a_last_event_never_published_reaches_the_session_by_the_position_check(
    services: Services,
) -> None:
    """Nothing follows the unpublished event, so no gap shows: the node's periodic position
    check finds the session behind the store's head, and — still behind at the next check —
    reads it. One check alone does not read (the event may be on its way live)."""
    hub, store = services.realtime, services.store
    ann, bob = await users(services, 2)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    feed, outlet = await session(hub, bob)
    await feed.settled()
    [stored] = await store.append_messages(chat.id, [MessageDraft(ann.id, "unpublished")])
    assert not isinstance(stored, SenderNotMember)
    await store.append_chat_event(chat.id, frames.new_message(stored.message),
                                  [ann.id, bob.id], message_seq=stored.message.seq)
    await hub.node.check_positions()
    await feed.settled()
    assert outlet.of("new_message") == []  # behind once: may be on its way
    await hub.node.check_positions()
    await outlet.wait_for("new_message", 1)
    assert [f["message"]["text"] for f in outlet.of("new_message")] == ["unpublished"]

