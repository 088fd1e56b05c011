"""A chat's message seqs with two writers: two store objects on one database (two ``MongoStore``
on one mongoeco database, two ``SQLiteStore`` on one file), which is what two processes are to
the store. Every stored message has its own seq, the seqs of a chat are exactly 1..N (no gap, no
duplicate), and a ``client_msg_id`` that the other writer stored first answers with the stored
original and takes no seq, also in the middle of a batch.

Nothing sleeps: the writers run their calls concurrently with ``asyncio.gather``; each round's
two calls start together, so the two writers' look-ups of stored ``client_msg_id``s race their
inserts (the invariants checked hold whichever wins).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from messenger.models import AppendResult, Chat, Message, MessageDraft, SenderNotMember
from messenger.store import Store
from tests.support.stores import on_the_same_database, open_adapter
from tests.test_store_contract import new_group, new_users


@pytest.fixture(params=["sqlite", "mongo"])
async def writers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Two migrated store objects on one database."""
    first = open_adapter(request.param, request, tmp_path)
    await first.migrate()
    second = on_the_same_database(first)
    await second.migrate()
    yield [first, second]
    await second.close()
    await first.close()


def created(results: list[AppendResult | SenderNotMember]) -> list[Message]:
    return [r.message for r in results if isinstance(r, AppendResult) and r.created]


async def assert_seqs_are_one_to_n(store: Store, chat: Chat, stored: list[Message]) -> None:
    """``stored`` (every message the calls created) holds seqs 1..N once each, the chat's
    history is exactly those messages, and ``last_seq`` has caught up with them."""
    n = len(stored)
    assert sorted(m.seq for m in stored) == list(range(1, n + 1))
    history, has_more = await store.list_messages(chat.id, None, n + 10)
    assert has_more is False
    assert history == sorted(stored, key=lambda m: m.seq)
    current = await store.get_chat(chat.id)
    assert current is not None and current.last_seq == n


def assert_replays_answer_with_originals(
    outcomes: list[list[AppendResult | SenderNotMember]], stored: list[Message]
) -> None:
    """Every ``client_msg_id`` is stored once, and every draft carrying it got that message."""
    by_key: dict[tuple[str, str], Message] = {}
    for message in stored:
        if message.client_msg_id is not None:
            key = (message.sender_id, message.client_msg_id)
            assert key not in by_key, f"{key} stored twice"
            by_key[key] = message
    for results in outcomes:
        for result in results:
            assert isinstance(result, AppendResult)
            if result.message.client_msg_id is not None:
                key = (result.message.sender_id, result.message.client_msg_id)
                assert result.message == by_key[key]


async def test_two_writers_take_every_seq_exactly_once(writers: list[Store]) -> None:
    users = await new_users(writers[0], 3)
    chat = await new_group(writers[0], users)

    def single(writer: int, i: int) -> list[MessageDraft]:
        sender = users[i % 3]
        if i % 3 == 0:  # both writers send this one: one stores it, the other replays it
            return [MessageDraft(sender.id, f"single {i}", f"s-{i}")]
        return [MessageDraft(sender.id, f"single {writer}.{i}")]

    def batch(writer: int, b: int) -> list[MessageDraft]:
        return [
            MessageDraft(users[b % 3].id, f"batch {writer}.{b}.0"),
            MessageDraft(users[b % 3].id, f"batch {b} shared", f"b-{b}"),  # sent by both
            MessageDraft(users[(b + 1) % 3].id, f"batch {writer}.{b}.2", f"b-{writer}-{b}"),
            MessageDraft(users[(b + 2) % 3].id, f"batch {writer}.{b}.3"),
        ]

    calls = []
    for writer, store in enumerate(writers):
        calls += [store.append_messages(chat.id, single(writer, i)) for i in range(30)]
        calls += [store.append_messages(chat.id, batch(writer, b)) for b in range(5)]
    outcomes = await asyncio.gather(*calls)

    stored = [m for results in outcomes for m in created(results)]
    # 2 x 20 singles of their own + 10 shared; 2 x 5 x 3 batch drafts of their own + 5 shared
    assert len(stored) == 40 + 10 + 30 + 5
    await assert_seqs_are_one_to_n(writers[1], chat, stored)
    assert_replays_answer_with_originals(outcomes, stored)
    for results in outcomes:  # a batch's messages keep the batch's order
        seqs = [r.message.seq for r in results if isinstance(r, AppendResult) and r.created]
        assert seqs == sorted(seqs)


