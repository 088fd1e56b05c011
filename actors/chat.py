"""ChatActor: one per active chat on this process — members, typing, and the send path.

The send path, for REST and WebSocket senders alike: ``Send`` requests queued together are
taken as one batch (``batch_types``); each is checked against the cached member list (no
database read per send; the store checks membership again as it writes), the batch is stored
through the stream publisher (``store_messages``: one batch insert and, where the store can
in the same transaction, one ``new_message`` event per new message in the chat's streams),
then the events are published, in ``seq`` order; where the store could not write the events
with the messages (MongoDB, or an earlier message's event still missing), they are stored
next (``message_events``) and then published. Only then does each sender get its answer. A
retried ``client_msg_id`` returns the original message and publishes nothing. Because one
actor owns a chat's sends here, and the store orders every writer's events of a chat by chat
offset, every session receives that chat's messages in ``seq`` order.

Typing is state here: ``typing_start`` publishes ``is_typing: true`` only when the user was
not typing already (repeats just push the expiry back), ``typing_stop`` or ``TYPING_TTL``
without a new start publishes ``false``. A message from a user ends their typing silently
(clients clear the indicator on ``new_message``).

A request the actor refuses — a non-member's send, typing or read answers ``chat_not_found`` —
is an answer (``refusals``: every ``ApiError``), not a failure: the actor keeps running and
keeps its members' typing state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from actors.ports import ChatPorts
from actors.runtime import Actor
from messenger.errors import ApiError, ChatNotFound
from messenger.models import Chat, Message, MessageDraft, SenderNotMember
from messenger.realtime import frames


@dataclass(frozen=True, slots=True)
class Send:
    sender_id: str
    text: str
    client_msg_id: str | None
    attachment_ids: tuple[str, ...] = ()
    origin: str = ""  # the WebSocket session that sent it (gets message_sent)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    message: Message
    created: bool  # False: a replayed client_msg_id (nothing new stored or sent)
    #: The sending session gets message_sent through the stream (False: another process wrote
    #: the message's event first, or it was a replay: the session must be told directly).
    announced: bool = False


@dataclass(frozen=True, slots=True)
class SetTyping:
    user_id: str
    is_typing: bool


@dataclass(frozen=True, slots=True)
class TypingExpired:
    user_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class MarkRead:
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    chat_id: str
    seq: int
    unread_count: int


@dataclass(frozen=True, slots=True)
class Reload:
    """Membership changed: read the chat again."""


class ChatActor(Actor):
    inbox_size = 10_000
    batch_types = (Send,)
    refusals = (ApiError,)

    def __init__(self, chat_id: str, ports: ChatPorts) -> None:
        super().__init__(f"chat:{chat_id}")
        self.chat_id = chat_id
        self._store = ports.store
        self._events = ports.events
        self._attachments = ports.attachments
        self.idle_timeout = ports.idle_timeout
        self.batch_max = ports.batch_max
        self._typing_ttl = ports.typing_ttl
        self.chat: Chat | None = None
        self.last_seq = 0
        self._typing: dict[str, tuple[int, asyncio.TimerHandle]] = {}
        self._typing_generation = 0
        self._read_sent: dict[str, int] = {}
        #: new_message events of stored messages whose write failed: (message, origin),
        #: written before anything else of this chat.
        self._unpublished: list[tuple[Message, str]] = []
        #: The seq of the last message whose event this actor wrote (its next one needs no
        #: check that the events before it are written).
        self._event_seq: int | None = None

    async def on_start(self) -> None:
        await self._load()

    async def _load(self) -> None:
        self.chat = await self._store.get_chat(self.chat_id)
        if self.chat is None:
            self.idle_timeout = 0.5  # nothing to keep: stop soon, answering chat_not_found
        else:
            self.last_seq = max(self.last_seq, self.chat.last_seq)

    def _member(self, user_id: str) -> Chat:
        if self.chat is None or not self.chat.is_member(user_id):
            raise ChatNotFound("chat not found")
        return self.chat

    # -- send ------------------------------------------------------------------------------
    async def _publish_backlog(self) -> set[int]:
        """Write the pending message events, in order, with one store call; the seqs whose
        event was written here."""
        if not self._unpublished:
            return set()
        assert self.chat is not None
        pending = list(self._unpublished)
        streamed, announced = await self._events.message_events(
            self.chat, pending, self._event_seq)
        del self._unpublished[:len(pending)]
        self._note_streamed(streamed)
        self._event_seq = max(message.seq for message, _ in pending)
        return announced

    def _note_streamed(self, streamed: bool) -> None:
        if streamed and self.chat is not None and not self.chat.streamed:
            self.chat = dataclasses.replace(self.chat, streamed=True)

    async def receive_batch(self, messages: list[Any]) -> list[Any]:
        await self._publish_backlog()
        results: list[Any] = [None] * len(messages)
        drafts: list[MessageDraft] = []
        slots: list[int] = []
        for i, send in enumerate(messages):
            try:
                self._member(send.sender_id)
                attachments = await self._attachments.claim_attachments(
                    send.sender_id, send.attachment_ids,
                    chat_id=self.chat_id, client_msg_id=send.client_msg_id,
                ) if send.attachment_ids else ()
            except Exception as exc:
                results[i] = exc
                continue
            drafts.append(MessageDraft(send.sender_id, send.text, send.client_msg_id,
                                       tuple(attachments)))
            slots.append(i)
        if not drafts:
            return results
        assert self.chat is not None
        appended, announced = await self._events.store_messages(
            self.chat, drafts, [messages[slot].origin for slot in slots])
        if any(isinstance(outcome, SenderNotMember) for outcome in appended):
            # The store, the last word on membership, refused a sender this cache still
            # listed (removed through another process): refuse them and reload the members.
            await self._load()
        assert self.chat is not None
        for slot, outcome in zip(slots, appended, strict=True):
            if isinstance(outcome, SenderNotMember):
                results[slot] = ChatNotFound("chat not found")
                continue
            if outcome.created:
                self.last_seq = max(self.last_seq, outcome.message.seq)
                self._stop_typing_silently(outcome.message.sender_id)
                if announced is not None:  # its event was stored with it, and published
                    self._event_seq = max(self._event_seq or 0, outcome.message.seq)
                    continue
                # The messages are stored; if an event cannot be written, it and the rest go
                # out before anything else of this chat, on the next request to it (a retry
                # with the same client_msg_id is such a request).
                self._unpublished.append((outcome.message, messages[slot].origin))
        if announced is None:
            announced = await self._publish_backlog()
        for slot, outcome in zip(slots, appended, strict=True):
            if not isinstance(outcome, SenderNotMember):
                results[slot] = SendOutcome(outcome.message, outcome.created,
                                            outcome.created and outcome.message.seq in announced)
        return results

    # -- typing and reads --------------------------------------------------------------------
    async def receive(self, message: Any) -> Any:
        await self._publish_backlog()
        if isinstance(message, SetTyping):
            return await self._set_typing(message.user_id, message.is_typing)
        if isinstance(message, TypingExpired):
            current = self._typing.get(message.user_id)
            if current is not None and current[0] == message.generation:
                del self._typing[message.user_id]
                await self._publish_typing(message.user_id, False)
            return None
        if isinstance(message, MarkRead):
            return await self._mark_read(message.user_id, message.seq)
        if isinstance(message, Reload):
            await self._load()
            return None
        raise TypeError(f"unexpected message {type(message).__name__}")

    async def _set_typing(self, user_id: str, is_typing: bool) -> None:
        self._member(user_id)
        was_typing = user_id in self._typing
        if is_typing:
            if was_typing:
                self._typing[user_id][1].cancel()
            self._typing_generation += 1
            generation = self._typing_generation
            timer = asyncio.get_running_loop().call_later(
                self._typing_ttl, self._expire, TypingExpired(user_id, generation)
            )
            self._typing[user_id] = (generation, timer)
            if not was_typing:
                await self._publish_typing(user_id, True)
        elif was_typing:
            self._typing.pop(user_id)[1].cancel()
            await self._publish_typing(user_id, False)

    def _expire(self, message: TypingExpired) -> None:
        # full or stopping: the typing state goes with the actor
        with contextlib.suppress(Exception):
            self.tell(message)

    def _stop_typing_silently(self, user_id: str) -> None:
        entry = self._typing.pop(user_id, None)
        if entry is not None:
            entry[1].cancel()

    async def _publish_typing(self, user_id: str, is_typing: bool) -> None:
        assert self.chat is not None
        await self._events.ephemeral_to_chat(
            self.chat, frames.typing(self.chat_id, user_id, is_typing), user_id)

    async def _mark_read(self, user_id: str, seq: int) -> ReadOutcome:
        chat = self._member(user_id)
        position = await self._store.mark_read(self.chat_id, user_id, seq)
        # Another process may have stored later messages: the stored last seq counts.
        fresh = await self._store.get_chat(self.chat_id)
        if fresh is not None:
            self.last_seq = max(self.last_seq, fresh.last_seq)
        unread = max(0, self.last_seq - position)
        if position > self._read_sent.get(user_id, 0):
            self._read_sent[user_id] = position
            self._note_streamed(await self._events.chat_event(
                chat, frames.read(self.chat_id, user_id, position, unread)))
        return ReadOutcome(self.chat_id, position, unread)

    def is_idle(self) -> bool:
        return not self._typing and not self._unpublished

    async def on_stop(self) -> None:
        for _, timer in self._typing.values():
            timer.cancel()
        self._typing.clear()

