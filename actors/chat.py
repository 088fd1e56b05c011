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

A send that fails on the store (the database not answering, say) may have stored some of its
messages, or an earlier message may still be waiting for its event: the senders get the error
(a retry with the same ``client_msg_id`` stores nothing twice), and the actor itself writes the
events of every stored message that has none (``CompleteEvents``), first
``REPAIR_FIRST_DELAY`` later, then at doubling intervals up to ``REPAIR_MAX_DELAY`` until the
store answers — so such messages reach every member without waiting for another request to
the chat. The database not answering (``StoreUnavailable``) is an answer to the asker like a
refusal, not a fault of the actor: restarting would not help, and the actor keeps its state.

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
import logging
from dataclasses import dataclass
from typing import Any

from actors.ports import ChatPorts
from actors.runtime import Actor
from messenger.errors import ApiError, ChatNotFound
from messenger.models import Chat, Message, MessageDraft, SenderNotMember
from messenger.realtime import frames
from messenger.store import StoreUnavailable

log = logging.getLogger("messenger.actors")

#: The first retry of a failed event write, and the longest interval between retries.
REPAIR_FIRST_DELAY = 0.1
REPAIR_MAX_DELAY = 5.0


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


@dataclass(frozen=True, slots=True)
class CompleteEvents:
    """The actor's own retry after a failed send: write the events of stored messages that
    have none."""


class ChatActor(Actor):
    inbox_size = 10_000
    batch_types = (Send,)
    refusals = (ApiError, StoreUnavailable)

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
        #: While a ``CompleteEvents`` is due: the delay it was scheduled with (doubling).
        self._repair_delay: float | None = None
        self._repair_timer: asyncio.TimerHandle | None = None

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
        try:
            return await self._send_batch(messages)
        except Exception:
            self._repair_soon()
            raise

    async def _send_batch(self, messages: list[Any]) -> list[Any]:
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

    def _repair_soon(self) -> None:
        """After a failure that may have left stored messages without events: a
        ``CompleteEvents`` later (one at a time; the delay doubles while they fail)."""
        self._event_seq = None  # unknown now: the next write reads the chat log's
        if self._repair_timer is not None:
            return
        delay = (REPAIR_FIRST_DELAY if self._repair_delay is None
                 else min(2 * self._repair_delay, REPAIR_MAX_DELAY))
        self._repair_delay = delay
        self._repair_timer = asyncio.get_running_loop().call_later(
            delay, self._tell_later, CompleteEvents())

    async def _complete_events(self) -> None:
        self._repair_timer = None
        if self.chat is None:  # the chat is gone: no events to write
            self._repair_delay = None
            return
        try:
            await self._publish_backlog()
            streamed, wrote = await self._events.complete_message_events(self.chat)
        except Exception as exc:
            if self._repair_delay == REPAIR_FIRST_DELAY:  # once per outage, not per retry
                log.warning("chat %s: the events of stored messages are not written yet (%s); "
                            "retrying until the store answers", self.chat_id, exc)
            self._repair_soon()
            return
        self._note_streamed(streamed)
        if wrote:
            self.last_seq = max(self.last_seq, *wrote)
        self._repair_delay = None

    # -- typing and reads --------------------------------------------------------------------
    async def receive(self, message: Any) -> Any:
        if isinstance(message, CompleteEvents):
            return await self._complete_events()
        try:
            await self._publish_backlog()
        except Exception:
            self._repair_soon()
            raise
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
                self._typing_ttl, self._tell_later, TypingExpired(user_id, generation)
            )
            self._typing[user_id] = (generation, timer)
            if not was_typing:
                await self._publish_typing(user_id, True)
        elif was_typing:
            self._typing.pop(user_id)[1].cancel()
            await self._publish_typing(user_id, False)

    def _tell_later(self, message: TypingExpired | CompleteEvents) -> None:
        # full or stopping: the typing state goes with the actor; the events of stored
        # messages are written by the chat's next send (``message_events`` fills the gap)
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
        return not self._typing and not self._unpublished and self._repair_delay is None

    async def on_stop(self) -> None:
        for _, timer in self._typing.values():
            timer.cancel()
        self._typing.clear()

