"""Model-based test of message and read-position semantics, against both Store adapters.

A Hypothesis state machine drives a real, freshly migrated store (its own SQLite file, or its own
MongoDB database on the mongoeco wire server) with random steps: batches of drafts (with
``client_msg_id`` drawn from a tiny pool, so replays, also inside one batch, are common),
``mark_read`` to any position and ``list_messages`` pages. A plain-Python model of the same chats
says what every answer must be; after each step the whole visible state (last seqs, every
message, read positions, unread counts, chat views) is compared with the model.

The store is async and Hypothesis stateful testing is sync: each machine instance owns one event
loop and runs every store call to completion on it.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from messenger.models import ChatType, Message, MessageDraft
from messenger.store import Store
from tests.support.processes import MongoecoServer

USERS = 3
CHATS = 2
CLIENT_MSG_IDS = ("a", "b", "c")  # a small pool, so that replays happen often

StoreFactory = Callable[[], Store]


@dataclass(frozen=True)
class ModelMessage:
    sender: int  # index into the machine's users
    text: str
    client_msg_id: str | None
    seq: int


class ChatModel:
    """What one chat must look like: its messages in seq order and each member's read position."""

    def __init__(self) -> None:
        self.messages: list[ModelMessage] = []
        self.by_client_id: dict[tuple[int, str], ModelMessage] = {}
        self.read: dict[int, int] = dict.fromkeys(range(USERS), 0)

    @property
    def last_seq(self) -> int:
        return len(self.messages)

    def append(
        self, sender: int, text: str, client_msg_id: str | None
    ) -> tuple[ModelMessage, bool]:
        """The message a draft stands for and whether it is new."""
        if client_msg_id is not None:
            original = self.by_client_id.get((sender, client_msg_id))
            if original is not None:
                return original, False
        message = ModelMessage(sender, text, client_msg_id, self.last_seq + 1)
        self.messages.append(message)
        if client_msg_id is not None:
            self.by_client_id[(sender, client_msg_id)] = message
        self.read[sender] = max(self.read[sender], message.seq)
        return message, True

    def mark_read(self, user: int, seq: int) -> int:
        self.read[user] = max(self.read[user], min(max(seq, 0), self.last_seq))
        return self.read[user]

    def page(self, before_seq: int | None, limit: int) -> tuple[list[ModelMessage], bool]:
        older = [m for m in self.messages if before_seq is None or m.seq < before_seq]
        return older[max(len(older) - limit, 0) :], len(older) > limit


draft_strategy = st.tuples(
    st.integers(min_value=0, max_value=USERS - 1),
    st.text(alphabet="xyz é", max_size=6),
    st.none() | st.sampled_from(CLIENT_MSG_IDS),
)
chat_strategy = st.integers(min_value=0, max_value=CHATS - 1)
user_strategy = st.integers(min_value=0, max_value=USERS - 1)


