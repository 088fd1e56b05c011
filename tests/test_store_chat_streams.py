"""The Store contract for large chats with their own stream (docs/REALTIME_STREAMS.md), run
against both adapters like ``tests/test_store_fanout.py``: ``append_chat_event`` with
``markers`` writes the chat-log entry plus one marker copy per marker user (a fan-out copy,
flagged ``StreamEntry.marker``) under the fan-out's rules, also when a writer died half-way
(the adapter's own steps run alone, completed by the next event or by the sweep);
``latest_marker`` finds a user's newest marker of a chat; ``set_chat_streamed`` /
``streamed_chats`` / ``Chat.streamed`` keep the chat's flag.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.models import ChatEventWrite
from messenger.store import Store, StoreError
from tests.support.streams import ANN, BOB, CHAT, CID, MEMBERS, OTHER_CHAT, entries
from tests.test_store_contract import new_group, new_user

#: ``(offset, payload, source, marker)`` of an entry.
type Seen = tuple[int, bytes, tuple[str, int] | None, bool]


async def seen(store: Store, stream: str) -> list[Seen]:
    return [(e.offset, e.payload, e.source, e.marker) for e in await entries(store, stream)]


def later() -> datetime:
    return utcnow() + timedelta(hours=1)


async def half_done_markers(
    store: Store, chat_id: str, payload: bytes, reached: list[str]
) -> int:
    """What a writer that died after the chat-log append and the marker copies to ``reached``
    leaves behind: the adapter's own steps of ``append_chat_event``, stopped there."""
    chat_offset: int = await store.append_chat_log(  # type: ignore[attr-defined]
        chat_id, payload, None, MEMBERS
    )
    if reached:
        await store.fan_out_entry(  # type: ignore[attr-defined]
            chat_id, chat_offset, payload, reached, marker=True
        )
    return chat_offset


async def test_markers_are_flagged_fan_out_copies(store: Store) -> None:
    await store.append_stream(f"u:{BOB}", [b"bob's own"])  # a user stream already in use
    write = await store.append_chat_event(CHAT, b"big", None, [ANN, BOB, ANN])  # repeats: once
    assert write == ChatEventWrite(1, {ANN: 1, BOB: 2})
    assert await seen(store, f"c:{CHAT}") == [(1, b"big", None, False)]
    assert await seen(store, f"u:{ANN}") == [(1, b"big", (CHAT, 1), True)]
    assert await seen(store, f"u:{BOB}") == [
        (1, b"bob's own", None, False), (2, b"big", (CHAT, 1), True),
    ]
    assert await seen(store, f"u:{CID}") == []
    assert await store.append_chat_event(CHAT, b"small", [CID]) == ChatEventWrite(2, {CID: 1})
    assert await seen(store, f"u:{CID}") == [(1, b"small", (CHAT, 2), False)]  # no marker
    assert await store.append_chat_event(CHAT, b"log only", None, []) == ChatEventWrite(3, {})
    assert [e.offset for e in await entries(store, f"c:{CHAT}")] == [1, 2, 3]
    assert await store.complete_fanouts(later()) == 0


async def test_a_repeated_marker_is_a_no_op(store: Store) -> None:
    write = await store.append_chat_event(CHAT, b"big", None, MEMBERS)
    again = await store.fan_out_entry(CHAT, 1, b"big", MEMBERS, marker=True)  # type: ignore[attr-defined]
    assert again == write.user_offsets
    for user_id in MEMBERS:
        assert await seen(store, f"u:{user_id}") == [(1, b"big", (CHAT, 1), True)]


async def test_recipients_and_markers_together_are_refused(store: Store) -> None:
    for recipients, markers in [(MEMBERS, [ANN]), ([], [ANN]), (None, ["nope"]), (None, [7])]:
        with pytest.raises(StoreError):
            await store.append_chat_event(CHAT, b"x", recipients, markers)  # type: ignore[arg-type]
    assert await entries(store, f"c:{CHAT}") == []
    assert await entries(store, f"u:{ANN}") == []


async def test_the_sweep_completes_markers_a_writer_left(store: Store, twin: Store) -> None:
    await half_done_markers(store, CHAT, b"one", [BOB])
    await half_done_markers(store, CHAT, b"two", [])
    assert await seen(store, f"u:{BOB}") == [(1, b"one", (CHAT, 1), True)]
    assert await entries(store, f"u:{ANN}") == []  # delayed, not lost
    assert await twin.complete_fanouts(utcnow() - timedelta(hours=1)) == 0  # not old yet
    assert await twin.complete_fanouts(later()) == 2
    for user_id in MEMBERS:
        assert await seen(store, f"u:{user_id}") == [
            (1, b"one", (CHAT, 1), True), (2, b"two", (CHAT, 2), True),
        ]
        assert await store.latest_marker(user_id, CHAT) == (2, 2)
    assert await store.complete_fanouts(later()) == 0


