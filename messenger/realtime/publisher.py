"""The one door through which events leave a process: stored first, then published.

* A chat's stored events (``new_message``, ``read``, ``chat_created``, ``members_added``,
  ``member_removed``) go through ``chat_event``. A chat of at most
  ``STREAM_FANOUT_MAX_MEMBERS`` members that has never been larger is *fanned out*: the
  store writes the chat-log entry and one copy per recipient into each ``u:<user>`` stream, and
  one publication per recipient stream goes to the broker. A larger chat is *streamed*: one
  entry in ``c:<chat>`` whatever its size, and one publication. The first streamed event of a
  chat also writes a *marker* into every member's stream, and each later ``members_added``
  one into the new members' streams: that is how a feed learns to follow the chat's stream, at
  which chat offset (``messenger/realtime/feed.py``). A chat that was streamed stays streamed.
* Typing and presence are *ephemeral* (``ephemeral``): not stored, offset 0, best effort.

A publication that fails after the durable write loses nothing: the event is in the store, and
every feed that follows the stream reads it from there when it sees the next offset or
reconnects.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from messenger.models import (
    AppendResult,
    Chat,
    ChatEvent,
    ChatEventWrite,
    Message,
    MessageDraft,
    SenderNotMember,
)
from messenger.realtime import frames
from messenger.realtime.broker import Broker, BrokerUnavailable, Publication
from messenger.realtime.history import StoreHistory

log = logging.getLogger("messenger.realtime.publisher")

#: Missing message events read and written per round trip (``message_events``,
#: ``complete_message_events``).
MISSING_EVENTS_PAGE = 500


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One event of a chat on its way out."""

    payload: bytes
    also: Sequence[str] = ()
    joiners: Sequence[str] = ()
    origin: str = ""
    ack: bytes | None = None
    message_seq: int | None = None


class ChatEventStore(Protocol):
    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]: ...

    async def append_messages_with_events(
        self, chat_id: str, drafts: Sequence[MessageDraft],
        event_of: Callable[[Message], ChatEvent],
    ) -> tuple[list[AppendResult | SenderNotMember],
               list[tuple[ChatEvent, ChatEventWrite]] | None]: ...

    async def append_chat_events(
        self, chat_id: str, events: Sequence[ChatEvent]
    ) -> list[ChatEventWrite]: ...

    async def last_message_event_seq(self, chat_id: str) -> int: ...

    async def messages_in_seq_range(self, chat_id: str, first_seq: int,
                                    last_seq: int) -> list[Message]: ...

    async def set_chat_streamed(self, chat_id: str) -> None: ...


