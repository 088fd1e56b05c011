"""The Store contract for streams (gap-free offsets, docs/REALTIME_STREAMS.md), run against both
adapters like ``tests/test_store_contract.py``: appends and reads, key checks, bounds, trims,
the epoch, and two writers (two store objects on one SQLite file, or on one mongoeco database)
racing for the same stream. A few SQLite-only checks (query plans, upgrade) sit at the end.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from messenger.clock import utcnow
from messenger.models import StreamEntry
from messenger.store import Store, StoreError
from tests.support.stores import on_the_same_database, open_adapter
from tests.test_store_contract import is_utc_millis, next_millisecond

HEX_ID = "0123456789abcdef01234567"
ANN = f"u:{HEX_ID}"
BOB = "u:" + "b" * 24
TEAM = "c:" + "c" * 24
MALFORMED = [
    "",
    "u",
    "u:",
    HEX_ID,
    f"x:{HEX_ID}",
    f"U:{HEX_ID}",
    f"u:{HEX_ID.upper()}",
    f"u:{HEX_ID[:-1]}",
    f"u:{HEX_ID}0",
    f"u:{HEX_ID}\n",
    f" u:{HEX_ID}",
    f"u-{HEX_ID}",
    f"uc:{HEX_ID}",
]


type Opener = Callable[[], Awaitable[Store]]


@pytest.fixture
async def twin(store: Store) -> AsyncIterator[Opener]:
    """Opens (and migrates) more store objects on the store's own database."""
    opened: list[Store] = []

    async def open_twin() -> Store:
        opened.append(on_the_same_database(store))
        await opened[-1].migrate()
        return opened[-1]

    yield open_twin
    for other in opened:
        await other.close()


@pytest.fixture
async def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens store objects on one new database of the store's adapter, not migrated yet."""
    first = open_adapter(request.node.callspec.params["store"], request, tmp_path / "fresh")
    opened = [first]

    async def open_fresh() -> Store:
        opened.append(on_the_same_database(first))
        return opened[-1]

    yield open_fresh
    for adapter in opened:
        await adapter.close()


def payload(writer: int, n: int) -> bytes:
    return orjson.dumps({"w": writer, "n": n})


async def offsets_of(store: Store, stream: str, after: int = 0) -> list[int]:
    return [entry.offset for entry in await store.read_stream(stream, after, 10_000)]


def assert_increasing(offsets: list[int]) -> None:
    assert offsets == sorted(set(offsets)), offsets


# -- append and read ---------------------------------------------------------------------------
async def test_an_empty_stream(store: Store) -> None:
    assert await store.read_stream(ANN, 0, 10) == []
    assert await store.stream_bounds([ANN]) == {ANN: (0, 0)}
    assert await store.append_stream(ANN, []) == []
    assert await store.stream_bounds([ANN]) == {ANN: (0, 0)}
    assert await store.trim_streams(utcnow() + timedelta(days=1)) == 0


async def test_offsets_start_at_one_and_are_consecutive(store: Store) -> None:
    assert await store.append_stream(ANN, [b"one"]) == [1]
    assert await store.append_stream(ANN, [b"two", b"three", b"four"]) == [2, 3, 4]
    assert await store.append_stream(ANN, [b"five"]) == [5]
    assert await store.append_stream(ANN, (bytearray(b"six"), memoryview(b"seven"))) == [6, 7]
    assert await store.stream_bounds([ANN]) == {ANN: (0, 7)}
    entries = await store.read_stream(ANN, 0, 100)
    assert [(e.offset, e.payload) for e in entries] == [
        (1, b"one"), (2, b"two"), (3, b"three"), (4, b"four"), (5, b"five"), (6, b"six"),
        (7, b"seven"),
    ]
    assert all(type(e.payload) is bytes and e.stream == ANN for e in entries)


async def test_streams_are_apart(store: Store) -> None:
    assert await store.append_stream(ANN, [b"a1", b"a2"]) == [1, 2]
    assert await store.append_stream(TEAM, [b"t1"]) == [1]
    assert await store.append_stream(BOB, [b"b1"]) == [1]
    assert await store.append_stream(ANN, [b"a3"]) == [3]
    assert [e.payload for e in await store.read_stream(TEAM, 0, 10)] == [b"t1"]
    assert [e.payload for e in await store.read_stream(BOB, 0, 10)] == [b"b1"]
    assert [e.payload for e in await store.read_stream(ANN, 0, 10)] == [b"a1", b"a2", b"a3"]


