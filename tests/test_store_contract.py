"""The Store contract: every semantic promised in ``messenger/store/base.py``, run against both
adapters (embedded SQLite and MongoDB through the mongoeco wire server).

Each test gets a freshly migrated store of its own (a new SQLite file, or a new Mongo database).
Nothing sleeps: where an ordering by time matters, ``next_millisecond`` spins until the
millisecond clock has moved on. A few SQLite-only checks (schema version, reopen, query plans)
sit at the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import messenger.clock
from messenger.clock import utcnow
from messenger.ids import direct_key, is_valid_id, new_id
from messenger.models import (
    AppendResult,
    Chat,
    ChatType,
    ChatView,
    Message,
    MessageDraft,
    RefreshSpend,
    RefreshToken,
    SenderNotMember,
    User,
)
from messenger.store import EmailTaken, Store, StoreError, StoreUnavailable

BACKEND_NAMES = {"sqlite": "sqlite", "mongo": "mongodb"}


# -- helpers ---------------------------------------------------------------------------------
def next_millisecond(after: datetime) -> None:
    """Spin (at most about a millisecond, no sleep) until the store clock has passed ``after``."""
    while utcnow() <= after:
        pass


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Stop ``messenger.clock.utcnow`` at one instant (where the adapters take their time)."""
    instant = utcnow()

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return instant

    monkeypatch.setattr(messenger.clock, "datetime", Frozen)
    return instant


async def new_user(store: Store, name: str = "ann") -> User:
    email = f"{name}.{uuid.uuid4().hex[:10]}@example.com"
    return await store.create_user(email, f"hash-of-{name}".encode(), name.title())


async def new_users(store: Store, count: int) -> list[User]:
    return [await new_user(store, f"user{i}") for i in range(count)]


async def new_group(store: Store, members: list[User], title: str = "team") -> Chat:
    chat, created = await store.create_chat(ChatType.GROUP, [u.id for u in members], title, None)
    assert created
    return chat


async def send(
    store: Store, chat: Chat, sender: User, text: str, client_msg_id: str | None = None
) -> AppendResult:
    [result] = await store.append_messages(chat.id, [MessageDraft(sender.id, text, client_msg_id)])
    return result


async def view(store: Store, chat: Chat, user: User) -> ChatView:
    found = await store.get_chat_view(chat.id, user.id)
    assert found is not None
    return found


async def last_seq(store: Store, chat: Chat) -> int:
    current = await store.get_chat(chat.id)
    assert current is not None
    return current.last_seq


def is_utc_millis(value: datetime) -> bool:
    return value.utcoffset() == timedelta(0) and value.microsecond % 1000 == 0


# -- lifecycle -------------------------------------------------------------------------------
async def test_backend_names_its_dependency(store: Store, request: pytest.FixtureRequest) -> None:
    assert store.backend == BACKEND_NAMES[request.node.callspec.params["store"]]


async def test_ping_answers(store: Store) -> None:
    assert await store.ping() is None


async def test_migrate_again_is_harmless_and_keeps_data(store: Store) -> None:
    ann = await new_user(store)
    await store.migrate()
    await store.migrate()
    assert await store.get_user(ann.id) == ann
    with pytest.raises(EmailTaken):  # the unique email index is still there
        await store.create_user(ann.email, b"x", "Again")


async def test_close_makes_the_store_unusable(store: Store) -> None:
    await store.close()
    await store.close()  # closing twice is harmless
    # Not in base.py, but both adapters document it: a closed store is "unavailable".
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_user(new_id())
    with pytest.raises(StoreUnavailable):
        await store.create_user("late@example.com", b"x", "Late")


