"""The Store contract for batches of a chat's events (``append_chat_events``;
docs/REALTIME_STREAMS.md), run against both adapters like ``tests/test_store_fanout.py``: a batch
gives exactly what the same ``append_chat_event`` calls one by one give (chat offsets, user
offsets, ``existed``, what the streams hold), for fanned-out, streamed and marked events, with
message seqs already in the chat log or repeated within the batch; a malformed event writes
nothing; an empty batch writes nothing; a batch completes a half-done fan-out first, like the
single call; two writers (two store objects on one SQLite file, or on one mongoeco database)
racing batches of the same message seqs write each seq's event once, in seq order, and keep each
user stream gap-free and in chat-offset order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.models import ChatEvent, ChatEventWrite
from messenger.store import Store, StoreError
from tests.support.streams import ANN, BOB, CHAT, CID, MEMBERS, OTHER_CHAT, entries

#: ``(offset, payload, source, marker)`` of an entry.
type Seen = tuple[int, bytes, tuple[str, int] | None, bool]


async def seen(store: Store, stream: str) -> list[Seen]:
    return [(e.offset, e.payload, e.source, e.marker) for e in await entries(store, stream)]


def later() -> datetime:
    return utcnow() + timedelta(hours=1)


class World:
    """A chat and its users, so one store can hold two copies of a scenario side by side."""

    def __init__(self, tag: str) -> None:
        self.chat = tag * 24
        self.users = tuple(f"{tag}{n}".ljust(24, "0") for n in range(3))

    def user(self, index: int) -> str:
        return self.users[index]

    def event(self, payload: bytes, recipients: tuple[int, ...] | None,
              markers: tuple[int, ...] = (), seq: int | None = None) -> ChatEvent:
        return ChatEvent(
            payload,
            None if recipients is None else tuple(self.users[i] for i in recipients),
            tuple(self.users[i] for i in markers),
            seq,
        )

    def plain(self, write: ChatEventWrite) -> tuple[int, dict[int, int], bool]:
        """The write with user indexes for user ids."""
        index = {user_id: n for n, user_id in enumerate(self.users)}
        return write.chat_offset, {index[u]: o for u, o in write.user_offsets.items()}, \
            write.existed

    async def streams(self, store: Store) -> list[list[tuple[int, bytes, int | None, bool]]]:
        """The chat log and each user's stream, with the chat left out of the sources."""
        found = []
        for stream in (f"c:{self.chat}", *(f"u:{u}" for u in self.users)):
            found.append([
                (offset, payload, None if source is None else source[1], marker)
                for offset, payload, source, marker in await seen(store, stream)
            ])
        return found


def scenario(world: World) -> tuple[list[ChatEvent], list[ChatEvent]]:
    """Events written before, and the batch: fanned-out and streamed events, markers, empty
    recipients, message seqs new, already in the chat log, and repeated within the batch."""
    e = world.event
    before = [e(b"m1", (0, 1, 2), seq=1), e(b"m3", (0, 1), seq=3), e(b"read", (1, 2))]
    batch = [
        e(b"m1 again", (0, 1, 2), seq=1),  # existed
        e(b"m2", (0, 1, 2), seq=2),
        e(b"m3 again", None, (0,), seq=3),  # existed (and no markers written)
        e(b"m4", (1,), seq=4),
        e(b"typing-ish", None),  # the chat-log entry alone
        e(b"marks", None, (0, 2, 0), seq=5),  # markers, a repeat once
        e(b"nobody", ()),  # no recipients: a complete entry
        e(b"m4 again", (0, 1, 2), seq=4),  # existed: earlier in this very batch
        e(b"m6", (2, 0, 2), seq=6),
        e(b"big", None, seq=7),
    ]
    return before, batch