async def test_read_after_an_offset_with_a_limit(store: Store) -> None:
    before = utcnow()
    await store.append_stream(ANN, [payload(0, n) for n in range(1, 11)])
    after = utcnow()
    page = await store.read_stream(ANN, 3, 4)
    assert [e.offset for e in page] == [4, 5, 6, 7]
    assert [orjson.loads(e.payload)["n"] for e in page] == [4, 5, 6, 7]
    assert all(isinstance(e, StreamEntry) for e in page)
    assert all(before <= e.created_at <= after and is_utc_millis(e.created_at) for e in page)
    assert await offsets_of(store, ANN, 8) == [9, 10]
    assert await store.read_stream(ANN, 10, 5) == []
    assert await store.read_stream(ANN, 99, 5) == []
    assert await store.read_stream(ANN, 0, 0) == []
    assert await store.read_stream(ANN, 0, -1) == []
    assert await offsets_of(store, ANN, -5) == list(range(1, 11))


async def test_appends_in_one_process_run_one_at_a_time(store: Store) -> None:
    sizes = [1, 3, 1, 5, 2, 1, 4, 1, 1, 2]
    results = await asyncio.gather(
        *(store.append_stream(TEAM, [payload(i, k) for k in range(size)])
          for i, size in enumerate(sizes))
    )
    expected, first = [], 1
    for size in sizes:  # in the order the calls started
        expected.append(list(range(first, first + size)))
        first += size
    assert results == expected
    assert await offsets_of(store, TEAM) == list(range(1, first))


async def test_malformed_stream_keys_are_refused(store: Store) -> None:
    for key in MALFORMED:
        with pytest.raises(StoreError):
            await store.append_stream(key, [b"x"])
        with pytest.raises(StoreError):
            await store.read_stream(key, 0, 10)
        with pytest.raises(StoreError):
            await store.stream_bounds([ANN, key])
    with pytest.raises(StoreError):
        await store.append_stream(None, [b"x"])  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await store.append_stream(f"u:{HEX_ID}\n", [])  # checked even when there is nothing
    assert await store.stream_bounds([ANN]) == {ANN: (0, 0)}
    assert await store.append_stream(ANN, [b"x"]) == [1]  # nothing was stored before


# -- bounds --------------------------------------------------------------------------------------
async def test_bounds_of_several_streams_at_once(store: Store) -> None:
    await store.append_stream(ANN, [b"1", b"2", b"3"])
    await store.append_stream(TEAM, [b"1"])
    assert await store.stream_bounds([ANN, BOB, TEAM, ANN]) == {
        ANN: (0, 3), BOB: (0, 0), TEAM: (0, 1),
    }
    assert await store.stream_bounds([]) == {}
    many = [f"u:{i:024x}" for i in range(1, 40)]
    for i, stream in enumerate(many[:5]):
        await store.append_stream(stream, [b"x"] * (i + 1))
    bounds = await store.stream_bounds(many)
    assert list(bounds) == many
    assert [bounds[s] for s in many[:6]] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 0)]
    assert set(bounds.values()) == {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5)}


# -- trim ----------------------------------------------------------------------------------------
async def test_trim_raises_floors_keeps_each_head_and_appends_go_on(store: Store) -> None:
    await store.append_stream(ANN, [b"a1", b"a2", b"a3"])
    await store.append_stream(BOB, [b"b1", b"b2"])
    [last_old] = await store.read_stream(BOB, 1, 1)  # the last one appended
    next_millisecond(last_old.created_at)
    cutoff = utcnow()
    next_millisecond(cutoff)
    await store.append_stream(ANN, [b"a4", b"a5"])

    # ANN: 1..3 are old, 4..5 new; BOB: 1..2 old, and 2 is its newest entry, which stays.
    assert await store.trim_streams(cutoff) == 3 + 1
    assert await store.stream_bounds([ANN, BOB, TEAM]) == {
        ANN: (3, 5), BOB: (2, 2), TEAM: (0, 0),
    }
    assert [e.payload for e in await store.read_stream(ANN, 3, 10)] == [b"a4", b"a5"]
    assert await store.read_stream(BOB, 2, 10) == []  # nothing above BOB's floor yet
    assert await offsets_of(store, BOB) == [2]  # the head's entry, at the floor

    # appends continue after the head, without a gap and without reusing an offset
    assert await store.append_stream(BOB, [b"b3"]) == [3]
    assert await store.append_stream(ANN, [b"a6"]) == [6]
    assert [e.payload for e in await store.read_stream(BOB, 2, 10)] == [b"b3"]

    # again: BOB's 2 is no longer its newest, so it goes now; ANN has nothing old left
    assert await store.trim_streams(cutoff) == 1
    assert await store.stream_bounds([ANN, BOB]) == {ANN: (3, 6), BOB: (2, 3)}
    assert await offsets_of(store, BOB) == [3]
    assert await offsets_of(store, ANN) == [4, 5, 6]