class StreamPublisher:
    def __init__(self, store: ChatEventStore, broker: Broker, history: StoreHistory,
                 fanout_max_members: int) -> None:
        self.store = store
        self.broker = broker
        self.history = history
        self.fanout_max_members = fanout_max_members

    def streamed(self, chat: Chat) -> bool:
        """Whether the chat's events go to its own stream (it is, or was, large)."""
        return chat.streamed or len(chat.member_ids) > self.fanout_max_members

    async def chat_event(
        self, chat: Chat, payload: bytes, *, also: Sequence[str] = (),
        joiners: Sequence[str] = (),
    ) -> bool:
        """Store one event of ``chat`` (not a message's) and publish it. ``also``: users beyond
        the members who get it (the removed user of ``member_removed``); ``joiners``: members
        who join with it. Returns whether the chat is streamed from now on."""
        streamed, _ = await self._write(chat, [_Outgoing(payload, also, joiners)])
        return streamed

    async def store_messages(
        self, chat: Chat, drafts: Sequence[MessageDraft], origins: Sequence[str],
    ) -> tuple[list[AppendResult | SenderNotMember], set[int] | None]:
        """Store a batch of drafts of ``chat`` (``origins``: the session that sent each, "" for
        none) and, where the store can in the same call, their ``new_message`` events, then
        publish those. Returns the store's results and the seqs whose event was written here;
        ``None`` instead of the seqs when the events were not written with the messages (the
        store cannot, the chat log lacks an earlier message's event, or this batch switches
        the chat to its own stream): the caller writes them with ``message_events``."""
        if self.streamed(chat) and not chat.streamed:
            return await self.store.append_messages(chat.id, drafts), None
        recipients = None if chat.streamed else tuple(chat.member_ids)

        def event_of(message: Message) -> ChatEvent:
            return ChatEvent(frames.new_message(message), recipients, (), message.seq)

        results, written = await self.store.append_messages_with_events(
            chat.id, drafts, event_of)
        if written is None:
            return results, None
        sent = {
            result.message.seq: (result.message, origin)
            for result, origin in zip(results, origins, strict=True)
            if type(result) is AppendResult and result.created
        }
        batch: list[_Outgoing] = []
        for event, _ in written:
            message, origin = sent[event.message_seq]  # type: ignore[index]
            batch.append(_Outgoing(event.payload, origin=origin,
                                   ack=frames.message_sent(message) if origin else None,
                                   message_seq=message.seq))
        return results, await self._publish_writes(
            chat, chat.streamed, batch, [write for _, write in written])

    async def message_events(
        self, chat: Chat, sent: Sequence[tuple[Message, str]], after_seq: int | None = None,
    ) -> tuple[bool, set[int]]:
        """Store and publish the ``new_message`` events of stored messages (with the session
        that sent each, "" for none), after those of every earlier message of the chat: a
        chat's message events are in ``seq`` order in its log, whichever process stored each
        message. ``after_seq``: the seq whose event the caller knows is written (its own
        previous one); when the messages follow it without a hole, no read is needed. Else
        the events of earlier messages that are missing — stored by a writer that has not
        written their events yet, or died — are written here first, from the stored messages.
        Returns whether the chat is streamed from now on, and the seqs whose event this call
        wrote (a seq missing there was written first by another writer: its sending session
        does not get the ``ack`` through the stream)."""
        if not sent:
            return self.streamed(chat), set()
        mine = {message.seq: (message, origin) for message, origin in sent}
        first, last = min(mine), max(mine)
        contiguous = len(mine) == last - first + 1
        if after_seq is not None and after_seq == first - 1 and contiguous:
            written = after_seq
        else:
            written = await self.store.last_message_event_seq(chat.id)
        streamed = self.streamed(chat)
        wrote: set[int] = set()
        if first <= written:
            # Their events are in the chat log already (an earlier attempt wrote them and lost
            # the answer, or another writer did): written again they come back ``existed``,
            # with the copies this call completed if the fan-out was left half-way — which
            # ``_publish_writes`` publishes (a repeat of a publication is dropped by offset).
            streamed, _ = await self._write(chat, [
                self._message_outgoing(*mine[s]) for s in sorted(mine) if s <= written])
            chat = dataclasses.replace(chat, streamed=True) if streamed else chat
        seq = written + 1
        while seq <= last:  # pages of at most MISSING_EVENTS_PAGE seqs, in order
            page_end = min(last, seq + MISSING_EVENTS_PAGE - 1)
            wanted = range(seq, page_end + 1)
            others = [s for s in wanted if s not in mine]
            stored = {m.seq: m for m in await self.store.messages_in_seq_range(
                chat.id, others[0], others[-1])} if others else {}
            batch: list[_Outgoing] = []
            for s in wanted:
                message, origin = mine.get(s) or (stored.get(s), "")
                if message is None:
                    continue  # not stored (cannot be: seqs have no gaps); nothing to announce
                batch.append(self._message_outgoing(message, origin))
            streamed, written_here = await self._write(chat, batch)
            chat = dataclasses.replace(chat, streamed=True) if streamed else chat
            wrote.update(s for s in written_here if s in mine)
            seq = page_end + 1
        return streamed, wrote

    async def complete_message_events(self, chat: Chat) -> tuple[bool, set[int]]:
        """Write the ``new_message`` events of the chat's stored messages that have none yet:
        those after the chat log's last message event (a writer failed, or died, between
        storing messages and writing their events). Their sending sessions are not known
        here: each event is a ``new_message`` for everyone. Returns whether the chat is
        streamed from now on, and the seqs whose event this call wrote."""
        streamed, wrote = self.streamed(chat), set()
        after = await self.store.last_message_event_seq(chat.id)
        while True:
            stored = await self.store.messages_in_seq_range(
                chat.id, after + 1, after + MISSING_EVENTS_PAGE)
            run: list[tuple[Message, str]] = []
            for message in stored:  # up to a seq another writer is still storing, if any
                if message.seq != after + 1 + len(run):
                    break
                run.append((message, ""))
            if not run:
                return streamed, wrote
            streamed, here = await self.message_events(chat, run, after)
            chat = dataclasses.replace(chat, streamed=True) if streamed else chat
            wrote |= here
            after += len(run)

    @staticmethod
    def _message_outgoing(message: Message, origin: str) -> _Outgoing:
        """A message's ``new_message`` event (its sending session's ack, with ``origin``)."""
        return _Outgoing(frames.new_message(message), origin=origin,
                         ack=frames.message_sent(message) if origin else None,
                         message_seq=message.seq)

    async def _write(self, chat: Chat, batch: list[_Outgoing]) -> tuple[bool, set[int]]:
        """Store ``batch`` (events of ``chat``, in order) with one store call, then publish
        what was written; whether the chat is streamed now, and the message seqs written."""
        if not batch:
            return self.streamed(chat), set()
        if self.streamed(chat) and not chat.streamed:
            # The switch to the chat's own stream: its first event marks every member.
            first, *rest = batch
            _, wrote = await self._write_events(chat, [first], starting=True)
            await self.store.set_chat_streamed(chat.id)
            _, more = await self._write(dataclasses.replace(chat, streamed=True), rest)
            return True, wrote | more
        return await self._write_events(chat, batch, starting=False)

    async def _write_events(self, chat: Chat, batch: list[_Outgoing],
                            starting: bool) -> tuple[bool, set[int]]:
        streamed = self.streamed(chat)
        if streamed:
            events = [ChatEvent(o.payload, None, chat.member_ids if starting else o.joiners,
                                o.message_seq) for o in batch]
        else:
            events = [ChatEvent(o.payload, tuple(dict.fromkeys((*chat.member_ids, *o.also))),
                                (), o.message_seq) for o in batch]
        writes = await self.store.append_chat_events(chat.id, events)
        return streamed, await self._publish_writes(chat, streamed, batch, writes)

    async def _publish_writes(self, chat: Chat, streamed: bool, batch: Sequence[_Outgoing],
                              writes: Sequence[ChatEventWrite]) -> set[int]:
        """Publish what the store wrote of ``batch``; the message seqs written."""
        epoch = await self.history.epoch()
        wrote: set[int] = set()
        chat_stream = f"c:{chat.id}"
        for outgoing, write in zip(batch, writes, strict=True):
            origin, ack = outgoing.origin, outgoing.ack
            if write.existed:
                # Written by an earlier call, which may have failed before publishing it:
                # published again where its place is known (a repeat is dropped by its offset)
                # — a large chat's entry, the copies this call completed — as a plain
                # ``new_message`` (its sender's session is answered directly).
                if not (streamed or write.user_offsets):
                    continue
                origin, ack = "", None
            elif outgoing.message_seq is not None:
                wrote.add(outgoing.message_seq)
            if streamed:
                await self._publish(Publication(chat_stream, write.chat_offset, epoch,
                                                outgoing.payload, origin=origin, ack=ack))
            for user_id, offset in write.user_offsets.items():
                await self._publish(Publication(
                    f"u:{user_id}", offset, epoch, outgoing.payload, chat.id,
                    write.chat_offset, streamed, origin, ack))
        return wrote

    async def ephemeral_to_chat(self, chat: Chat, payload: bytes, about: str) -> None:
        """Typing: to the chat's other members (the chat's stream, or each member's)."""
        if chat.streamed:
            await self._publish(Publication(f"c:{chat.id}", 0, "", payload, about))
            return
        await self.ephemeral_to_users((m for m in chat.member_ids if m != about), payload, about)

    async def ephemeral_to_users(self, user_ids: Iterable[str], payload: bytes,
                                 about: str) -> None:
        for user_id in user_ids:
            await self._publish(Publication(f"u:{user_id}", 0, "", payload, about))

    async def _publish(self, pub: Publication) -> None:
        try:
            await self.broker.publish(pub)
        except BrokerUnavailable:
            # The broker logs its outage once; local feeds got it, the others read it from the
            # store when the broker is back (ephemeral ones are lost: best effort).
            pass
        except Exception:
            log.warning("publishing %s offset %d failed (it is stored; feeds will read it)",
                        pub.stream, pub.offset, exc_info=True)
