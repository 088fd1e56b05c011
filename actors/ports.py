"""Ports: the narrow interfaces a ``ChatActor`` and a ``UserActor`` depend on.

An actor knows only what it uses — never the hub, the services or the whole ``Store``. The
hub (``actors/hub.py``) wires the concrete objects in: the store, the stream publisher (the one
door out for events), itself as the presence listener, ``ChatService`` for attachment claims,
and the settings values. Each actor gets one frozen ports object when it is spawned, so the
dependency runs one way (hub → actors → ports) and an actor can be built from its ports alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from messenger.models import (
    AppendResult,
    Attachment,
    Chat,
    Message,
    MessageDraft,
    SenderNotMember,
)


class ChatStore(Protocol):
    """The part of ``Store`` a chat actor reads and writes."""

    async def get_chat(self, chat_id: str) -> Chat | None: ...

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int: ...


class ChatEvents(Protocol):
    """Where a chat actor's events go: stored first, then published
    (``messenger.realtime.publisher.StreamPublisher``)."""

    async def chat_event(
        self, chat: Chat, payload: bytes, *, also: Sequence[str] = (),
        joiners: Sequence[str] = (),
    ) -> bool:
        """Store and publish one event of ``chat``; whether the chat is streamed now."""
        ...

    async def store_messages(
        self, chat: Chat, drafts: Sequence[MessageDraft], origins: Sequence[str],
    ) -> tuple[list[AppendResult | SenderNotMember], set[int] | None]:
        """Store a batch of drafts (with the session that sent each) and, where the store can
        in the same call, their ``new_message`` events, then publish those: the results, and
        the seqs whose event was written here — None if the events were not written (the
        caller then writes them with ``message_events``)."""
        ...

    async def message_events(
        self, chat: Chat, sent: Sequence[tuple[Message, str]], after_seq: int | None = None,
    ) -> tuple[bool, set[int]]:
        """Store and publish stored messages' ``new_message`` events (with each one's sending
        session), after every earlier message's; whether the chat is streamed now, and the
        seqs whose event this call wrote."""
        ...

    async def complete_message_events(self, chat: Chat) -> tuple[bool, set[int]]:
        """Store and publish the events of the chat's stored messages that have none yet
        (after the last message event of its log); whether the chat is streamed now, and the
        seqs whose event this call wrote."""
        ...

    async def ephemeral_to_chat(self, chat: Chat, payload: bytes, about: str) -> None:
        """Publish an event that is not stored (typing) to the chat's other members."""
        ...


class AttachmentClaims(Protocol):
    async def claim_attachments(
        self,
        sender_id: str,
        attachment_ids: Sequence[str],
        *,
        chat_id: str,
        client_msg_id: str | None,
    ) -> Sequence[Attachment]:
        """The attachments a send of ``sender_id`` may carry (a typed ``ApiError`` if not)."""
        ...


class PresenceListener(Protocol):
    async def presence_changed(self, user_id: str, online: bool, at: datetime) -> None:
        """The user came online here (first session) or went offline (after the grace)."""
        ...


@dataclass(frozen=True, slots=True)
class ChatPorts:
    """What a ``ChatActor`` needs."""

    store: ChatStore
    events: ChatEvents
    attachments: AttachmentClaims
    idle_timeout: float  # ACTOR_IDLE_SECONDS
    batch_max: int  # SEND_BATCH_MAX
    typing_ttl: float  # TYPING_TTL_SECONDS


@dataclass(frozen=True, slots=True)
class UserPorts:
    """What a ``UserActor`` needs."""

    presence: PresenceListener
    idle_timeout: float  # ACTOR_IDLE_SECONDS
    presence_grace: float  # PRESENCE_GRACE_SECONDS