async def test_trim_of_everything_never_reuses_an_offset(store: Store) -> None:
    await store.append_stream(TEAM, [payload(0, n) for n in range(4)])
    assert await store.trim_streams(utcnow() + timedelta(days=1)) == 3
    assert await store.stream_bounds([TEAM]) == {TEAM: (4, 4)}
    assert await store.read_stream(TEAM, 4, 10) == []
    assert await store.append_stream(TEAM, [b"next", b"after"]) == [5, 6]
    assert await store.stream_bounds([TEAM]) == {TEAM: (4, 6)}
    assert [e.payload for e in await store.read_stream(TEAM, 4, 10)] == [b"next", b"after"]


async def test_trim_never_lowers_a_floor(store: Store) -> None:
    await store.append_stream(ANN, [b"1"])
    [first] = await store.read_stream(ANN, 0, 1)
    next_millisecond(first.created_at)
    await store.append_stream(ANN, [b"2", b"3"])
    assert await store.trim_streams(utcnow() + timedelta(days=1)) == 2
    assert await store.stream_bounds([ANN]) == {ANN: (3, 3)}
    # an older cutoff finds entry 3 is not old enough: the floor stays where it was
    assert await store.trim_streams(first.created_at + timedelta(milliseconds=1)) == 0
    assert await store.stream_bounds([ANN]) == {ANN: (3, 3)}


async def test_a_reader_checking_the_floor_never_misses_an_entry_to_a_trim(
    store: Store, twin: Opener
) -> None:
    streams = [f"u:{i:024x}" for i in range(1, 21)]
    for stream in streams:
        await store.append_stream(stream, [b"1", b"2", b"3"])
    reader = await twin()
    trim = asyncio.ensure_future(store.trim_streams(utcnow() + timedelta(days=1)))
    checks = 0
    while not trim.done() or checks < len(streams):
        stream = streams[checks % len(streams)]
        checks += 1
        [(floor, head)] = (await reader.stream_bounds([stream])).values()
        position = floor  # a reader at 0, below the floor once trimmed: resynced to it
        page = [entry.offset for entry in await reader.read_stream(stream, position, 10)]
        [(floor_after, _)] = (await reader.stream_bounds([stream])).values()
        if floor_after <= position:  # no trim cut into the page: it is whole
            assert page == list(range(position + 1, head + 1)), (stream, position, page)
    assert await trim == 20 * 2
    assert await reader.stream_bounds(streams) == {stream: (3, 3) for stream in streams}


async def test_a_head_remembered_from_before_a_trim_is_not_reused(
    store: Store, twin: Opener
) -> None:
    """This store object last saw the head at 2; another appended up to 10, and a trim took
    1..9. The next append must still continue at 11 (an insert at 3 would meet no duplicate)."""
    assert await store.append_stream(ANN, [b"1", b"2"]) == [1, 2]
    other = await twin()
    assert await other.append_stream(ANN, [payload(1, n) for n in range(3, 11)]) == list(
        range(3, 11)
    )
    assert await other.trim_streams(utcnow() + timedelta(days=1)) == 9
    assert await store.append_stream(ANN, [b"11", b"12", b"13"]) == [11, 12, 13]
    assert await store.stream_bounds([ANN]) == {ANN: (10, 13)}
    assert await offsets_of(store, ANN) == [10, 11, 12, 13]  # nothing left at 3..5
    assert [e.payload for e in await store.read_stream(ANN, 10, 10)] == [b"11", b"12", b"13"]
    assert await other.append_stream(ANN, [b"14"]) == [14]


