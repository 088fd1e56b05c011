"""RecentMessages: a history page read again reuses the same Message objects (and their
rendering), which always equal what is stored; the cache is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from messenger.models import Chat, ChatType, MessageDraft, User
from messenger.store.recent_messages import RecentMessages
from messenger.store.sqlite import SQLiteStore


async def _chat_of_messages(tmp_path: Path, count: int) -> tuple[SQLiteStore, User, Chat]:
    """A new SQLite store with one user's group chat of ``count`` messages from them."""
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.migrate()
    ann = await store.create_user("ann@example.com", b"h", "Ann")
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id], "t", None)
    await store.append_messages(chat.id, [MessageDraft(ann.id, f"m{i}") for i in range(count)])
    return store, ann, chat


async def test_a_page_read_again_is_the_same_objects_and_bytes(tmp_path: Path) -> None:
    store, _, chat = await _chat_of_messages(tmp_path, 5)
    try:
        first, _ = await store.list_messages(chat.id, None, 50)
        again, _ = await store.list_messages(chat.id, None, 50)
        assert [m.seq for m in first] == [1, 2, 3, 4, 5]
        assert all(a is b for a, b in zip(first, again, strict=True))
        for message in again:
            assert message.json_bytes() == orjson.dumps(message.to_json())
            assert message.json_bytes() is message.json_bytes()  # encoded once
        older, _ = await store.list_messages(chat.id, 3, 50)
        assert [m.seq for m in older] == [1, 2] and older[0] is first[0]
    finally:
        await store.close()


def test_the_cache_is_bounded_oldest_first() -> None:
    built: list[str] = []

    def build(row: str) -> object:
        built.append(row)
        return object()

    recent = RecentMessages(capacity=2)
    a = recent.of("a", "a", build)  # type: ignore[arg-type]
    recent.of("b", "b", build)  # type: ignore[arg-type]
    assert recent.of("a", "a", build) is a  # type: ignore[arg-type]
    recent.of("c", "c", build)  # type: ignore[arg-type]  # drops "a", the oldest cached
    assert len(recent) == 2
    assert recent.of("a", "a", build) is not a  # type: ignore[arg-type]
    assert built == ["a", "b", "c", "a"]


async def test_sqlite_history_pages_reuse_the_json_the_store_encoded(tmp_path: Path) -> None:
    """The page's JSON is encoded once per message while it is recent: a page read again is the
    same bytes objects; a page whose messages were partly dropped from the cache (capacity 3
    here, also while another read is under way) is encoded again, in order, and equal."""
    store, ann, chat = await _chat_of_messages(tmp_path, 6)
    try:
        messages, _ = await store.list_messages(chat.id, None, 50)
        expected = [orjson.dumps(m.to_json()) for m in messages]
        first, more = await store.list_messages_json(chat.id, None, 50, ann.id)
        again, _ = await store.list_messages_json(chat.id, None, 50, ann.id)
        assert first == expected and not more
        assert all(a is b for a, b in zip(first, again, strict=True))
        store._rendered = RecentMessages(capacity=3)
        newest, more = await store.list_messages_json(chat.id, None, 3, ann.id)
        assert newest == expected[3:] and more
        # two pages at once: one's cached messages are dropped while it reads its missing ones
        both = await asyncio.gather(store.list_messages_json(chat.id, None, 6, ann.id),
                                    store.list_messages_json(chat.id, 4, 50, ann.id))
        assert both == [(expected, False), (expected[:3], False)]
        assert await store.list_messages_json(chat.id, None, 50, "0" * 24) == ([], False)
    finally:
        await store.close()