class MessagesMachine(RuleBasedStateMachine):
    def __init__(self, open_store: StoreFactory) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = open_store()
        try:
            self.run(self.store.migrate())
            self.user_ids = [
                self.run(
                    self.store.create_user(
                        f"u{i}.{uuid.uuid4().hex[:8]}@example.com", b"h", f"U{i}"
                    )
                ).id
                for i in range(USERS)
            ]
            self.chat_ids: list[str] = []
            for i in range(CHATS):
                chat, created = self.run(
                    self.store.create_chat(ChatType.GROUP, self.user_ids, f"group {i}", None)
                )
                assert created
                assert chat.last_seq == 0
                self.chat_ids.append(chat.id)
        except BaseException:
            self.teardown()
            raise
        self.model = [ChatModel() for _ in range(CHATS)]
        # What the store said about each message when it was created (id, created_at), by seq:
        # recorded, never predicted, and compared with every later answer about that message.
        self.seen: list[dict[int, Message]] = [{} for _ in range(CHATS)]

    def run[T](self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()

    # -- checks ------------------------------------------------------------------------------
    def check_message(self, chat: int, got: Message, want: ModelMessage) -> None:
        assert got.chat_id == self.chat_ids[chat]
        assert (got.seq, got.sender_id, got.text, got.client_msg_id) == (
            want.seq,
            self.user_ids[want.sender],
            want.text,
            want.client_msg_id,
        )
        assert got == self.seen[chat][want.seq]  # same id and created_at as when it was stored

    # -- rules -------------------------------------------------------------------------------
    @initialize(
        batches=st.lists(st.lists(draft_strategy, max_size=4), min_size=CHATS, max_size=CHATS)
    )
    def seed(self, batches: list[list[tuple[int, str, str | None]]]) -> None:
        """A first batch (possibly empty) per chat, so most steps meet chats with messages."""
        for chat, drafts in enumerate(batches):
            self.append_batch(chat, drafts)

    @rule(chat=chat_strategy, drafts=st.lists(draft_strategy, min_size=1, max_size=4))
    def append(self, chat: int, drafts: list[tuple[int, str, str | None]]) -> None:
        self.append_batch(chat, drafts)

    def append_batch(self, chat: int, drafts: list[tuple[int, str, str | None]]) -> None:
        model = self.model[chat]
        results = self.run(
            self.store.append_messages(
                self.chat_ids[chat],
                [MessageDraft(self.user_ids[s], text, cid) for s, text, cid in drafts],
            )
        )
        assert len(results) == len(drafts)
        for (sender, text, client_msg_id), result in zip(drafts, results, strict=True):
            want, created = model.append(sender, text, client_msg_id)
            assert result.created is created, (want, result)
            if created:
                assert result.message.seq not in self.seen[chat]
                known_ids = {m.id for seen in self.seen for m in seen.values()}
                assert result.message.id not in known_ids
                self.seen[chat][want.seq] = result.message
            self.check_message(chat, result.message, want)

    @rule(chat=chat_strategy, user=user_strategy, data=st.data())
    def mark_read(self, chat: int, user: int, data: st.DataObject) -> None:
        model = self.model[chat]
        read, last = model.read[user], model.last_seq
        # Back to or below the read position; past last_seq (a little, or far); and, twice as
        # likely when there is room, forward within the chat.
        targets = [
            st.integers(min_value=-1, max_value=read),
            st.integers(min_value=last + 1, max_value=last + 3) | st.just(10**9),
        ]
        if read < last:
            targets += [st.integers(min_value=read + 1, max_value=last)] * 2
        seq = data.draw(st.one_of(targets), label="seq")
        position = self.run(self.store.mark_read(self.chat_ids[chat], self.user_ids[user], seq))
        assert position == model.mark_read(user, seq)

    @rule(chat=chat_strategy, limit=st.integers(min_value=1, max_value=5), data=st.data())
    def list_messages(self, chat: int, limit: int, data: st.DataObject) -> None:
        model = self.model[chat]
        before_seq = data.draw(
            st.none() | st.integers(min_value=-1, max_value=model.last_seq + 3), label="before_seq"
        )
        page, has_more = self.run(self.store.list_messages(self.chat_ids[chat], before_seq, limit))
        want, want_more = model.page(before_seq, limit)
        assert [m.seq for m in page] == [m.seq for m in want]
        for got, expected in zip(page, want, strict=True):
            self.check_message(chat, got, expected)
        assert has_more is want_more

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def chats_match_the_model(self) -> None:
        for chat, model in enumerate(self.model):
            stored = self.run(self.store.get_chat(self.chat_ids[chat]))
            assert stored is not None
            assert stored.last_seq == model.last_seq
            everything, has_more = self.run(
                self.store.list_messages(self.chat_ids[chat], None, model.last_seq + 5)
            )
            assert [m.seq for m in everything] == list(range(1, model.last_seq + 1))  # no gaps
            for got, want in zip(everything, model.messages, strict=True):
                self.check_message(chat, got, want)
            assert has_more is False

    @invariant()
    def views_match_the_model(self) -> None:
        for user, user_id in enumerate(self.user_ids):
            views = self.run(self.store.list_chat_views(user_id, 10))
            assert sorted(v.chat.id for v in views) == sorted(self.chat_ids)
            keys = [(v.chat.last_activity_at, v.chat.id) for v in views]
            assert keys == sorted(keys, reverse=True)
            for view in views:
                chat = self.chat_ids.index(view.chat.id)
                model = self.model[chat]
                assert view.chat.last_seq == model.last_seq
                assert view.read_seq == model.read[user]
                assert view.unread_count == model.last_seq - model.read[user]
                if model.messages:
                    assert view.last_message is not None
                    self.check_message(chat, view.last_message, model.messages[-1])
                    assert view.chat.last_activity_at >= view.last_message.created_at
                else:
                    assert view.last_message is None
                assert self.run(self.store.get_chat_view(view.chat.id, user_id)) == view


def run_machine(open_store: StoreFactory, max_examples: int, steps: int) -> None:
    run_state_machine_as_test(
        lambda: MessagesMachine(open_store),
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
            # No Phase.explain: tracing every re-run through the store turns a failure report
            # from well under a minute into five or more.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        ),
    )


def test_sqlite_store_follows_the_model(tmp_path: Path) -> None:
    from messenger.store.sqlite import SQLiteStore

    def open_store() -> Store:
        return SQLiteStore(Path(tempfile.mkdtemp(dir=tmp_path)) / "db.sqlite3")

    run_machine(open_store, max_examples=40, steps=15)


def test_mongo_store_follows_the_model(mongoeco: MongoecoServer) -> None:
    from messenger.store.mongo import MongoStore

    def open_store() -> Store:
        return MongoStore(
            mongoeco.url, f"model_{uuid.uuid4().hex}", write_concern="majority", timeout_ms=3000
        )

    run_machine(open_store, max_examples=10, steps=10)