async def test_a_writer_one_behind_continues_right_after_the_other(
    store: Store, twin: Opener
) -> None:
    """This store object last saw the head at 1; another took 2. The next append takes 3:
    not 2 again, and not beyond 3 (a hole nobody would ever fill)."""
    assert await store.append_stream(TEAM, [b"1"]) == [1]
    other = await twin()
    assert await other.append_stream(TEAM, [b"2"]) == [2]
    assert await store.append_stream(TEAM, [b"3"]) == [3]
    assert await store.append_stream(TEAM, [b"4", b"5"]) == [4, 5]
    assert await other.append_stream(TEAM, [b"6", b"7"]) == [6, 7]
    assert [e.payload for e in await store.read_stream(TEAM, 0, 10)] == [
        b"1", b"2", b"3", b"4", b"5", b"6", b"7",
    ]


# -- the epoch -----------------------------------------------------------------------------------
async def test_the_epoch_is_made_once_and_shared(store: Store, twin: Opener) -> None:
    epoch = await store.stream_epoch()
    assert re.fullmatch(r"[0-9a-f]{16}", epoch)
    await store.append_stream(ANN, [b"x"])
    await store.migrate()
    assert await store.stream_epoch() == epoch
    other = await twin()
    assert await other.stream_epoch() == epoch
    await other.trim_streams(utcnow() + timedelta(days=1))
    assert await other.stream_epoch() == epoch


async def test_processes_starting_together_agree_on_the_epoch(
    store: Store, fresh: Opener
) -> None:
    first, second = await fresh(), await fresh()
    await asyncio.gather(first.migrate(), second.migrate())
    epoch = await first.stream_epoch()
    assert await second.stream_epoch() == epoch
    assert epoch != await store.stream_epoch()  # another database: another epoch
    third = await fresh()
    await third.migrate()
    assert await third.stream_epoch() == epoch


# -- two writers ---------------------------------------------------------------------------------
SINGLES, FIVES = 60, 10
PER_WRITER = SINGLES + 5 * FIVES


def writer_batches(writer: int) -> list[list[bytes]]:
    """60 single-entry and 10 five-entry batches, the sizes mixed."""
    batches = [[payload(writer, n)] for n in range(SINGLES)] + [
        [payload(writer, SINGLES + 5 * j + k) for k in range(5)] for j in range(FIVES)
    ]
    return batches[::7] + [b for i, b in enumerate(batches) if i % 7]


async def all_at_once(store: Store, batches: list[list[bytes]], stream: str) -> list[list[int]]:
    return list(await asyncio.gather(*(store.append_stream(stream, b) for b in batches)))


async def one_at_a_time(store: Store, batches: list[list[bytes]], stream: str) -> list[list[int]]:
    return [await store.append_stream(stream, batch) for batch in batches]


WRITES = {"all at once": all_at_once, "one at a time": one_at_a_time}


async def assert_two_writers_store_everything_once(
    writers: list[Store], stream: str, base: int, before: dict[int, bytes], writes: str
) -> None:
    """Both writers at once, each with its calls ``writes`` (all in flight together, or each
    awaited before the next): every offset once, no holes, every payload once, in order."""
    batches = [writer_batches(i) for i in range(len(writers))]
    results = await asyncio.gather(
        *(WRITES[writes](store, batches[i], stream) for i, store in enumerate(writers))
    )
    outcomes = [list(zip(batches[i], results[i], strict=True)) for i in range(len(writers))]
    stored: dict[int, bytes] = dict(before)
    for outcome in outcomes:
        for batch, offsets in outcome:
            assert len(offsets) == len(batch)
            assert_increasing(offsets)
            for offset, body in zip(offsets, batch, strict=True):
                assert offset not in stored, f"offset {offset} given twice"
                stored[offset] = body
    total = base + len(writers) * PER_WRITER
    assert sorted(stored) == list(range(1, total + 1))  # every offset once, no holes
    for reader in writers:
        entries = await reader.read_stream(stream, 0, 10_000)
        assert [e.offset for e in entries] == list(range(1, total + 1))
        assert {e.offset: e.payload for e in entries} == stored
        assert await reader.stream_bounds([stream]) == {stream: (0, total)}
    sent = [body for outcome in outcomes for batch, _ in outcome for body in batch]
    assert len(set(sent)) == len(sent) == len(writers) * PER_WRITER
    assert sorted(stored.values()) == sorted([*before.values(), *sent])


@pytest.mark.parametrize("writes", list(WRITES))
async def test_two_writers_take_every_offset_exactly_once(
    store: Store, twin: Opener, writes: str
) -> None:
    other = await twin()
    await assert_two_writers_store_everything_once([store, other], TEAM, 0, {}, writes)


