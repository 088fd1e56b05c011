"""RecentMessages: a history page read again reuses the same Message objects (and their
rendering), which always equal what is stored; the cache is bounded."""

from __future__ import annotations

from pathlib import Path

import orjson

from messenger.models import ChatType, MessageDraft
from messenger.store.recent_messages import RecentMessages
from messenger.store.sqlite import SQLiteStore


async def test_a_page_read_again_is_the_same_objects_and_bytes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.migrate()
    try:
        ann = await store.create_user("ann@example.com", b"h", "Ann")
        chat, _ = await store.create_chat(ChatType.GROUP, [ann.id], "t", None)
        await store.append_messages(chat.id, [MessageDraft(ann.id, f"m{i}") for i in range(5)])
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
