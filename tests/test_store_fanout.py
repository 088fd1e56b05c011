"""The Store contract for the fan-out of a chat's events (``append_chat_event``,
``complete_fanouts``; docs/REALTIME_STREAMS.md), run against both adapters like
``tests/test_store_streams.py``: a large chat's event is one chat-log entry; a small chat's
reaches each recipient's user stream once, with its source; two writers (two store objects on
one SQLite file, or on one mongoeco database) keep every user stream in chat-offset order and
gap-free; a fan-out left half-done (the adapter's own steps run alone, as a writer that died
between them would leave it) is completed by the chat's next event, or by the sweep, in order,
without a duplicate.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.models import ChatEventWrite
from messenger.store import Store, StoreError
from tests.support.streams import ANN, BOB, CHAT, CID, MEMBERS, OTHER_CHAT, entries


async def user_stream(store: Store, user_id: str) -> list[tuple[int, tuple[str, int] | None]]:
    """``(offset, source)`` of each entry of the user's stream."""
    return [(entry.offset, entry.source) for entry in await entries(store, f"u:{user_id}")]


def later() -> datetime:
    return utcnow() + timedelta(hours=1)


async def half_done(store: Store, chat_id: str, payload: bytes, reached: list[str]) -> int:
    """What a writer that died after the chat-log append and the copies to ``reached``
    leaves behind: the adapter's own steps of ``append_chat_event``, stopped there."""
    chat_offset: int = await store.append_chat_log(chat_id, payload, MEMBERS)  # type: ignore[attr-defined]
    if reached:
        await store.fan_out_entry(chat_id, chat_offset, payload, reached)  # type: ignore[attr-defined]
    return chat_offset


async def test_a_large_chats_event_is_one_chat_log_entry(store: Store) -> None:
    assert await store.append_chat_event(CHAT, b"big", None) == ChatEventWrite(1, {})
    assert await store.append_chat_event(CHAT, b"bigger", None) == ChatEventWrite(2, {})
    log = await entries(store, f"c:{CHAT}")
    assert [(e.offset, e.payload, e.source) for e in log] == [
        (1, b"big", None), (2, b"bigger", None),
    ]
    for user_id in MEMBERS:
        assert await user_stream(store, user_id) == []
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_a_small_chats_event_reaches_each_recipient_once(store: Store) -> None:
    await store.append_stream(f"u:{BOB}", [b"bob's own"])  # a user stream already in use
    first = await store.append_chat_event(CHAT, b"hello", MEMBERS)
    assert first == ChatEventWrite(1, {ANN: 1, BOB: 2, CID: 1})
    second = await store.append_chat_event(CHAT, b"again", [ANN, BOB, ANN])  # repeats: once
    assert second == ChatEventWrite(2, {ANN: 2, BOB: 3})
    log = await entries(store, f"c:{CHAT}")
    assert [(e.offset, e.payload, e.source) for e in log] == [
        (1, b"hello", None), (2, b"again", None),
    ]
    ann = await entries(store, f"u:{ANN}")
    assert [(e.offset, e.payload, e.source) for e in ann] == [
        (1, b"hello", (CHAT, 1)), (2, b"again", (CHAT, 2)),
    ]
    assert await user_stream(store, BOB) == [(1, None), (2, (CHAT, 1)), (3, (CHAT, 2))]
    assert await user_stream(store, CID) == [(1, (CHAT, 1))]
    assert await store.stream_bounds([f"u:{ANN}", f"c:{CHAT}"]) == {
        f"u:{ANN}": (0, 2), f"c:{CHAT}": (0, 2),
    }
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_no_recipients_is_a_complete_entry(store: Store) -> None:
    assert await store.append_chat_event(CHAT, b"alone", []) == ChatEventWrite(1, {})
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_a_repeated_fan_out_is_a_no_op(store: Store) -> None:
    write = await store.append_chat_event(CHAT, b"once", MEMBERS)
    again = await store.fan_out_entry(CHAT, 1, b"once", MEMBERS)  # type: ignore[attr-defined]
    assert again == write.user_offsets
    await store.append_chat_event(CHAT, b"twice", MEMBERS)
    assert await store.fan_out_entry(CHAT, 1, b"once", [CID]) == {CID: 1}  # type: ignore[attr-defined]
    for user_id in MEMBERS:
        assert await user_stream(store, user_id) == [(1, (CHAT, 1)), (2, (CHAT, 2))]


async def test_malformed_ids_are_refused(store: Store) -> None:
    for chat_id, recipients in [
        ("nope", None), (CHAT.upper(), MEMBERS), (CHAT, ["nope"]), (CHAT, [ANN, 7]),
    ]:
        with pytest.raises(StoreError):
            await store.append_chat_event(chat_id, b"x", recipients)  # type: ignore[arg-type]
    assert await entries(store, f"c:{CHAT}") == []