@pytest.mark.parametrize("round_copies", [None, 2], ids=["one round", "rounds of 2 copies"])
async def test_a_batch_gives_what_the_same_single_calls_give(
    store: Store, round_copies: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if round_copies is not None:  # MongoDB writes a batch's copies in rounds of this many
        from messenger.store import mongo_streams

        monkeypatch.setattr(mongo_streams, "FAN_OUT_ROUND_COPIES", round_copies)
    batched, single = World("a"), World("b")
    for world in (batched, single):
        await store.append_stream(f"u:{world.user(1)}", [b"own"])  # a stream already in use
        before, _ = scenario(world)
        for event in before:
            await store.append_chat_event(world.chat, event.payload, event.recipients,
                                          event.markers, event.message_seq)
    _, batch = scenario(batched)
    writes = await store.append_chat_events(batched.chat, batch)
    _, events = scenario(single)
    one_by_one = [
        await store.append_chat_event(single.chat, event.payload, event.recipients,
                                      event.markers, event.message_seq)
        for event in events
    ]
    assert [batched.plain(w) for w in writes] == [single.plain(w) for w in one_by_one]
    assert await batched.streams(store) == await single.streams(store)
    assert [w.existed for w in writes] == [
        True, False, True, False, False, False, False, True, False, False,
    ]
    assert await store.last_message_event_seq(batched.chat) == 7
    assert await store.complete_fanouts(later()) == 0


async def test_a_mixed_batch_is_written_in_order(store: Store) -> None:
    await store.append_stream(f"u:{CID}", [b"own"])
    await store.append_chat_event(CHAT, b"m1", MEMBERS, message_seq=1)
    await store.append_chat_event(CHAT, b"m3", None, [BOB], message_seq=3)
    writes = await store.append_chat_events(CHAT, [
        ChatEvent(b"m1!", MEMBERS, (), 1),
        ChatEvent(b"m2", (ANN, BOB), (), 2),
        ChatEvent(b"m3!", (ANN,), (), 3),
        ChatEvent(b"added", None, (ANN, CID)),
        ChatEvent(b"m4", None, (), 4),
        ChatEvent(b"m5", (CID, ANN), (), 5),
        ChatEvent(b"m5!", (BOB,), (), 5),
    ])
    assert writes == [
        ChatEventWrite(1, {}, existed=True),
        ChatEventWrite(3, {ANN: 2, BOB: 3}),
        ChatEventWrite(2, {}, existed=True),
        ChatEventWrite(4, {ANN: 3, CID: 3}),
        ChatEventWrite(5, {}),
        ChatEventWrite(6, {CID: 4, ANN: 4}),
        ChatEventWrite(6, {}, existed=True),
    ]
    assert await seen(store, f"c:{CHAT}") == [
        (1, b"m1", None, False), (2, b"m3", None, False), (3, b"m2", None, False),
        (4, b"added", None, False), (5, b"m4", None, False), (6, b"m5", None, False),
    ]
    assert await seen(store, f"u:{ANN}") == [
        (1, b"m1", (CHAT, 1), False), (2, b"m2", (CHAT, 3), False),
        (3, b"added", (CHAT, 4), True), (4, b"m5", (CHAT, 6), False),
    ]
    assert await seen(store, f"u:{BOB}") == [
        (1, b"m1", (CHAT, 1), False), (2, b"m3", (CHAT, 2), True), (3, b"m2", (CHAT, 3), False),
    ]
    assert await seen(store, f"u:{CID}") == [
        (1, b"own", None, False), (2, b"m1", (CHAT, 1), False),
        (3, b"added", (CHAT, 4), True), (4, b"m5", (CHAT, 6), False),
    ]
    assert await store.latest_marker(CID, CHAT) == (3, 4)
    assert await store.last_message_event_seq(CHAT) == 5
    assert await store.complete_fanouts(later()) == 0


async def test_an_empty_batch_writes_nothing(store: Store) -> None:
    assert await store.append_chat_events(CHAT, []) == []
    assert await store.stream_bounds([f"c:{CHAT}"]) == {f"c:{CHAT}": (0, 0)}


async def test_a_malformed_event_anywhere_in_the_batch_writes_nothing(store: Store) -> None:
    good = ChatEvent(b"fine", MEMBERS, (), 1)
    for bad in [
        ChatEvent(b"x", MEMBERS, (ANN,)),  # recipients and markers
        ChatEvent(b"x", (ANN, "nope")),
        ChatEvent(b"x", None, (7,)),  # type: ignore[arg-type]
        ChatEvent(b"x", MEMBERS, (), 0),
        ChatEvent(b"x", MEMBERS, (), True),
    ]:
        with pytest.raises(StoreError):
            await store.append_chat_events(CHAT, [good, good, bad])
    with pytest.raises(StoreError):
        await store.append_chat_events("nope", [good])
    assert await entries(store, f"c:{CHAT}") == []
    for user_id in MEMBERS:
        assert await entries(store, f"u:{user_id}") == []


async def test_a_batch_completes_a_half_done_fan_out_first(store: Store, twin: Store) -> None:
    # A writer that died after its chat-log entries and one copy: the adapter's own steps.
    first: int = await store.append_chat_log(CHAT, b"one", MEMBERS)  # type: ignore[attr-defined]
    await store.append_chat_log(CHAT, b"two", None, [CID])  # type: ignore[attr-defined]
    await store.fan_out_entry(CHAT, first, b"one", [BOB])  # type: ignore[attr-defined]
    # Streamed events alone complete nothing, as single calls would not.
    assert await twin.append_chat_events(CHAT, [ChatEvent(b"big", None)]) == [
        ChatEventWrite(3, {})
    ]
    assert await seen(store, f"u:{ANN}") == []
    writes = await twin.append_chat_events(CHAT, [
        ChatEvent(b"three", (ANN, CID)), ChatEvent(b"four", MEMBERS),
    ])
    assert writes == [ChatEventWrite(4, {ANN: 2, CID: 3}), ChatEventWrite(5, {ANN: 3, BOB: 2,
                                                                            CID: 4})]
    assert await seen(store, f"u:{ANN}") == [
        (1, b"one", (CHAT, 1), False), (2, b"three", (CHAT, 4), False),
        (3, b"four", (CHAT, 5), False),
    ]
    assert await seen(store, f"u:{BOB}") == [
        (1, b"one", (CHAT, 1), False), (2, b"four", (CHAT, 5), False),
    ]
    assert await seen(store, f"u:{CID}") == [
        (1, b"one", (CHAT, 1), False), (2, b"two", (CHAT, 2), True),
        (3, b"three", (CHAT, 4), False), (4, b"four", (CHAT, 5), False),
    ]
    assert await store.complete_fanouts(later()) == 0


async def test_a_batch_of_known_seqs_completes_their_half_done_fan_out(
    store: Store, twin: Store
) -> None:
    chat_offset: int = await store.append_chat_log(  # type: ignore[attr-defined]
        CHAT, b"m1", MEMBERS, message_seq=1
    )
    await store.fan_out_entry(CHAT, chat_offset, b"m1", [CID])  # type: ignore[attr-defined]
    # existed, and completed by this call: its copies, which nobody has published yet
    assert await twin.append_chat_events(CHAT, [ChatEvent(b"m1!", MEMBERS, (), 1)]) == [
        ChatEventWrite(1, {user_id: 1 for user_id in MEMBERS}, existed=True)
    ]
    assert await twin.append_chat_events(CHAT, [ChatEvent(b"m1!", MEMBERS, (), 1)]) == [
        ChatEventWrite(1, {}, existed=True)  # complete already: nothing to publish
    ]
    for user_id in MEMBERS:
        assert await seen(store, f"u:{user_id}") == [(1, b"m1", (CHAT, 1), False)]
    assert await store.complete_fanouts(later()) == 0


async def test_two_writers_racing_batches_of_the_same_seqs_write_each_once(
    store: Store, twin: Store
) -> None:
    last = 18

    def batches(size: int, name: str, recipients: tuple[str, ...] | None) -> list[list[ChatEvent]]:
        return [
            [ChatEvent(f"{name}:{seq}".encode(), recipients, (), seq)
             for seq in range(start, min(start + size, last + 1))]
            for start in range(1, last + 1, size)
        ]

    async def write(writer: Store, chat_id: str, runs: list[list[ChatEvent]]
                    ) -> list[tuple[int, ChatEventWrite]]:
        results = []
        for run in runs:  # in seq order, as a chat actor writes them
            writes = await writer.append_chat_events(chat_id, run)
            results += [(e.message_seq or 0, w) for e, w in zip(run, writes, strict=True)]
        return results

    small, large = await asyncio.gather(
        asyncio.gather(
            write(store, CHAT, batches(4, "a", MEMBERS)),
            write(twin, CHAT, batches(3, "b", MEMBERS)),
            write(store, CHAT, batches(5, "c", MEMBERS)),  # one process racing itself
        ),
        asyncio.gather(
            write(store, OTHER_CHAT, batches(4, "d", None)),
            write(twin, OTHER_CHAT, batches(6, "e", None)),
        ),
    )
    for chat_id, results in [(CHAT, small), (OTHER_CHAT, large)]:
        log = await entries(twin, f"c:{chat_id}")
        assert [e.offset for e in log] == list(range(1, last + 1))  # one entry per seq
        seqs = [int(e.payload.split(b":")[1]) for e in log]
        assert seqs == list(range(1, last + 1))  # in seq order
        writes = [w for ws in results for w in ws]
        for seq in range(1, last + 1):
            of_seq = [w for s, w in writes if s == seq]
            assert sorted(w.existed for w in of_seq) == [False] + [True] * (len(results) - 1)
            assert {w.chat_offset for w in of_seq} == {seq}  # the losers got the winner's
    user_offsets: dict[str, set[tuple[int, int]]] = {user_id: set() for user_id in MEMBERS}
    for seq, write in [w for ws in small for w in ws]:
        if not write.existed:
            for user_id, offset in write.user_offsets.items():
                user_offsets[user_id].add((offset, seq))
    for user_id in MEMBERS:  # each event once in each user stream, gap-free, in chat order
        stream = await entries(store, f"u:{user_id}")
        assert [e.offset for e in stream] == list(range(1, last + 1))
        assert [e.source for e in stream] == [(CHAT, n) for n in range(1, last + 1)]
        assert user_offsets[user_id] <= {(e.offset, e.source[1]) for e in stream if e.source}
    assert await store.last_message_event_seq(CHAT) == last
    assert await store.complete_fanouts(later()) == 0


# -- SQLite adapter specifics --------------------------------------------------------------------
async def test_sqlite_writes_a_batch_in_one_transaction(tmp_path: Path) -> None:
    """A batch whose last entry the database refuses (a trigger) leaves none of it: the
    whole batch was one transaction."""
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON stream_entries "
            "WHEN NEW.payload = x'626f6f6d' BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
        conn.commit()
    try:
        with pytest.raises(StoreError):
            await sqlite_store.append_chat_events(CHAT, [
                ChatEvent(b"one", MEMBERS, (), 1), ChatEvent(b"two", None, (ANN,), 2),
                ChatEvent(b"boom", MEMBERS, (), 3),
            ])
        for stream in (f"c:{CHAT}", *(f"u:{u}" for u in MEMBERS)):
            assert await entries(sqlite_store, stream) == []
        assert await sqlite_store.last_message_event_seq(CHAT) == 0
        assert await sqlite_store.append_chat_events(CHAT, [
            ChatEvent(b"one", MEMBERS, (), 1), ChatEvent(b"two", None, (ANN,), 2),
        ]) == [ChatEventWrite(1, {ANN: 1, BOB: 1, CID: 1}), ChatEventWrite(2, {ANN: 2})]
    finally:
        await sqlite_store.close()


async def test_sqlite_copies_read_their_payload_from_the_chat_log_and_trims_keep_it(
    tmp_path: Path,
) -> None:
    """A batch's copies store no payload of their own: reads give the chat-log entry's. A trim
    keeps that entry as long as a copy is readable, also when the clock stepped back between
    two of the chat's entries (a later entry older than an earlier one's copies)."""
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    try:
        await sqlite_store.append_chat_events(CHAT, [ChatEvent(b"one", MEMBERS, (), 1),
                                                     ChatEvent(b"two", MEMBERS, (), 2)])
        with closing(sqlite3.connect(path)) as conn:
            stored = conn.execute(
                "SELECT stream, offset, length(payload) FROM stream_entries ORDER BY stream, offset"
            ).fetchall()
            assert (f"c:{CHAT}", 1, 3) in stored and (f"c:{CHAT}", 2, 3) in stored
            assert {(s, o, n) for s, o, n in stored if s.startswith("u:")} == {
                (f"u:{u}", o, 0) for u in MEMBERS for o in (1, 2)}
            # the clock stepped back: the chat's later entry looks older than the first
            conn.execute("UPDATE stream_entries SET created_at = 1000 WHERE stream = ? AND "
                         "offset = 2", (f"c:{CHAT}",))
            conn.commit()
        for user_id in MEMBERS:
            assert [(e.offset, e.payload, e.source) for e in await entries(sqlite_store,
                                                                           f"u:{user_id}")] == [
                (1, b"one", (CHAT, 1)), (2, b"two", (CHAT, 2))]
        # A cutoff between the two: the chat log's floor moves to 2, the users' streams keep
        # both copies (made after the cutoff) and still read entry 1's payload.
        await sqlite_store.trim_streams(datetime(2000, 1, 1, tzinfo=UTC))
        bounds = await sqlite_store.stream_bounds([f"c:{CHAT}", f"u:{ANN}"])
        assert bounds[f"c:{CHAT}"][0] == 2 and bounds[f"u:{ANN}"][0] == 0
        assert [e.payload for e in await entries(sqlite_store, f"u:{ANN}")] == [b"one", b"two"]
    finally:
        await sqlite_store.close()
