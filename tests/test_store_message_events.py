"""The Store contract for a message's event in its chat log (``append_chat_event`` with
``message_seq``, ``last_message_event_seq``, ``messages_in_seq_range``; docs/REALTIME_STREAMS.md),
run against both adapters like ``tests/test_store_fanout.py``: the event of a message seq is in
a chat log once, also when two writers (two store objects on one SQLite file, or on one mongoeco
database) race on it; a repeat writes nothing and says ``existed`` with the original chat
offset; the chat log's largest message seq stays exact after other events and after trims; the
stored messages of a seq range come back bounded and in seq order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.models import ChatEventWrite, MessageDraft
from messenger.store import Store, StoreError
from messenger.store.base import MESSAGE_RANGE_MAX
from messenger.store.mongo_docs import duplicate_on
from tests.support.streams import ANN, BOB, CHAT, CID, MEMBERS, OTHER_CHAT, entries
from tests.test_store_contract import new_group, new_user


def later() -> datetime:
    return utcnow() + timedelta(hours=1)


async def test_a_repeated_message_seq_writes_nothing_and_says_it_existed(store: Store) -> None:
    first = await store.append_chat_event(CHAT, b"m1", MEMBERS, message_seq=1)
    assert first == ChatEventWrite(1, {ANN: 1, BOB: 1, CID: 1}, existed=False)
    await store.append_chat_event(CHAT, b"read", MEMBERS)  # another event: no seq
    again = await store.append_chat_event(CHAT, b"m1 again", MEMBERS, message_seq=1)
    assert again == ChatEventWrite(1, {}, existed=True)
    assert [(e.offset, e.payload) for e in await entries(store, f"c:{CHAT}")] == [
        (1, b"m1"), (2, b"read"),
    ]
    for user_id in MEMBERS:  # no copy of the repeat
        assert [e.payload for e in await entries(store, f"u:{user_id}")] == [b"m1", b"read"]
    # A large chat's (markers or none) the same way; the rule is per chat log.
    assert await store.append_chat_event(OTHER_CHAT, b"big", None, [ANN], message_seq=1) == (
        ChatEventWrite(1, {ANN: 3})
    )
    assert await store.append_chat_event(OTHER_CHAT, b"big!", None, [BOB], message_seq=1) == (
        ChatEventWrite(1, {}, existed=True)
    )
    assert await store.append_chat_event(OTHER_CHAT, b"big2", None, message_seq=2) == (
        ChatEventWrite(2, {})
    )
    assert await store.append_chat_event(OTHER_CHAT, b"big2!", None, message_seq=2) == (
        ChatEventWrite(2, {}, existed=True)
    )
    assert [e.payload for e in await entries(store, f"c:{OTHER_CHAT}")] == [b"big", b"big2"]
    assert [e.payload for e in await entries(store, f"u:{BOB}")] == [b"m1", b"read"]  # no marker


async def test_events_without_a_message_seq_are_never_deduplicated(store: Store) -> None:
    for n in range(3):
        write = await store.append_chat_event(CHAT, b"same", None)
        assert write == ChatEventWrite(n + 1, {}, existed=False)
    assert await store.last_message_event_seq(CHAT) == 0


async def test_malformed_message_seqs_are_refused(store: Store) -> None:
    for seq in [0, -1, True, "1", 1.0]:
        with pytest.raises(StoreError):
            await store.append_chat_event(CHAT, b"x", MEMBERS, message_seq=seq)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await store.last_message_event_seq("nope")
    assert await entries(store, f"c:{CHAT}") == []


async def test_one_process_racing_itself_on_a_seq_writes_one_entry(store: Store) -> None:
    writes = await asyncio.gather(
        *(store.append_chat_event(CHAT, f"w{n}".encode(), MEMBERS, message_seq=1)
          for n in range(4))
    )
    assert [w.existed for w in writes].count(False) == 1
    assert {w.chat_offset for w in writes} == {1}
    assert len(await entries(store, f"c:{CHAT}")) == 1
    for user_id in MEMBERS:
        assert [e.offset for e in await entries(store, f"u:{user_id}")] == [1]


async def test_two_writers_racing_on_each_seq_write_one_entry_each(
    store: Store, twin: Store
) -> None:
    seqs = range(1, 16)

    async def write(writer: Store, name: str) -> list[tuple[int, ChatEventWrite]]:
        async def one(seq: int) -> tuple[int, ChatEventWrite]:
            payload = f"{name}:{seq}".encode()
            return seq, await writer.append_chat_event(CHAT, payload, MEMBERS, message_seq=seq)

        return list(await asyncio.gather(*(one(seq) for seq in seqs)))

    async def write_large(writer: Store, name: str) -> list[tuple[int, ChatEventWrite]]:
        results = []
        for seq in seqs:
            payload = f"{name}:{seq}".encode()
            write = await writer.append_chat_event(OTHER_CHAT, payload, None, message_seq=seq)
            results.append((seq, write))
        return results

    a, b, c, d = await asyncio.gather(
        write(store, "a"), write(twin, "b"), write_large(store, "c"), write_large(twin, "d")
    )
    for chat_id, writes in [(CHAT, a + b), (OTHER_CHAT, c + d)]:
        log = await entries(store, f"c:{chat_id}")
        assert [e.offset for e in log] == list(range(1, len(seqs) + 1))  # one entry per seq
        by_offset = {e.offset: e.payload for e in log}
        for seq in seqs:
            of_seq = [w for s, w in writes if s == seq]
            assert sorted(w.existed for w in of_seq) == [False, True]  # exactly one wrote it
            assert len({w.chat_offset for w in of_seq}) == 1  # the loser got the winner's
            assert by_offset[of_seq[0].chat_offset].split(b":")[1] == str(seq).encode()
        assert await twin.last_message_event_seq(chat_id) == len(seqs)
    for user_id in MEMBERS:  # each seq's event once in each user stream, gap-free
        stream = await entries(twin, f"u:{user_id}")
        assert [e.offset for e in stream] == list(range(1, len(seqs) + 1))
        assert [e.source for e in stream] == [(CHAT, n) for n in range(1, len(seqs) + 1)]
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_a_repeat_completes_an_entry_its_writer_left_half_done(
    store: Store, twin: Store
) -> None:
    chat_offset = await store.append_chat_log(  # type: ignore[attr-defined]
        CHAT, b"m1", MEMBERS, message_seq=1
    )
    await store.fan_out_entry(CHAT, chat_offset, b"m1", [ANN])  # type: ignore[attr-defined]
    # existed, completed now: every copy's offset, for the caller to publish (nobody has)
    assert await twin.append_chat_event(CHAT, b"m1 again", MEMBERS, message_seq=1) == (
        ChatEventWrite(1, {ANN: 1, BOB: 1, CID: 1}, existed=True)
    )
    for user_id in MEMBERS:
        assert [(e.offset, e.payload, e.source) for e in await entries(store, f"u:{user_id}")] == [
            (1, b"m1", (CHAT, 1)),
        ]
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]
    assert await store.append_chat_log(CHAT, b"x", MEMBERS, message_seq=1) == 1  # type: ignore[attr-defined]
    assert len(await entries(store, f"c:{CHAT}")) == 1


async def test_last_message_event_seq_follows_appends_repeats_and_other_events(
    store: Store,
) -> None:
    assert await store.last_message_event_seq(CHAT) == 0
    await store.append_chat_event(CHAT, b"m1", MEMBERS, message_seq=1)
    assert await store.last_message_event_seq(CHAT) == 1
    await store.append_chat_event(CHAT, b"m2", MEMBERS, message_seq=2)
    await store.append_chat_event(CHAT, b"m1 again", MEMBERS, message_seq=1)
    assert await store.last_message_event_seq(CHAT) == 2
    await store.append_chat_event(CHAT, b"read", MEMBERS)
    await store.append_chat_event(CHAT, b"members_added", MEMBERS)
    assert await store.last_message_event_seq(CHAT) == 2
    assert await store.last_message_event_seq(OTHER_CHAT) == 0  # per chat log
    await store.append_chat_event(OTHER_CHAT, b"m7", None, message_seq=7)
    assert await store.last_message_event_seq(OTHER_CHAT) == 7
    assert await store.last_message_event_seq(CHAT) == 2


async def test_last_message_event_seq_is_exact_after_trims(store: Store) -> None:
    for seq in (1, 2, 3):
        await store.append_chat_event(CHAT, f"m{seq}".encode(), None, message_seq=seq)
    await store.append_chat_event(CHAT, b"read", None)  # the newest entry is not a message's
    await store.append_chat_event(CHAT, b"typing-ish", None)
    # Offsets 1..5 are old; the newest (5) stays, and so does seq 3's entry (3).
    assert await store.trim_streams(later()) == 3  # type: ignore[arg-type]
    assert [e.offset for e in await store.read_stream(f"c:{CHAT}", 0, 10)] == [3, 5]
    assert await store.stream_bounds([f"c:{CHAT}"]) == {f"c:{CHAT}": (5, 5)}
    assert await store.last_message_event_seq(CHAT) == 3
    assert await store.append_chat_event(CHAT, b"m3!", None, message_seq=3) == (
        ChatEventWrite(3, {}, existed=True)
    )
    assert await store.trim_streams(later()) == 0  # type: ignore[arg-type]
    assert await store.append_chat_event(CHAT, b"m4", None, message_seq=4) == (
        ChatEventWrite(6, {})
    )
    await store.append_chat_event(CHAT, b"read", None)
    assert await store.trim_streams(later()) == 2  # type: ignore[arg-type]  # 3 and 5 go
    assert [e.offset for e in await store.read_stream(f"c:{CHAT}", 0, 10)] == [6, 7]
    assert await store.last_message_event_seq(CHAT) == 4


async def test_a_trim_keeps_the_largest_seq_not_the_newest_message_entry(store: Store) -> None:
    # The store does not order seqs (callers do): the largest seq may sit below a smaller one.
    await store.append_chat_event(CHAT, b"m5", None, message_seq=5)
    await store.append_chat_event(CHAT, b"m2", None, message_seq=2)
    await store.append_chat_event(CHAT, b"read", None)
    assert await store.trim_streams(later()) == 1  # type: ignore[arg-type]  # only seq 2's
    assert [e.payload for e in await entries(store, f"c:{CHAT}")] == [b"m5", b"read"]
    assert await store.last_message_event_seq(CHAT) == 5


async def test_messages_in_seq_range_is_bounded_and_in_seq_order(store: Store) -> None:
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    chat, other = await new_group(store, [ann, bob]), await new_group(store, [ann, bob], "b")
    for n in range(5):
        sender = ann if n % 2 else bob
        await store.append_messages(chat.id, [MessageDraft(sender.id, f"t{n + 1}")])
        await store.append_messages(other.id, [MessageDraft(sender.id, f"o{n + 1}")])

    async def seqs(first: int, last: int) -> list[tuple[int, str]]:
        found = await store.messages_in_seq_range(chat.id, first, last)
        assert all(message.chat_id == chat.id for message in found)
        return [(message.seq, message.text) for message in found]

    assert await seqs(2, 4) == [(2, "t2"), (3, "t3"), (4, "t4")]
    assert await seqs(3, 3) == [(3, "t3")]
    assert await seqs(4, 2) == []
    assert await seqs(0, 2) == [(1, "t1"), (2, "t2")]
    assert await seqs(4, 100) == [(4, "t4"), (5, "t5")]
    assert await seqs(6, 9) == []
    assert [s for s, _ in await seqs(1, MESSAGE_RANGE_MAX)] == [1, 2, 3, 4, 5]
    stored = await store.messages_in_seq_range(chat.id, 1, 5)
    page, _ = await store.list_messages(chat.id, None, 10)
    assert stored == page  # the same records as history
    with pytest.raises(StoreError):
        await store.messages_in_seq_range(chat.id, 1, MESSAGE_RANGE_MAX + 1)
    with pytest.raises(StoreError):
        await store.messages_in_seq_range(chat.id, 1, "5")  # type: ignore[arg-type]
    assert await store.messages_in_seq_range("nope", 1, 5) == []
    assert await store.messages_in_seq_range(CHAT, 1, 5) == []


# -- adapter specifics -----------------------------------------------------------------------
def test_mongo_duplicate_errors_are_told_apart_without_key_patterns() -> None:
    """Servers that give no ``keyPattern``: the index's name in the message decides (and the
    key's field names, without its quoted values)."""
    offset = {"code": 11000, "errmsg": (
        'E11000 duplicate key error collection: ms.stream_entries index: stream_offset '
        'dup key: { s: "c:ms: sc: 1", o: 5 }'
    )}
    seq = {"code": 11000, "errmsg": (
        'E11000 duplicate key error collection: ms.stream_entries index: chat_log_message_seq '
        'dup key: { : "c:x", : 5 }'
    )}
    assert duplicate_on(offset, "o")
    assert not duplicate_on(offset, "ms", "chat_log_message_seq")
    assert not duplicate_on(offset, "sc")
    assert duplicate_on(seq, "ms", "chat_log_message_seq")
    with_pattern = {"keyPattern": {"s": 1, "ms": 1}, "errmsg": "index: stream_offset dup key: {}"}
    assert duplicate_on(with_pattern, "ms", "chat_log_message_seq")
    assert not duplicate_on(with_pattern, "o")


async def test_sqlite_message_event_queries_use_indexes(tmp_path: Path) -> None:
    from messenger.store import sqlite as chats_adapter
    from messenger.store import sqlite_streams as adapter
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    await sqlite_store.close()
    cases = {
        "message event": (adapter.SQL_MESSAGE_EVENT_OFFSET, (f"c:{CHAT}", 3), None),
        "last message event": (
            adapter.SQL_LAST_MESSAGE_EVENT, (f"c:{CHAT}",), "stream_entries_message_seq"
        ),
        "trim keeping": (adapter.SQL_TRIM_STREAM_KEEPING, (f"c:{CHAT}", 5, 3, 0), None),
        "seq range": (chats_adapter.SQL_MESSAGES_IN_SEQ_RANGE, (CHAT, 1, 5, 5), None),
    }
    with closing(sqlite3.connect(path)) as conn:
        for name, (sql, params, index) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            assert [step for step in plan if step.startswith("SCAN")] == [], (name, plan)
            assert not any("TEMP B-TREE" in step for step in plan), (name, plan)
            if index:
                assert any(index in step for step in plan), (name, plan)
