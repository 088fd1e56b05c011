"""The Store contract for a send batch's messages with their events
(``append_messages_with_events``; the module docstring of ``messenger/store/base.py``), run
against both adapters: SQLite stores the messages and their ``new_message`` events in one
transaction — the events exactly what ``append_chat_events`` of the same events would write,
returned with the events ``event_of`` gave — when the chat log holds every earlier message's
event and every sender is a member; otherwise (an earlier message without its event, a refused
sender) it stores the messages alone and answers ``None``, as MongoDB, which has no
transactions here, always does. A replayed ``client_msg_id`` writes no event; a failing
``event_of`` stores nothing at all on SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from messenger.models import AppendResult, ChatEvent, Message, MessageDraft, SenderNotMember
from messenger.store import Store
from tests.support.streams import entries
from tests.test_store_contract import new_group, new_user, send


def event_of_members(member_ids: tuple[str, ...]) -> Callable[[Message], ChatEvent]:
    def event_of(message: Message) -> ChatEvent:
        return ChatEvent(f"new {message.seq} {message.text}".encode(), member_ids, (), message.seq)

    return event_of


def transactional(store: Store) -> bool:
    return store.backend == "sqlite"


async def test_the_events_are_stored_with_the_messages_where_the_store_can(store: Store) -> None:
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    chat = await new_group(store, [ann, bob])
    drafts = [MessageDraft(ann.id, "one", "c1"), MessageDraft(bob.id, "two", "c2")]
    results, written = await store.append_messages_with_events(
        chat.id, drafts, event_of_members(chat.member_ids))
    assert [(r.message.seq, r.message.text, r.created) for r in results
            if isinstance(r, AppendResult)] == [(1, "one", True), (2, "two", True)]
    if not transactional(store):
        assert written is None
        assert await entries(store, f"c:{chat.id}") == []
        assert await store.last_message_event_seq(chat.id) == 0
        return
    assert written is not None
    assert [event.payload for event, _ in written] == [b"new 1 one", b"new 2 two"]
    assert [(w.chat_offset, w.user_offsets, w.existed) for _, w in written] == [
        (1, {ann.id: 1, bob.id: 1}, False), (2, {ann.id: 2, bob.id: 2}, False),
    ]
    assert [(e.offset, e.payload) for e in await entries(store, f"c:{chat.id}")] == [
        (1, b"new 1 one"), (2, b"new 2 two"),
    ]
    for user in (ann, bob):
        assert [(e.offset, e.payload, e.source) for e in await entries(store, f"u:{user.id}")] == [
            (1, b"new 1 one", (chat.id, 1)), (2, b"new 2 two", (chat.id, 2)),
        ]
    assert await store.last_message_event_seq(chat.id) == 2
    # the next batch follows on, its events too
    [again], more = await store.append_messages_with_events(
        chat.id, [MessageDraft(bob.id, "three", "c3")], event_of_members(chat.member_ids))
    assert isinstance(again, AppendResult) and again.message.seq == 3
    assert more is not None and [(w.chat_offset, w.user_offsets) for _, w in more] == [
        (3, {ann.id: 3, bob.id: 3})]


async def test_a_replay_writes_no_event(store: Store) -> None:
    ann = await new_user(store, "ann")
    chat = await new_group(store, [ann])
    event_of = event_of_members(chat.member_ids)
    await store.append_messages_with_events(chat.id, [MessageDraft(ann.id, "one", "c1")], event_of)
    [replay], written = await store.append_messages_with_events(
        chat.id, [MessageDraft(ann.id, "one", "c1")], event_of)
    assert isinstance(replay, AppendResult) and not replay.created and replay.message.seq == 1
    assert written == []  # no new message: nothing to write, on every adapter
    expected = 1 if transactional(store) else 0
    assert len(await entries(store, f"c:{chat.id}")) == expected


async def test_an_earlier_message_without_its_event_leaves_the_events_to_the_caller(
    store: Store,
) -> None:
    ann = await new_user(store, "ann")
    chat = await new_group(store, [ann])
    await send(store, chat, ann, "stored alone", "c1")  # a writer that stopped before its event
    [result], written = await store.append_messages_with_events(
        chat.id, [MessageDraft(ann.id, "two", "c2")], event_of_members(chat.member_ids))
    assert isinstance(result, AppendResult) and result.created and result.message.seq == 2
    assert written is None
    assert await entries(store, f"c:{chat.id}") == []  # the caller writes seq 1's, then 2's


async def test_a_refused_sender_leaves_the_events_to_the_caller(store: Store) -> None:
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    chat = await new_group(store, [ann])
    results, written = await store.append_messages_with_events(
        chat.id, [MessageDraft(ann.id, "one", "c1"), MessageDraft(bob.id, "not a member", "c2")],
        event_of_members(chat.member_ids))
    assert isinstance(results[0], AppendResult) and results[0].message.seq == 1
    assert results[1] == SenderNotMember(bob.id)
    assert written is None
    assert await entries(store, f"c:{chat.id}") == []


async def test_a_failing_event_stores_nothing_on_sqlite(store: Store) -> None:
    ann = await new_user(store, "ann")
    chat = await new_group(store, [ann])

    def broken(message: Message) -> ChatEvent:
        raise RuntimeError("no event")

    draft = MessageDraft(ann.id, "one", "c1")
    if not transactional(store):  # MongoDB never asks for the events: the message is stored
        [result], written = await store.append_messages_with_events(chat.id, [draft], broken)
        assert isinstance(result, AppendResult) and result.created and written is None
        return
    with pytest.raises(RuntimeError):
        await store.append_messages_with_events(chat.id, [draft], broken)
    assert (await store.get_chat(chat.id)).last_seq == 0  # type: ignore[union-attr]
    assert await entries(store, f"c:{chat.id}") == []
    [result], written = await store.append_messages_with_events(
        chat.id, [draft], event_of_members(chat.member_ids))
    assert isinstance(result, AppendResult) and result.created and result.message.seq == 1
    assert written is not None and len(written) == 1


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    from messenger.store.sqlite import SQLiteStore

    adapter = SQLiteStore(tmp_path / "db.sqlite3")
    await adapter.migrate()
    yield adapter
    await adapter.close()


async def test_sqlite_a_batch_of_replays_and_new_messages(sqlite_store: Store) -> None:
    """Replays (in any order, one repeated within the batch) take no seq and write no event;
    the new messages' events follow on in every member's stream, gap-free."""
    store = sqlite_store
    users = [await new_user(store, f"user{n}") for n in range(3)]
    chat = await new_group(store, users)
    event_of = event_of_members(chat.member_ids)
    first = [MessageDraft(users[n % 3].id, f"m{n}", f"c{n}") for n in range(10)]
    results, written = await store.append_messages_with_events(chat.id, first, event_of)
    assert [r.message.seq for r in results if isinstance(r, AppendResult)] == list(range(1, 11))
    assert written is not None and len(written) == 10
    # replays of 1..10 mixed with 11 new ones, the last one repeated within the batch
    second = [*first[::-1], *(MessageDraft(users[n % 3].id, f"m{n}", f"c{n}")
                              for n in range(10, 21)), MessageDraft(users[2].id, "m20", "c20")]
    results, written = await store.append_messages_with_events(chat.id, second, event_of)
    assert [(r.message.seq, r.created) for r in results if isinstance(r, AppendResult)] == [
        *((seq, False) for seq in range(10, 0, -1)), *((seq, True) for seq in range(11, 22)),
        (21, False)]
    assert written is not None
    assert [(w.chat_offset, sorted(w.user_offsets.values())) for _, w in written] == [
        (seq, [seq] * 3) for seq in range(11, 22)]
    for user in users:
        assert [e.offset for e in await entries(store, f"u:{user.id}")] == list(range(1, 22))
    view = await store.get_chat_view(chat.id, users[2].id)
    assert view is not None and view.read_seq == 21  # the last sender's read position