async def test_a_client_msg_id_the_other_writer_stored_leaves_no_hole(
    writers: list[Store],
) -> None:
    ann, bob = await new_users(writers[0], 2)
    chat = await new_group(writers[0], [ann, bob])

    def batch(writer: int, round_: int) -> list[MessageDraft]:
        return [
            MessageDraft(ann.id, f"{writer}.{round_} before"),
            MessageDraft(bob.id, f"round {round_}", f"r-{round_}"),  # in the middle, both send it
            MessageDraft(ann.id, f"{writer}.{round_} after"),
            MessageDraft(bob.id, f"{writer}.{round_} last"),
        ]

    outcomes: list[list[AppendResult | SenderNotMember]] = []
    for round_ in range(12):  # each round: both writers at once, the same client_msg_id
        outcomes += await asyncio.gather(
            *(store.append_messages(chat.id, batch(w, round_)) for w, store in enumerate(writers))
        )
        pair = outcomes[-2:]
        middle = [results[1] for results in pair]
        assert all(isinstance(r, AppendResult) for r in middle)
        assert sorted(r.created for r in middle if isinstance(r, AppendResult)) == [False, True]
        assert middle[0].message == middle[1].message  # type: ignore[union-attr]

    stored = [m for results in outcomes for m in created(results)]
    assert len(stored) == 12 * 7
    await assert_seqs_are_one_to_n(writers[0], chat, stored)
    assert_replays_answer_with_originals(outcomes, stored)


async def test_a_member_removed_by_the_other_writer_is_refused(writers: list[Store]) -> None:
    ann, bob = await new_users(writers[0], 2)
    chat = await new_group(writers[0], [ann, bob])
    await writers[1].remove_member(chat.id, bob.id)
    results = await writers[0].append_messages(
        chat.id,
        [MessageDraft(ann.id, "one"), MessageDraft(bob.id, "gone"), MessageDraft(ann.id, "two")],
    )
    assert results[1] == SenderNotMember(bob.id)
    assert [r.message.seq for r in results if isinstance(r, AppendResult)] == [1, 2]
    await assert_seqs_are_one_to_n(writers[1], chat, created(results))


async def test_mongo_a_writer_that_died_before_raising_last_seq_leaves_no_trace(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A writer that inserted a message and died before ``$max``-ing the chat's ``last_seq``
    (done here by inserting the document the way it would): the hint lags, yet the views show
    the message, ``mark_read`` reaches it, and the next append takes the seq after it."""
    from bson import ObjectId
    from motor.motor_asyncio import AsyncIOMotorClient

    from messenger.clock import utcnow
    from messenger.store.mongo import MongoStore

    store = open_adapter("mongo", request, tmp_path)
    assert isinstance(store, MongoStore)
    await store.migrate()
    client: AsyncIOMotorClient = AsyncIOMotorClient(store.url, tz_aware=True)
    try:
        ann, bob = await new_users(store, 2)
        chat = await new_group(store, [ann, bob])
        [first] = created(await store.append_messages(chat.id, [MessageDraft(ann.id, "one")]))
        await client[store.db_name].messages.insert_one(
            {"_id": ObjectId(), "chat_id": ObjectId(chat.id), "seq": 2,
             "sender_id": ObjectId(bob.id), "text": "died after this", "client_msg_id": "d-1",
             "created_at": utcnow()}
        )
        hinted = await store.get_chat(chat.id)
        assert hinted is not None and hinted.last_seq == 1  # the hint lags

        view = await store.get_chat_view(chat.id, ann.id)
        assert view is not None and view.last_message is not None
        assert (view.chat.last_seq, view.last_message.seq, view.unread_count) == (2, 2, 1)
        [listed] = await store.list_chat_views(ann.id, 10)
        assert listed == view
        assert await store.mark_read(chat.id, ann.id, 5) == 2  # clamped to the newest stored

        # bob's retry finds his original; the next new message takes seq 3
        results = await store.append_messages(
            chat.id, [MessageDraft(bob.id, "died after this", "d-1"), MessageDraft(ann.id, "3")]
        )
        assert [(r.created, r.message.seq) for r in results if isinstance(r, AppendResult)] == [
            (False, 2), (True, 3)
        ]
        current = await store.get_chat(chat.id)
        assert current is not None and current.last_seq == 3
        history, _ = await store.list_messages(chat.id, None, 10)
        assert [m.seq for m in history] == [1, 2, 3] and history[0] == first
    finally:
        client.close()
        await store.close()
