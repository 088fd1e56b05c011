"""The Store contract for the real-time layer, run against both adapters like
``tests/test_store_contract.py``: the event log (append, list, bounds, purge), contacts, and group
membership changes. A few SQLite-only checks (query plans, purge leftovers, reopen) sit at the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from messenger.clock import utcnow
from messenger.ids import direct_key, new_id
from messenger.models import ChatType, StoredEvent, User
from messenger.store import Store, StoreError
from tests.test_store_contract import (
    is_utc_millis,
    new_group,
    new_user,
    new_users,
    next_millisecond,
    send,
)


def payload(n: int, **extra: object) -> bytes:
    return orjson.dumps({"type": "test", "n": n, **extra})


async def ids_of(store: Store, user: User, after: int = 0, limit: int = 1000) -> list[int]:
    return [event.id for event in await store.list_events(user.id, after, limit)]


# -- event log: append and list --------------------------------------------------------------
async def test_an_empty_log(store: Store) -> None:
    ann = await new_user(store)
    assert await store.event_bounds() == (0, 0)
    assert await store.list_events(ann.id, 0, 10) == []
    assert await store.append_events([]) == []
    assert await store.event_bounds() == (0, 0)
    assert await store.purge_events(utcnow() + timedelta(days=1)) == 0
    assert await store.event_bounds() == (0, 0)


async def test_append_gives_consecutive_increasing_ids(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    first = await store.append_events([((ann.id,), payload(1))])
    batch = await store.append_events([((ann.id, bob.id), payload(i)) for i in range(2, 6)])
    single = await store.append_events([([bob.id], payload(6))])
    assert len(first) == 1 and first[0] > 0
    ids = first + batch + single
    assert ids == list(range(first[0], first[0] + 6))
    assert await store.event_bounds() == (0, ids[-1])


async def test_list_events_is_per_recipient_ascending_after_an_id(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    before = utcnow()
    ids = await store.append_events(
        [
            ([ann.id, bob.id], payload(1)),
            ([bob.id], payload(2)),
            ([ann.id], payload(3, text="ünïcode ✓")),
            ([bob.id, ann.id, bob.id], payload(4)),  # a repeated recipient counts once
        ]
    )
    events = await store.list_events(ann.id, 0, 10)
    assert [e.id for e in events] == [ids[0], ids[2], ids[3]]
    assert all(isinstance(e, StoredEvent) for e in events)
    assert [orjson.loads(e.payload)["n"] for e in events] == [1, 3, 4]
    assert events[1].payload == payload(3, text="ünïcode ✓")
    assert isinstance(events[0].payload, bytes)
    assert events[0].recipients == (ann.id, bob.id)
    assert events[2].recipients == (bob.id, ann.id)  # in the order given, once each
    for event in events:
        assert is_utc_millis(event.created_at)
        assert before <= event.created_at <= utcnow()

    assert await ids_of(store, bob) == [ids[0], ids[1], ids[3]]
    assert await ids_of(store, cid) == []
    assert await ids_of(store, ann, after=ids[0]) == [ids[2], ids[3]]
    assert await ids_of(store, ann, after=ids[3]) == []
    assert await ids_of(store, ann, limit=2) == [ids[0], ids[2]]
    assert await ids_of(store, bob, after=ids[0], limit=1) == [ids[1]]
    assert await store.list_events(ann.id, 0, 0) == []
    assert await store.list_events("not-an-id", 0, 10) == []
    assert await store.list_events(new_id(), 0, 10) == []


async def test_an_event_without_recipients_takes_an_id(store: Store) -> None:
    ann = await new_user(store)
    [lonely, mine] = await store.append_events([([], payload(1)), ([ann.id], payload(2))])
    assert mine == lonely + 1
    assert await ids_of(store, ann) == [mine]


async def test_a_malformed_recipient_stores_nothing(store: Store) -> None:
    ann = await new_user(store)
    with pytest.raises(StoreError):
        await store.append_events([([ann.id], payload(1)), (["nope"], payload(2))])
    assert await store.event_bounds() == (0, 0)
    assert await store.list_events(ann.id, 0, 10) == []


async def test_concurrent_appends_store_every_id_once_and_in_order(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    seen_gaps: list[int] = []

    async def append_and_check(i: int) -> list[int]:
        size = 1 + i % 3
        ids = await store.append_events([([ann.id, bob.id], payload(i)) for _ in range(size)])
        # Within one process, an id assigned later is stored later: when a call returns,
        # every smaller id is already readable.
        stored = set(await ids_of(store, ann, limit=10_000))
        seen_gaps.extend(x for x in range(1, ids[-1] + 1) if x not in stored)
        return ids

    batches = await asyncio.gather(*(append_and_check(i) for i in range(30)))
    assert seen_gaps == []
    for ids in batches:
        assert ids == list(range(ids[0], ids[0] + len(ids)))
    every = sorted(x for ids in batches for x in ids)
    assert every == list(range(1, len(every) + 1))
    assert await ids_of(store, ann, limit=10_000) == every
    assert await ids_of(store, bob, limit=10_000) == every
    assert await store.event_bounds() == (0, every[-1])


# -- event log: purge --------------------------------------------------------------------------
async def test_purge_deletes_old_events_and_raises_the_floor(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    old = await store.append_events([([ann.id, bob.id], payload(i)) for i in range(3)])
    [old_event] = await store.list_events(ann.id, old[-1] - 1, 1)
    next_millisecond(old_event.created_at)
    cutoff = utcnow()
    next_millisecond(cutoff)
    new = await store.append_events([([ann.id], payload(10)), ([bob.id], payload(11))])

    assert await store.purge_events(cutoff) == 3
    assert await store.event_bounds() == (old[-1], new[-1])
    assert await ids_of(store, ann) == [new[0]]
    assert await ids_of(store, bob) == [new[1]]
    # every event above the floor is still there
    floor, _ = await store.event_bounds()
    assert await ids_of(store, ann, after=floor) == [new[0]]

    assert await store.purge_events(cutoff) == 0  # nothing old left
    assert await store.event_bounds() == (old[-1], new[-1])


async def test_purge_of_everything_never_reuses_ids(store: Store) -> None:
    ann = await new_user(store)
    ids = await store.append_events([([ann.id], payload(i)) for i in range(4)])
    assert await store.purge_events(utcnow() + timedelta(seconds=1)) == 4
    assert await store.event_bounds() == (ids[-1], ids[-1])
    assert await ids_of(store, ann) == []

    [later] = await store.append_events([([ann.id], payload(5))])
    assert later == ids[-1] + 1
    assert await store.event_bounds() == (ids[-1], later)
    assert await ids_of(store, ann) == [later]


async def test_purge_never_lowers_the_floor(store: Store) -> None:
    ann = await new_user(store)
    first = await store.append_events([([ann.id], payload(1))])
    [stored] = await store.list_events(ann.id, 0, 1)
    next_millisecond(stored.created_at)
    second = await store.append_events([([ann.id], payload(2))])
    assert await store.purge_events(utcnow() + timedelta(seconds=1)) == 2
    assert await store.purge_events(stored.created_at + timedelta(milliseconds=1)) == 0
    assert await store.event_bounds() == (second[-1], second[-1])
    assert first[0] < second[0]


async def test_events_survive_migrate_again(store: Store) -> None:
    ann = await new_user(store)
    ids = await store.append_events([([ann.id], payload(1))])
    await store.migrate()
    assert await ids_of(store, ann) == ids
    assert await store.append_events([([ann.id], payload(2))]) == [ids[0] + 1]


# -- contacts ----------------------------------------------------------------------------------
async def test_contact_ids_are_everyone_sharing_a_chat(store: Store) -> None:
    ann, bob, cid, dan, eve = await new_users(store, 5)
    await new_group(store, [ann, bob, cid])
    await store.create_chat(ChatType.DIRECT, [ann.id, dan.id], None, direct_key(ann.id, dan.id))
    await new_group(store, [bob, eve])
    await new_group(store, [ann, bob])  # bob again: counted once

    assert await store.contact_ids(ann.id) == {bob.id, cid.id, dan.id}
    assert await store.contact_ids(bob.id) == {ann.id, cid.id, eve.id}
    assert await store.contact_ids(dan.id) == {ann.id}
    assert await store.contact_ids(new_id()) == set()
    assert await store.contact_ids("not-an-id") == set()
    # only chats of at most N members count (presence skips large groups)
    assert await store.contact_ids(ann.id, max_chat_size=2) == {bob.id, dan.id}
    assert await store.contact_ids(bob.id, max_chat_size=2) == {ann.id, eve.id}
    assert await store.contact_ids(cid.id, max_chat_size=2) == set()
    assert await store.contact_ids(cid.id, max_chat_size=3) == {ann.id, bob.id}


async def test_contact_ids_of_a_user_alone(store: Store) -> None:
    ann = await new_user(store)
    assert await store.contact_ids(ann.id) == set()
    await new_group(store, [ann])
    assert await store.contact_ids(ann.id) == set()


# -- membership --------------------------------------------------------------------------------
async def test_add_members_appends_new_ones_in_order(store: Store) -> None:
    ann, bob, cid, dan = await new_users(store, 4)
    chat = await new_group(store, [ann, bob])
    after = await store.add_members(chat.id, [dan.id, bob.id, cid.id, dan.id])
    assert after.member_ids == (ann.id, bob.id, dan.id, cid.id)
    assert (after.id, after.type, after.title, after.created_at, after.last_seq) == (
        chat.id,
        chat.type,
        chat.title,
        chat.created_at,
        chat.last_seq,
    )
    assert await store.get_chat(chat.id) == after
    # the new members see the chat like everyone else
    assert [v.chat.id for v in await store.list_chat_views(dan.id, 10)] == [chat.id]
    view = await store.get_chat_view(chat.id, cid.id)
    assert view is not None and view.chat == after
    assert await store.contact_ids(dan.id) == {ann.id, bob.id, cid.id}

    again = await store.add_members(chat.id, [ann.id, cid.id])  # all members already
    assert again == after
    assert await store.add_members(chat.id, []) == after


async def test_new_members_can_send_and_count_unread(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann])
    await send(store, chat, ann, "before bob")
    await store.add_members(chat.id, [bob.id])
    message = (await send(store, chat, bob, "hi, I'm new")).message
    assert message.seq == 2
    view = await store.get_chat_view(chat.id, ann.id)
    assert view is not None and view.unread_count == 1


async def test_remove_member(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    chat = await new_group(store, [ann, bob, cid])
    after = await store.remove_member(chat.id, bob.id)
    assert after.member_ids == (ann.id, cid.id)
    assert await store.get_chat(chat.id) == after
    assert await store.list_chat_views(bob.id, 10) == []
    assert await store.contact_ids(bob.id) == set()
    assert await store.contact_ids(ann.id) == {cid.id}

    assert await store.remove_member(chat.id, bob.id) == after  # not a member: no-op
    assert await store.remove_member(chat.id, new_id()) == after
    assert await store.remove_member(chat.id, "not-an-id") == after

    back = await store.add_members(chat.id, [bob.id])  # back again: at the end
    assert back.member_ids == (ann.id, cid.id, bob.id)
    assert (await store.remove_member(chat.id, ann.id)).member_ids == (cid.id, bob.id)


async def test_membership_changes_of_an_unknown_chat_raise(store: Store) -> None:
    ann = await new_user(store)
    for chat_id in (new_id(), "not-an-id"):
        with pytest.raises(StoreError):
            await store.add_members(chat_id, [ann.id])
        with pytest.raises(StoreError):
            await store.remove_member(chat_id, ann.id)


async def test_add_members_with_a_malformed_id_raises(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    with pytest.raises(StoreError):
        await store.add_members(chat.id, ["not-an-id"])
    assert await store.get_chat(chat.id) == chat


async def test_concurrent_adds_and_removes_keep_members_unique(store: Store) -> None:
    owner, *others = await new_users(store, 9)
    chat = await new_group(store, [owner])
    ids = [u.id for u in others]
    await asyncio.gather(
        *(store.add_members(chat.id, ids[i : i + 3]) for i in range(0, 8)),
        store.remove_member(chat.id, ids[0]),
    )
    final = await store.get_chat(chat.id)
    assert final is not None
    assert len(final.member_ids) == len(set(final.member_ids))
    assert final.member_ids[0] == owner.id
    assert set(final.member_ids) >= {owner.id, *ids[1:]}


# -- SQLite adapter specifics ------------------------------------------------------------------
@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    from messenger.store.sqlite import SQLiteStore

    adapter = SQLiteStore(tmp_path / "db.sqlite3")
    await adapter.migrate()
    yield adapter
    await adapter.close()


async def test_sqlite_event_queries_use_indexes(sqlite_store: Store, tmp_path: Path) -> None:
    from messenger.store import sqlite as adapter

    cases = {
        "contacts": (adapter.SQL_CONTACTS, ("u", 100, 100, "u")),
        "user events": (adapter.SQL_USER_EVENTS, ("u", 0, 100)),
        "newest event before": (adapter.SQL_NEWEST_EVENT_BEFORE, (0,)),
        "event floor": (adapter.SQL_EVENT_FLOOR, ()),
    }
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        for name, (sql, params) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            # contacts scans only what it built itself: the caller's chats ("small") and a
            # count of at most max_chat_size + 1 rows per chat
            bounded = ("SCAN (subquery-", "SCAN small")
            scans = [step for step in plan if step.startswith("SCAN")
                     and not (name == "contacts" and step.startswith(bounded))]
            assert scans == [], (name, plan)
            assert all(" USING " in step for step in plan if step.startswith("SEARCH")), plan
            assert not any("TEMP B-TREE" in step for step in plan if name != "contacts"), plan


async def test_sqlite_purge_leaves_no_recipient_rows(sqlite_store: Store, tmp_path: Path) -> None:
    ann, bob = await new_users(sqlite_store, 2)
    await sqlite_store.append_events([([ann.id, bob.id], payload(i)) for i in range(5)])
    await sqlite_store.purge_events(utcnow() + timedelta(seconds=1))
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM event_recipients").fetchone() == (0,)


async def test_sqlite_ids_are_not_reused_after_reopening(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    first = SQLiteStore(tmp_path / "db.sqlite3")
    await first.migrate()
    ann = await new_user(first)
    ids = await first.append_events([([ann.id], payload(i)) for i in range(3)])
    await first.purge_events(utcnow() + timedelta(seconds=1))
    await first.close()

    second = SQLiteStore(tmp_path / "db.sqlite3")
    try:
        await second.migrate()
        assert await second.event_bounds() == (ids[-1], ids[-1])
        assert await second.append_events([([ann.id], payload(4))]) == [ids[-1] + 1]
    finally:
        await second.close()
