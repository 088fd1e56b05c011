"""Domain records shared by services and store adapters (plain, immutable dataclasses).

``to_json`` methods give the public API shape; fields a client must never see (password
hashes) are simply not rendered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from messenger.clock import from_millis, iso_millis, isoformat


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
    email_verified: bool = False

    def to_json(self, *, include_email: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "display_name": self.display_name,
            "created_at": isoformat(self.created_at),
        }
        if include_email:
            body["email"] = self.email
            body["email_verified"] = self.email_verified
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
    #: A large chat whose events go to its own stream ``c:<chat id>`` (``Store.set_chat_streamed``;
    #: set once, never unset). Not part of the public API shape.
    streamed: bool = False

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
class Attachment:
    """A file carried by a message: a completed upload (its id), as recipients see it."""

    id: str
    filename: str
    content_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    seq: int
    sender_id: str
    text: str
    client_msg_id: str | None
    #: milliseconds since the epoch, UTC (what both stores keep): history pages and events
    #: render it straight to ISO 8601 without building a datetime per message
    created_ms: int
    attachments: tuple[Attachment, ...] = ()
    #: ``to_json()`` encoded, made by the first ``json_bytes()`` (a message never changes, so a
    #: store that keeps recent ones renders each once, however often a page shows it)
    _json: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def created_at(self) -> datetime:
        return from_millis(self.created_ms)

    def json_bytes(self) -> bytes:
        encoded = self._json
        if encoded is None:
            encoded = orjson.dumps(self.to_json())
            object.__setattr__(self, "_json", encoded)  # a cache, not a change: frozen still
        return encoded

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "text": self.text,
            "client_msg_id": self.client_msg_id,
            "created_at": iso_millis(self.created_ms),
            "attachments": [attachment.to_json() for attachment in self.attachments]
            if self.attachments else [],
        }


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message to append; the store assigns ``id``, ``seq`` and ``created_at``."""

    sender_id: str
    text: str
    client_msg_id: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    message: Message
    created: bool  # False: an earlier message with the same client_msg_id was returned


@dataclass(frozen=True, slots=True)
class SenderNotMember:
    """``append_messages`` refused this draft: its sender is not a member of the chat (the
    store checks it atomically with the write, whatever a caller's member cache says)."""

    sender_id: str


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


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stored event of a stream (docs/REALTIME_STREAMS.md): offsets have no holes."""

    stream: str  # "u:<user id>" or "c:<chat id>"
    offset: int  # 1, 2, 3, ... per stream, taken with the durable write; never reused
    payload: bytes
    created_at: datetime
    #: A fan-out copy in a user stream: the chat-log entry it copies, ``(chat id, chat offset)``.
    source: tuple[str, int] | None = None
    #: A marker copy (``Store.append_chat_event`` with ``markers``): a fan-out copy of a
    #: streamed chat's entry, telling the user there is news in ``c:<chat id>``.
    marker: bool = False


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One event of ``Store.append_chat_events``: the arguments of one ``append_chat_event``
    call (``recipients`` a small chat's, None for a large chat's chat-log entry alone, with
    ``markers`` the users who get a marker copy; ``message_seq`` the message's seq for its
    ``new_message``)."""

    payload: bytes
    recipients: Sequence[str] | None
    markers: Sequence[str] = ()
    message_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ChatEventWrite:
    """Where ``Store.append_chat_event`` put a chat's event: its offset in the chat log
    ``c:<chat id>`` and, for a fanned-out (small) chat, its offset in each recipient's
    ``u:<user id>`` stream (for a large chat: each marker user's, empty without markers).
    ``existed``: the event of that ``message_seq`` was in the chat log already, so no entry was
    written; ``chat_offset`` is that entry's, and ``user_offsets`` is empty — unless its writer
    left its fan-out incomplete (a writer that failed or died half-way) and this call
    completed it: then the copies written now, which nobody has published yet."""

    chat_offset: int
    user_offsets: dict[str, int]
    existed: bool = False


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


class UploadStatus(StrEnum):
    PENDING = "pending"  # created; the object may or may not have been uploaded yet
    READY = "ready"  # completed: the object exists with the declared size and type


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a user uploads to object storage, later attached to messages by its ``id``.

    ``attached`` turns true when a message carrying it is stored; attached uploads are never
    cleaned up. ``object_key`` is where its bytes are: while pending, the key its upload URL
    writes to; once ready, the copy completion checked, which no upload URL points at. Clients
    never see it.
    """

    id: str
    owner_id: str
    object_key: str
    filename: str
    content_type: str
    size: int
    status: UploadStatus
    created_at: datetime
    attached: bool = False

    @property
    def attachment(self) -> Attachment:
        return Attachment(self.id, self.filename, self.content_type, self.size)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "status": str(self.status),
            "created_at": isoformat(self.created_at),
        }


# -- email (API_CONTRACT.md §10) -----------------------------------------------------------------
class EmailTokenPurpose(StrEnum):
    VERIFY = "verify"  # proves the address of a new account
    RESET = "reset"  # lets the address's owner set a new password


class MailStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or claimed by a mailer right now)
    SENT = "sent"  # the SMTP server (or log mode) took it
    FAILED = "failed"  # given up: a permanent answer, or MAIL_MAX_ATTEMPTS attempts


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """One email in the outbox: the whole RFC 5322 message, and its delivery state.

    ``lease_id`` is set by each claim; only the holder of the current lease may record the
    outcome of an attempt. ``attempts`` counts claims (an attempt may have been cut short).
    """

    id: str
    kind: str  # "verify", "reset", "digest"
    recipient: str
    message: bytes
    status: MailStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    lease_id: str | None = None
    last_error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DigestCheck:
    """An offline user whose missed-message digest is due to be looked at (``check_at``)."""

    user_id: str
    offline_since: datetime
    last_digest_at: datetime | None
    check_at: datetime