async def test_two_writers_keep_every_user_stream_in_chat_order(
    store: Store, twin: Store
) -> None:
    async def write(writer: Store, name: str) -> list[ChatEventWrite]:
        results: list[ChatEventWrite] = []
        for n in range(20):
            results.append(await writer.append_chat_event(CHAT, f"{name}{n}".encode(), MEMBERS))
        return results

    async def burst(writer: Store, name: str) -> list[ChatEventWrite]:  # several in flight
        return list(await asyncio.gather(
            *(writer.append_chat_event(CHAT, f"{name}{n}".encode(), MEMBERS) for n in range(10))
        ))

    writes = [w for ws in await asyncio.gather(
        write(store, "a"), write(twin, "b"), burst(store, "c"), burst(twin, "d")
    ) for w in ws]
    assert sorted(w.chat_offset for w in writes) == list(range(1, 61))
    log = {e.offset: e.payload for e in await entries(store, f"c:{CHAT}")}
    assert sorted(log) == list(range(1, 61))
    for user_id in MEMBERS:
        stream = await entries(twin, f"u:{user_id}")
        assert [e.offset for e in stream] == list(range(1, 61))  # gap-free, each once
        assert [e.source for e in stream] == [(CHAT, n) for n in range(1, 61)]  # chat order
        assert [e.payload for e in stream] == [log[n] for n in range(1, 61)]
        assert {w.user_offsets[user_id] for w in writes} == set(range(1, 61))
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_the_next_event_completes_a_half_done_fan_out_first(
    store: Store, twin: Store
) -> None:
    await half_done(store, CHAT, b"one", [BOB])
    await half_done(store, CHAT, b"two", [])
    for user_id in MEMBERS:  # delayed, not lost: only what was reached is there
        assert await user_stream(store, user_id) == ([(1, (CHAT, 1))] if user_id == BOB else [])
    assert await twin.append_chat_event(CHAT, b"three", MEMBERS) == ChatEventWrite(
        3, {ANN: 3, BOB: 3, CID: 3}
    )
    for user_id in MEMBERS:
        stream = await entries(store, f"u:{user_id}")
        assert [(e.offset, e.source, e.payload) for e in stream] == [
            (1, (CHAT, 1), b"one"), (2, (CHAT, 2), b"two"), (3, (CHAT, 3), b"three"),
        ]
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]


async def test_the_sweep_completes_old_half_done_fan_outs_in_order(
    store: Store, twin: Store
) -> None:
    await half_done(store, CHAT, b"one", [ANN, CID])
    await half_done(store, OTHER_CHAT, b"other", [])
    await half_done(store, CHAT, b"two", [ANN])
    before = utcnow() - timedelta(hours=1)
    assert await twin.complete_fanouts(before) == 0  # none is that old: left to writers
    assert await user_stream(store, BOB) == []
    assert await twin.complete_fanouts(later()) == 3  # type: ignore[arg-type]
    for user_id in MEMBERS:
        stream = await entries(store, f"u:{user_id}")
        sources = [e.source for e in stream]
        assert [e.offset for e in stream] == [1, 2, 3]
        assert sorted(sources, key=str) == sorted(
            [(CHAT, 1), (CHAT, 2), (OTHER_CHAT, 1)], key=str
        )
        assert sources.index((CHAT, 1)) < sources.index((CHAT, 2))  # a chat's order holds
    assert await store.complete_fanouts(later()) == 0  # type: ignore[arg-type]
    write = await store.append_chat_event(CHAT, b"three", MEMBERS)
    assert write == ChatEventWrite(3, {ANN: 4, BOB: 4, CID: 4})


# -- SQLite adapter specifics --------------------------------------------------------------------
async def test_sqlite_fan_out_queries_use_indexes(tmp_path: Path) -> None:
    from messenger.store import sqlite_streams as adapter
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    await sqlite_store.close()
    cases = {
        "source": (adapter.SQL_SOURCE_OFFSET, (f"u:{ANN}", CHAT, 1)),
        "pending": (adapter.SQL_PENDING_FANOUTS, (f"c:{CHAT}", 5)),
        "mark": (adapter.SQL_MARK_FANNED, (f"c:{CHAT}", 5)),
        "old pending": (adapter.SQL_OLD_PENDING_FANOUTS, (0,)),
    }
    with closing(sqlite3.connect(path)) as conn:
        for name, (sql, params) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            scans = [step for step in plan if step.startswith("SCAN")
                     and "USING INDEX stream_entries_fanout_pending" not in step]
            assert scans == [], (name, plan)