async def test_the_next_event_completes_markers_first_in_order(
    store: Store, twin: Store
) -> None:
    await half_done_markers(store, CHAT, b"one", [ANN])
    write = await twin.append_chat_event(CHAT, b"two", [ANN, BOB])  # a normal fan-out next
    assert write == ChatEventWrite(2, {ANN: 2, BOB: 2})
    assert await seen(store, f"u:{BOB}") == [
        (1, b"one", (CHAT, 1), True), (2, b"two", (CHAT, 2), False),
    ]
    assert await seen(store, f"u:{CID}") == [(1, b"one", (CHAT, 1), True)]
    await half_done_markers(twin, CHAT, b"three", [CID])
    assert await store.append_chat_event(CHAT, b"four", None, [ANN]) == ChatEventWrite(
        4, {ANN: 4}
    )
    assert await seen(store, f"u:{ANN}") == [
        (1, b"one", (CHAT, 1), True), (2, b"two", (CHAT, 2), False),
        (3, b"three", (CHAT, 3), True), (4, b"four", (CHAT, 4), True),
    ]
    assert await seen(store, f"u:{CID}") == [
        (1, b"one", (CHAT, 1), True), (2, b"three", (CHAT, 3), True),
    ]
    assert await store.complete_fanouts(later()) == 0


async def test_latest_marker_is_the_newest_of_the_chat(store: Store) -> None:
    assert await store.latest_marker(ANN, CHAT) is None
    await store.append_chat_event(CHAT, b"small", [ANN])  # a normal copy is no marker
    assert await store.latest_marker(ANN, CHAT) is None
    await store.append_stream(f"u:{ANN}", [b"own"])
    await store.append_chat_event(CHAT, b"big", None, [ANN, BOB])  # chat 2: ANN 3, BOB 1
    await store.append_chat_event(CHAT, b"log only", None)  # chat 3
    await store.append_chat_event(OTHER_CHAT, b"other", None, [ANN])  # ANN 4
    assert await store.latest_marker(ANN, CHAT) == (3, 2)
    await store.append_chat_event(CHAT, b"bigger", None, [ANN])  # chat 4: ANN 5
    await store.append_chat_event(OTHER_CHAT, b"other again", None, [ANN])  # ANN 6
    assert await store.latest_marker(ANN, CHAT) == (5, 4)
    assert await store.latest_marker(BOB, CHAT) == (1, 2)
    assert await store.latest_marker(ANN, OTHER_CHAT) == (6, 2)
    assert await store.latest_marker(CID, CHAT) is None
    assert await store.latest_marker("nope", CHAT) is None
    assert await store.latest_marker(ANN, "nope") is None


async def test_a_chat_is_flagged_streamed_once_and_for_good(store: Store) -> None:
    ann, bob, cid = [await new_user(store, name) for name in ("ann", "bob", "cid")]
    big = await new_group(store, [ann, bob], "big")
    small = await new_group(store, [ann, cid], "small")
    other = await new_group(store, [cid], "other")
    assert not big.streamed
    assert await store.streamed_chats(ann.id) == []
    await store.set_chat_streamed(big.id)
    await store.set_chat_streamed(big.id)  # idempotent
    await store.set_chat_streamed(other.id)
    await store.set_chat_streamed(new_id())  # an unknown chat: a no-op
    await store.set_chat_streamed("nope")
    found = await store.get_chat(big.id)
    assert found is not None and found.streamed
    assert "streamed" not in found.to_json()
    unflagged = await store.get_chat(small.id)
    assert unflagged is not None and not unflagged.streamed
    assert await store.streamed_chats(ann.id) == [big.id]
    assert await store.streamed_chats(bob.id) == [big.id]
    assert await store.streamed_chats(cid.id) == [other.id]
    assert await store.streamed_chats(new_id()) == []
    assert await store.streamed_chats("nope") == []
    added = await store.add_members(big.id, [cid.id])  # every Chat returned carries it
    assert added.streamed
    assert sorted(await store.streamed_chats(cid.id)) == sorted([big.id, other.id])
    assert (await store.remove_member(big.id, bob.id)).streamed
    assert await store.streamed_chats(bob.id) == []
    view = await store.get_chat_view(big.id, ann.id)
    assert view is not None and view.chat.streamed
    listed = {v.chat.id: v.chat.streamed for v in await store.list_chat_views(ann.id, 10)}
    assert listed == {big.id: True, small.id: False}


# -- SQLite adapter specifics --------------------------------------------------------------------
async def test_sqlite_chat_stream_queries_use_indexes(tmp_path: Path) -> None:
    from messenger.store import sqlite as chats_adapter
    from messenger.store import sqlite_streams as adapter
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    await sqlite_store.close()
    cases = {
        "latest marker": (adapter.SQL_LATEST_MARKER, (f"u:{ANN}", CHAT)),
        "streamed chats": (chats_adapter.SQL_STREAMED_CHATS, (ANN,)),
        "set streamed": (chats_adapter.SQL_SET_CHAT_STREAMED, (CHAT,)),
    }
    with closing(sqlite3.connect(path)) as conn:
        for name, (sql, params) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            scans = [step for step in plan if step.startswith("SCAN")]
            assert scans == [], (name, plan)
            assert not any("TEMP B-TREE" in step for step in plan), (name, plan)