@pytest.mark.parametrize("writes", list(WRITES))
async def test_two_writers_starting_from_stale_heads(
    store: Store, twin: Opener, writes: str
) -> None:
    """Each writer remembers a head that a third one has moved on from since."""
    other, third = await twin(), await twin()
    before = {1: b"first", 2: b"second"}
    assert await store.append_stream(TEAM, [b"first"]) == [1]
    assert await other.append_stream(TEAM, [b"second"]) == [2]
    third_batch = [payload(9, n) for n in range(10)]
    assert await third.append_stream(TEAM, third_batch) == list(range(3, 13))
    before |= dict(zip(range(3, 13), third_batch, strict=True))
    await assert_two_writers_store_everything_once([store, other], TEAM, 12, before, writes)


# -- the head cache (sans-I/O) -------------------------------------------------------------------
def test_the_head_cache_never_goes_down_and_forgets_the_least_recently_used() -> None:
    from messenger.store.streams import HeadCache

    heads = HeadCache(max_entries=2)
    assert heads.get(ANN) is None
    heads.put(ANN, 5)
    heads.put(ANN, 3)  # an older answer arriving late: a head only grows
    assert heads.get(ANN) == 5
    heads.put(BOB, 1)
    assert heads.get(ANN) == 5  # ANN used last: BOB goes first
    heads.put(TEAM, 7)
    assert (heads.get(ANN), heads.get(BOB), heads.get(TEAM), len(heads)) == (5, None, 7, 2)


# -- SQLite adapter specifics --------------------------------------------------------------------
async def test_sqlite_stream_queries_use_indexes(tmp_path: Path) -> None:
    from messenger.store import sqlite_streams as adapter
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    sqlite_store = SQLiteStore(path)
    await sqlite_store.migrate()
    await sqlite_store.close()
    cases = {
        "head": (adapter.SQL_STREAM_HEAD, (ANN,)),
        "read": (adapter.SQL_READ_STREAM, (ANN, 0, 10)),
        "bounds": (adapter.SQL_STREAM_BOUNDS, (orjson.dumps([ANN, BOB]).decode(),)),
        "newest old": (adapter.SQL_NEWEST_OLD_ENTRIES, (0,)),
        "trim": (adapter.SQL_TRIM_STREAM, (ANN, 5, 0)),
        "epoch": (adapter.SQL_STREAM_EPOCH, ("stream_epoch",)),
    }
    with closing(sqlite3.connect(path)) as conn:
        for name, (sql, params) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            scans = [step for step in plan
                     if step.startswith("SCAN") and "VIRTUAL TABLE" not in step]
            assert scans == [], (name, plan)


async def test_sqlite_upgrade_adds_streams_to_an_existing_database(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore
    from messenger.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "db.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:  # the schema before
        for number, statements in enumerate(MIGRATIONS[:8]):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
    upgraded = SQLiteStore(path)
    try:
        await upgraded.migrate()
        epoch = await upgraded.stream_epoch()
        assert await upgraded.append_stream(ANN, [b"x"]) == [1]
    finally:
        await upgraded.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    again = SQLiteStore(path)
    try:
        await again.migrate()
        assert await again.stream_epoch() == epoch
        assert await again.append_stream(ANN, [b"y"]) == [2]
    finally:
        await again.close()



async def test_sqlite_upgrade_drops_the_old_event_log_and_keeps_everything_else(
    tmp_path: Path,
) -> None:
    """A database of the release with the global event log, holding events: the last step
    drops the event-log tables (and their counter), and the chats and messages stay."""
    from messenger.store.sqlite import SQLiteStore
    from messenger.store.sqlite_schema import MIGRATIONS

    path = tmp_path / "db.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for number, statements in enumerate(MIGRATIONS[:8]):
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"events", "event_recipients", "event_log"} <= tables  # the old log was there
        conn.execute("INSERT INTO events (recipients, payload, created_at)"
                     " VALUES ('[]', x'7b7d', 0)")
    store = SQLiteStore(path)
    try:
        await store.migrate()
        user = await store.create_user("a@example.com", b"h", "A")
        assert (await store.get_user(user.id)) is not None
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert not names & {"events", "event_recipients", "event_log", "events_created_at"}
        assert conn.execute(
            "SELECT count(*) FROM sqlite_sequence WHERE name = 'events'").fetchone() == (0,)