# -- users -----------------------------------------------------------------------------------
async def test_create_user_round_trips(store: Store) -> None:
    before = utcnow()
    user = await store.create_user("ann@example.com", b"\x00\xffbcrypt$hash", "Ann")
    assert is_valid_id(user.id)
    assert (user.email, user.display_name) == ("ann@example.com", "Ann")
    assert user.password_hash == b"\x00\xffbcrypt$hash"
    assert isinstance(user.password_hash, bytes)
    assert is_utc_millis(user.created_at)
    assert before <= user.created_at <= utcnow()
    assert await store.get_user(user.id) == user
    assert await store.get_user_by_email("ann@example.com") == user


async def test_duplicate_email_raises_email_taken(store: Store) -> None:
    first = await store.create_user("dup@example.com", b"one", "First")
    with pytest.raises(EmailTaken):
        await store.create_user("dup@example.com", b"two", "Second")
    assert await store.get_user_by_email("dup@example.com") == first


async def test_unknown_users_are_none(store: Store) -> None:
    await new_user(store)
    assert await store.get_user(new_id()) is None
    assert await store.get_user_by_email("nobody@example.com") is None


async def test_get_users_returns_known_ids_once(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    found = await store.get_users([ann.id, new_id(), bob.id, ann.id])
    assert sorted(found, key=lambda u: u.id) == sorted([ann, bob], key=lambda u: u.id)
    assert cid not in found
    assert await store.get_users([]) == []
    assert await store.get_users([new_id()]) == []


# -- refresh tokens --------------------------------------------------------------------------
def expiry(days: int = 30) -> datetime:
    return utcnow() + timedelta(days=days)


async def test_refresh_token_spends_once_then_reports_reuse(store: Store) -> None:
    ann = await new_user(store)
    expires_at = expiry()
    await store.add_refresh_token("jti-1", "fam-1", ann.id, expires_at)
    first = await store.spend_refresh_token("jti-1")
    assert first.outcome is RefreshSpend.SPENT
    assert first.token == RefreshToken("jti-1", "fam-1", ann.id, expires_at)
    second = await store.spend_refresh_token("jti-1")
    assert second.outcome is RefreshSpend.REUSED
    # rotation: the family's next token is live
    await store.add_refresh_token("jti-2", "fam-1", ann.id, expiry())
    assert (await store.spend_refresh_token("jti-2")).outcome is RefreshSpend.SPENT


async def test_concurrent_spends_of_one_token_have_one_winner(store: Store) -> None:
    ann = await new_user(store)
    await store.add_refresh_token("jti-race", "fam-race", ann.id, expiry())
    results = await asyncio.gather(*(store.spend_refresh_token("jti-race") for _ in range(20)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(RefreshSpend.SPENT) == 1
    assert outcomes.count(RefreshSpend.REUSED) == 19


async def test_revoked_family_reports_revoked_for_every_token(store: Store) -> None:
    ann = await new_user(store)
    await store.add_refresh_token("spent", "fam-a", ann.id, expiry())
    await store.add_refresh_token("live", "fam-a", ann.id, expiry())
    await store.add_refresh_token("other", "fam-b", ann.id, expiry())
    assert (await store.spend_refresh_token("spent")).outcome is RefreshSpend.SPENT

    await store.revoke_token_family("fam-a")

    assert (await store.spend_refresh_token("live")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("spent")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("live")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("other")).outcome is RefreshSpend.SPENT
    await store.revoke_token_family("no-such-family")  # harmless


async def test_revoke_user_tokens_revokes_all_families_of_that_user(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    await store.add_refresh_token("ann-1", "ann-fam-1", ann.id, expiry())
    await store.add_refresh_token("ann-2", "ann-fam-2", ann.id, expiry())
    await store.add_refresh_token("bob-1", "bob-fam-1", bob.id, expiry())

    await store.revoke_user_tokens(ann.id)

    assert (await store.spend_refresh_token("ann-1")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("ann-2")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("bob-1")).outcome is RefreshSpend.SPENT
    # a login afterwards starts a new, live family
    await store.add_refresh_token("ann-3", "ann-fam-3", ann.id, expiry())
    assert (await store.spend_refresh_token("ann-3")).outcome is RefreshSpend.SPENT


async def test_unknown_refresh_token(store: Store) -> None:
    result = await store.spend_refresh_token("never-issued")
    assert result.outcome is RefreshSpend.UNKNOWN
    assert result.token is None


async def test_expired_refresh_token_is_unknown(store: Store) -> None:
    ann = await new_user(store)
    await store.add_refresh_token("old", "fam-old", ann.id, utcnow() - timedelta(minutes=1))
    result = await store.spend_refresh_token("old")
    assert result.outcome is RefreshSpend.UNKNOWN
    assert result.token is None


# -- chats -----------------------------------------------------------------------------------
async def test_create_group_chat(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    before = utcnow()
    chat, created = await store.create_chat(
        ChatType.GROUP, [ann.id, bob.id, cid.id], "Weekend plans", None
    )
    assert created
    assert is_valid_id(chat.id)
    assert chat.type is ChatType.GROUP
    assert chat.title == "Weekend plans"
    assert sorted(chat.member_ids) == sorted([ann.id, bob.id, cid.id])
    assert chat.last_seq == 0
    assert is_utc_millis(chat.created_at)
    assert before <= chat.created_at <= chat.last_activity_at <= utcnow()
    assert await store.get_chat(chat.id) == chat


async def test_groups_are_never_deduplicated(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    first = await new_group(store, [ann, bob])
    second = await new_group(store, [ann, bob])
    assert first.id != second.id


async def test_direct_chat_is_unique_per_unordered_pair(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    key = direct_key(ann.id, bob.id)
    chat, created = await store.create_chat(ChatType.DIRECT, [ann.id, bob.id], None, key)
    assert created
    assert chat.type is ChatType.DIRECT
    assert chat.title is None
    assert sorted(chat.member_ids) == sorted([ann.id, bob.id])

    again, created_again = await store.create_chat(ChatType.DIRECT, [bob.id, ann.id], None, key)
    assert created_again is False
    assert again == chat

    other, created_other = await store.create_chat(
        ChatType.DIRECT, [ann.id, cid.id], None, direct_key(ann.id, cid.id)
    )
    assert created_other
    assert other.id != chat.id


async def test_direct_chat_found_again_reports_its_current_state(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    key = direct_key(ann.id, bob.id)
    chat, _ = await store.create_chat(ChatType.DIRECT, [ann.id, bob.id], None, key)
    await send(store, chat, ann, "hello")
    again, created = await store.create_chat(ChatType.DIRECT, [ann.id, bob.id], None, key)
    assert created is False
    assert again.id == chat.id
    assert again.last_seq == 1


async def test_unknown_chat_is_none(store: Store) -> None:
    ann = await new_user(store)
    assert await store.get_chat(new_id()) is None
    assert await store.get_chat_view(new_id(), ann.id) is None


async def test_view_of_a_new_chat(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    seen = await view(store, chat, bob)
    assert seen.chat == chat
    assert seen.last_message is None
    assert seen.read_seq == 0
    assert seen.unread_count == 0


async def test_view_carries_last_message_and_read_position(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    await send(store, chat, ann, "one")
    await send(store, chat, ann, "two")
    last = (await send(store, chat, ann, "three")).message

    bob_view = await view(store, chat, bob)
    assert bob_view.last_message == last
    assert bob_view.chat.last_seq == 3
    assert bob_view.chat.last_activity_at >= last.created_at
    assert (bob_view.read_seq, bob_view.unread_count) == (0, 3)
    ann_view = await view(store, chat, ann)
    assert (ann_view.read_seq, ann_view.unread_count) == (3, 0)


async def test_list_chat_views_shows_only_member_chats(store: Store) -> None:
    ann, bob, cid, dan = await new_users(store, 4)
    ann_bob = await new_group(store, [ann, bob])
    bob_cid = await new_group(store, [bob, cid])
    assert [v.chat.id for v in await store.list_chat_views(ann.id, 10)] == [ann_bob.id]
    assert {v.chat.id for v in await store.list_chat_views(bob.id, 10)} == {
        ann_bob.id,
        bob_cid.id,
    }
    assert await store.list_chat_views(dan.id, 10) == []


async def test_list_chat_views_most_recent_activity_first(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    first = await new_group(store, [ann, bob], "first")
    next_millisecond(first.last_activity_at)
    second = await new_group(store, [ann, bob], "second")
    next_millisecond(second.last_activity_at)
    third = await new_group(store, [ann, bob], "third")
    views = await store.list_chat_views(ann.id, 10)
    assert [v.chat.id for v in views] == [third.id, second.id, first.id]

    next_millisecond(third.last_activity_at)
    posted = (await send(store, first, bob, "bump")).message

    views = await store.list_chat_views(ann.id, 10)
    assert [v.chat.id for v in views] == [first.id, third.id, second.id]
    top = views[0]
    assert top.chat.last_activity_at > third.last_activity_at
    assert top.last_message == posted
    assert (top.chat.last_seq, top.read_seq, top.unread_count) == (1, 0, 1)
    assert [v.last_message for v in views[1:]] == [None, None]

    assert [v.chat.id for v in await store.list_chat_views(ann.id, 2)] == [first.id, third.id]
    assert [v.chat.id for v in await store.list_chat_views(ann.id, 1)] == [first.id]


async def test_list_chat_views_ties_go_to_the_newest_id(
    store: Store, frozen_clock: datetime
) -> None:
    ann = await new_user(store)
    chats = [await new_group(store, [ann], f"chat {i}") for i in range(5)]
    views = await store.list_chat_views(ann.id, 10)
    assert len(views) == 5
    keys = [(v.chat.last_activity_at, v.chat.id) for v in views]
    assert keys == sorted(keys, reverse=True)
    if all(c.last_activity_at == frozen_clock for c in chats):  # the adapter used the clock
        assert [v.chat.id for v in views] == sorted((c.id for c in chats), reverse=True)
    assert await store.list_chat_views(ann.id, 2) == views[:2]


async def test_chat_view_for_each_member_of_one_chat(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    chat = await new_group(store, [ann, bob, cid])
    for text in ("a", "b", "c", "d"):
        await send(store, chat, ann, text)
    await store.mark_read(chat.id, bob.id, 1)
    views = {u.id: await view(store, chat, u) for u in (ann, bob, cid)}
    assert {uid: v.unread_count for uid, v in views.items()} == {ann.id: 0, bob.id: 3, cid.id: 4}
    listed = {u.id: (await store.list_chat_views(u.id, 5))[0] for u in (ann, bob, cid)}
    assert listed == views


# -- read positions --------------------------------------------------------------------------
async def test_mark_read_moves_forward_only_and_is_clamped(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    for i in range(5):
        await send(store, chat, bob, f"m{i}")

    assert await store.mark_read(chat.id, ann.id, 3) == 3
    seen = await view(store, chat, ann)
    assert (seen.read_seq, seen.unread_count) == (3, 2)
    assert await store.mark_read(chat.id, ann.id, 2) == 3  # never back
    assert await store.mark_read(chat.id, ann.id, 0) == 3
    assert (await view(store, chat, ann)).read_seq == 3
    assert await store.mark_read(chat.id, ann.id, 99) == 5  # never past last_seq
    assert (await view(store, chat, ann)).read_seq == 5
    assert (await view(store, chat, ann)).unread_count == 0

    await send(store, chat, bob, "later")
    assert (await view(store, chat, ann)).unread_count == 1
    assert await store.mark_read(chat.id, ann.id, 1_000) == 6


async def test_mark_read_on_an_empty_chat_stays_at_zero(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    assert await store.mark_read(chat.id, ann.id, 10) == 0
    assert (await view(store, chat, ann)).read_seq == 0


async def test_read_positions_are_per_member(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    chat = await new_group(store, [ann, bob, cid])
    for i in range(4):
        await send(store, chat, ann, f"m{i}")
    assert await store.mark_read(chat.id, bob.id, 2) == 2
    assert (await view(store, chat, bob)).read_seq == 2
    assert (await view(store, chat, cid)).read_seq == 0
    assert (await view(store, chat, ann)).read_seq == 4


# -- append_messages -------------------------------------------------------------------------
async def test_append_gives_consecutive_seqs_from_one(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    before = utcnow()
    singles = [await send(store, chat, ann, f"single {i}") for i in range(3)]
    batch = await store.append_messages(
        chat.id, [MessageDraft(bob.id, f"batch {i}") for i in range(4)]
    )
    results = singles + batch
    assert [r.message.seq for r in results] == [1, 2, 3, 4, 5, 6, 7]
    assert all(r.created for r in results)
    assert [r.message.text for r in batch] == ["batch 0", "batch 1", "batch 2", "batch 3"]
    assert {r.message.sender_id for r in batch} == {bob.id}
    assert len({r.message.id for r in results}) == 7
    for result in results:
        message = result.message
        assert message.chat_id == chat.id
        assert is_valid_id(message.id)
        assert message.client_msg_id is None
        assert is_utc_millis(message.created_at)
        assert before <= message.created_at <= utcnow()
        assert await store.get_message(chat.id, message.id) == message
    assert await last_seq(store, chat) == 7


async def test_append_refuses_senders_who_are_not_members(store: Store) -> None:
    """The store is the last word on membership: checked atomically with the write."""
    ann, bob, eve = await new_users(store, 3)
    chat = await new_group(store, [ann, bob])
    [kept] = await store.append_messages(chat.id, [MessageDraft(bob.id, "hi", "bob-1")])
    assert isinstance(kept, AppendResult) and kept.message.seq == 1
    await store.remove_member(chat.id, bob.id)
    results = await store.append_messages(chat.id, [
        MessageDraft(ann.id, "one"),
        MessageDraft(bob.id, "after leaving"),
        MessageDraft(eve.id, "never a member"),
        MessageDraft(ann.id, "two"),
        MessageDraft(bob.id, "hi", "bob-1"),  # a replay of what bob sent as a member
        MessageDraft(bob.id, "again", "bob-2"),
    ])
    assert results[1] == SenderNotMember(bob.id)
    assert results[2] == SenderNotMember(eve.id)
    assert results[5] == SenderNotMember(bob.id)
    accepted = [results[0], results[3]]
    assert all(isinstance(r, AppendResult) and r.created for r in accepted)
    assert [r.message.seq for r in accepted] == [2, 3]  # refused drafts take no seq
    assert isinstance(results[4], AppendResult) and results[4].message == kept.message
    assert not results[4].created
    messages, _ = await store.list_messages(chat.id, None, 50)
    assert [m.text for m in messages] == ["hi", "one", "two"]
    assert await last_seq(store, chat) == 3
    # only refusals: nothing is stored and no seq is taken
    assert await store.append_messages(chat.id, [MessageDraft(eve.id, "x")]) == [
        SenderNotMember(eve.id)
    ]
    [next_one] = await store.append_messages(chat.id, [MessageDraft(ann.id, "three")])
    assert isinstance(next_one, AppendResult) and next_one.message.seq == 4


async def test_append_of_nothing_returns_nothing(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    assert await store.append_messages(chat.id, []) == []
    assert await last_seq(store, chat) == 0


async def test_seqs_are_per_chat(store: Store) -> None:
    ann = await new_user(store)
    one = await new_group(store, [ann], "one")
    two = await new_group(store, [ann], "two")
    assert (await send(store, one, ann, "a")).message.seq == 1
    assert (await send(store, one, ann, "b")).message.seq == 2
    assert (await send(store, two, ann, "c")).message.seq == 1


async def test_append_moves_last_activity(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    next_millisecond(chat.last_activity_at)
    message = (await send(store, chat, ann, "hi")).message
    now = await store.get_chat(chat.id)
    assert now is not None
    assert now.last_activity_at > chat.last_activity_at
    assert now.last_activity_at >= message.created_at
    assert now.created_at == chat.created_at


async def test_append_is_idempotent_per_sender_and_client_msg_id(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    other_chat = await new_group(store, [ann, bob])
    original = await send(store, chat, ann, "hello", "c-1")
    assert original.created
    assert original.message.client_msg_id == "c-1"

    retry = await send(store, chat, ann, "hello, edited", "c-1")
    assert retry.created is False
    assert retry.message == original.message  # the stored original, text included
    assert await last_seq(store, chat) == 1

    by_bob = await send(store, chat, bob, "hello", "c-1")  # same id, other sender
    assert by_bob.created
    assert by_bob.message.seq == 2
    elsewhere = await send(store, other_chat, ann, "hello", "c-1")  # same id, other chat
    assert elsewhere.created
    assert elsewhere.message.seq == 1

    messages, _ = await store.list_messages(chat.id, None, 10)
    assert messages == [original.message, by_bob.message]


async def test_append_dedupes_within_one_batch(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    results = await store.append_messages(
        chat.id,
        [
            MessageDraft(ann.id, "one", "c-1"),
            MessageDraft(ann.id, "one again", "c-1"),
            MessageDraft(bob.id, "bob's", "c-1"),
            MessageDraft(ann.id, "no id"),
            MessageDraft(ann.id, "no id"),  # without client_msg_id nothing is deduplicated
            MessageDraft(ann.id, "two", "c-2"),
        ],
    )
    assert [r.created for r in results] == [True, False, True, True, True, True]
    assert results[1].message == results[0].message
    assert [r.message.seq for r in results] == [1, 1, 2, 3, 4, 5]
    assert [r.message.text for r in results] == ["one", "one", "bob's", "no id", "no id", "two"]
    assert await last_seq(store, chat) == 5


async def test_batch_with_a_stored_duplicate_takes_no_seq_for_it(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    stored = (await send(store, chat, ann, "first", "c-1")).message
    results = await store.append_messages(
        chat.id, [MessageDraft(ann.id, "first", "c-1"), MessageDraft(ann.id, "second", "c-2")]
    )
    assert [r.created for r in results] == [False, True]
    assert results[0].message == stored
    assert results[1].message.seq == 2
    assert await last_seq(store, chat) == 2


async def test_append_moves_each_senders_read_position_to_its_own_newest(store: Store) -> None:
    ann, bob, cid = await new_users(store, 3)
    chat = await new_group(store, [ann, bob, cid])
    await send(store, chat, bob, "b1")
    await send(store, chat, bob, "b2")
    assert [(await view(store, chat, u)).read_seq for u in (ann, bob, cid)] == [0, 2, 0]

    await store.append_messages(
        chat.id,
        [
            MessageDraft(ann.id, "a3"),
            MessageDraft(bob.id, "b4"),
            MessageDraft(ann.id, "a5"),
        ],
    )
    assert [(await view(store, chat, u)).read_seq for u in (ann, bob, cid)] == [5, 4, 0]
    assert [(await view(store, chat, u)).unread_count for u in (ann, bob, cid)] == [0, 1, 5]

    # a retried send moves nothing
    await store.mark_read(chat.id, bob.id, 5)
    await send(store, chat, cid, "c6", "c-6")
    await send(store, chat, bob, "b7")
    await send(store, chat, cid, "c6", "c-6")
    assert [(await view(store, chat, u)).read_seq for u in (ann, bob, cid)] == [5, 7, 6]


async def test_concurrent_appends_get_every_seq_exactly_once(store: Store) -> None:
    senders = await new_users(store, 5)
    chat = await new_group(store, senders)
    singles = [
        store.append_messages(chat.id, [MessageDraft(senders[i % 5].id, f"single {i}")])
        for i in range(40)
    ]
    batches = [
        store.append_messages(
            chat.id, [MessageDraft(senders[i % 5].id, f"batch {i}.{j}") for j in range(3)]
        )
        for i in range(10)
    ]
    outcomes = await asyncio.gather(*singles, *batches)

    seqs = sorted(r.message.seq for results in outcomes for r in results)
    assert seqs == list(range(1, 71))
    for results in outcomes[40:]:
        batch_seqs = [r.message.seq for r in results]
        assert batch_seqs == sorted(batch_seqs)
    assert await last_seq(store, chat) == 70
    messages, has_more = await store.list_messages(chat.id, None, 100)
    assert [m.seq for m in messages] == list(range(1, 71))
    assert has_more is False


async def test_concurrent_retries_of_one_client_msg_id_store_one_message(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    outcomes = await asyncio.gather(
        *(send(store, chat, ann, "only once", "retry-me") for _ in range(10))
    )
    assert [r.created for r in outcomes].count(True) == 1
    assert len({r.message for r in outcomes}) == 1
    assert outcomes[0].message.seq == 1
    assert await last_seq(store, chat) == 1
    messages, _ = await store.list_messages(chat.id, None, 10)
    assert messages == [outcomes[0].message]


# -- reading messages ------------------------------------------------------------------------
async def test_get_message_only_in_its_own_chat(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann], "home")
    other = await new_group(store, [ann], "away")
    message = (await send(store, chat, ann, "hi")).message
    assert await store.get_message(chat.id, message.id) == message
    assert await store.get_message(other.id, message.id) is None
    assert await store.get_message(chat.id, new_id()) is None


async def test_list_messages_of_an_empty_chat(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    assert await store.list_messages(chat.id, None, 50) == ([], False)


async def test_list_messages_pages_backwards_oldest_first(store: Store) -> None:
    ann, bob = await new_users(store, 2)
    chat = await new_group(store, [ann, bob])
    sent = [(await send(store, chat, (ann, bob)[i % 2], f"m{i + 1}")).message for i in range(7)]

    def seqs(page: tuple[list[Message], bool]) -> tuple[list[int], bool]:
        return [m.seq for m in page[0]], page[1]

    newest = await store.list_messages(chat.id, None, 3)
    assert newest == (sent[4:7], True)  # full records, oldest first
    assert seqs(await store.list_messages(chat.id, 5, 3)) == ([2, 3, 4], True)
    assert seqs(await store.list_messages(chat.id, 2, 3)) == ([1], False)
    assert seqs(await store.list_messages(chat.id, 1, 3)) == ([], False)
    assert seqs(await store.list_messages(chat.id, 4, 3)) == ([1, 2, 3], False)
    assert seqs(await store.list_messages(chat.id, None, 6)) == ([2, 3, 4, 5, 6, 7], True)
    assert await store.list_messages(chat.id, None, 7) == (sent, False)
    assert await store.list_messages(chat.id, None, 50) == (sent, False)
    assert seqs(await store.list_messages(chat.id, 100, 2)) == ([6, 7], True)


async def test_list_messages_keeps_chats_apart(store: Store) -> None:
    ann = await new_user(store)
    one = await new_group(store, [ann], "one")
    two = await new_group(store, [ann], "two")
    mine = (await send(store, one, ann, "in one")).message
    await send(store, two, ann, "in two")
    assert await store.list_messages(one.id, None, 10) == ([mine], False)


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


# -- SQLite adapter specifics ----------------------------------------------------------------
@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    from messenger.store.sqlite import SQLiteStore

    adapter = SQLiteStore(tmp_path / "nested" / "dir" / "db.sqlite3")
    await adapter.migrate()
    yield adapter
    await adapter.close()


async def test_sqlite_schema_version_and_pragmas(sqlite_store: Store, tmp_path: Path) -> None:
    from messenger.store.sqlite_schema import SCHEMA_VERSION

    path = tmp_path / "nested" / "dir" / "db.sqlite3"
    assert path.is_file()  # parent directories were created
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_data_survives_reopening(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    first = SQLiteStore(tmp_path / "db.sqlite3")
    await first.migrate()
    ann = await new_user(first)
    chat = await new_group(first, [ann])
    message = (await send(first, chat, ann, "persisted", "c-1")).message
    stored_chat = await first.get_chat(chat.id)
    await first.close()

    second = SQLiteStore(tmp_path / "db.sqlite3")
    try:
        await second.migrate()
        assert await second.get_user(ann.id) == ann
        assert await second.get_chat(chat.id) == stored_chat
        assert (await send(second, chat, ann, "persisted", "c-1")).message == message
        assert (await send(second, chat, ann, "next")).message.seq == 2
    finally:
        await second.close()


async def test_sqlite_migrate_purges_expired_refresh_tokens(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    path = tmp_path / "db.sqlite3"
    adapter = SQLiteStore(path)
    await adapter.migrate()
    ann = await new_user(adapter)
    await adapter.add_refresh_token("old", "fam-old", ann.id, utcnow() - timedelta(seconds=1))
    await adapter.add_refresh_token("live", "fam-live", ann.id, utcnow() + timedelta(hours=1))
    await adapter.migrate()  # what a restart runs
    await adapter.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT jti FROM refresh_tokens").fetchall() == [("live",)]
        assert conn.execute("SELECT id FROM token_families").fetchall() == [("fam-live",)]


async def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    broken = SQLiteStore(blocker / "db.sqlite3")
    try:
        with pytest.raises(StoreUnavailable):
            await broken.ping()
    finally:
        await broken.close()


async def test_sqlite_hot_queries_use_indexes(sqlite_store: Store, tmp_path: Path) -> None:
    from messenger.store import sqlite as adapter

    cases = {
        "message by client id": (adapter.SQL_MESSAGE_BY_CLIENT_ID, ("c", "s", "m")),
        "message by id": (adapter.SQL_MESSAGE_BY_ID, ("m", "c")),
        "newest page": (adapter.SQL_NEWEST_MESSAGES, ("c", 51)),
        "page before seq": (adapter.SQL_MESSAGES_BEFORE, ("c", 10, 51)),
        "chat view": (adapter.SQL_CHAT_VIEW, ("u", "c")),
        "chat views": (adapter.SQL_CHAT_VIEWS, ("u", 50, "u")),
        "members": (adapter.SQL_CHAT_MEMBERS.format(marks="?, ?"), ("a", "b")),
        "token state": (adapter.SQL_TOKEN_STATE, ("j",)),
    }
    with closing(sqlite3.connect(tmp_path / "nested" / "dir" / "db.sqlite3")) as conn:
        for name, (sql, params) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            full_scans = [step for step in plan if step.startswith("SCAN") and step != "SCAN top"]
            assert full_scans == [], (name, plan)


async def test_sqlite_contacts_query_uses_indexes(sqlite_store: Store, tmp_path: Path) -> None:
    from messenger.store import sqlite as adapter

    with closing(sqlite3.connect(tmp_path / "nested" / "dir" / "db.sqlite3")) as conn:
        plan = [row[3] for row in conn.execute(
            f"EXPLAIN QUERY PLAN {adapter.SQL_CONTACTS}", ("u", 100, 100, "u")
        )]
    # it scans only what it built itself: the caller's chats ("small") and a count of at most
    # max_chat_size + 1 rows per chat
    bounded = ("SCAN (subquery-", "SCAN small")
    scans = [step for step in plan if step.startswith("SCAN") and not step.startswith(bounded)]
    assert scans == [], plan
    assert all(" USING " in step for step in plan if step.startswith("SEARCH")), plan
