"""Domain records shared by services and store adapters (plain, immutable dataclasses).

``to_json`` methods give the public API shape; fields a client must never see (password
hashes) are simply not rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from messenger.clock import isoformat


class ChatType(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    display_name: str
    password_hash: bytes
    created_at: datetime

    def to_json(self, *, include_email: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "display_name": self.display_name,
            "created_at": isoformat(self.created_at),
        }
        if include_email:
            body["email"] = self.email
        return body


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    type: ChatType
    title: str | None
    member_ids: tuple[str, ...]
    created_at: datetime
    last_seq: int
    last_activity_at: datetime

    def is_member(self, user_id: str) -> bool:
        return user_id in self.member_ids

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": str(self.type),
            "title": self.title,
            "member_ids": list(self.member_ids),
            "created_at": isoformat(self.created_at),
            "last_seq": self.last_seq,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    seq: int
    sender_id: str
    text: str
    client_msg_id: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "text": self.text,
            "client_msg_id": self.client_msg_id,
            "created_at": isoformat(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message to append; the store assigns ``id``, ``seq`` and ``created_at``."""

    sender_id: str
    text: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    message: Message
    created: bool  # False: an earlier message with the same client_msg_id was returned


@dataclass(frozen=True, slots=True)
class ChatView:
    """A chat as one member sees it: with the last message and the member's read position."""

    chat: Chat
    last_message: Message | None
    read_seq: int

    @property
    def unread_count(self) -> int:
        return max(0, self.chat.last_seq - self.read_seq)

    def to_json(self) -> dict[str, Any]:
        body = self.chat.to_json()
        body["last_message"] = self.last_message.to_json() if self.last_message else None
        body["unread_count"] = self.unread_count
        return body


class RefreshSpend(StrEnum):
    SPENT = "spent"  # the token was live and is now spent: issue the next pair
    REUSED = "reused"  # the token had been spent before: revoke its family
    REVOKED = "revoked"  # the token's family was revoked earlier
    UNKNOWN = "unknown"  # no such token (or it expired and was purged)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    jti: str
    family_id: str
    user_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SpendResult:
    outcome: RefreshSpend
    token: RefreshToken | None
