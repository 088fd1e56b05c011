"""Ports: the narrow interfaces a ``ChatActor`` and a ``UserActor`` depend on.

An actor knows only what it uses — never the hub, the services or the whole ``Store``. The
hub (``actors/hub.py``) wires the concrete objects in: the store, itself as the event
publisher and presence listener, ``ChatService`` for attachment claims, and the settings
values. Each actor gets one frozen ports object when it is spawned, so the dependency runs one
way (hub → actors → ports) and an actor can be built from its ports alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from messenger.events import Event, EventDraft
from messenger.models import AppendResult, Attachment, Chat, MessageDraft, SenderNotMember


class ChatStore(Protocol):
    """The part of ``Store`` a chat actor reads and writes."""

    async def get_chat(self, chat_id: str) -> Chat | None: ...

    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]: ...

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int: ...


class EventPublisher(Protocol):
    async def publish(self, drafts: list[EventDraft]) -> list[Event]:
        """Store the events in the event log and publish them; returns them with their ids."""
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
    publisher: EventPublisher
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
    ring_size: int  # EVENT_RING_SIZE
