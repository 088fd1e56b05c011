"""Server→client events: what they contain, and their bytes, encoded once for every recipient.

An event is a JSON object with a ``"type"``, stored once in the event log (``Store.append_events``)
with the list of users it goes to. The log gives it an ``id``, increasing in the order events
are published; the client sees it as ``"event_id"``. Because the id is the same for every
recipient, the frame bytes are too: ``Event.frame`` (the JSON) and ``Event.ws_frame`` (the same
as a WebSocket text frame) are built once and written to every session as they are.

Builders below are the only place event payloads are shaped; API_CONTRACT.md §8 lists them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from messenger.clock import isoformat
from messenger.models import Chat, Message, StoredEvent


@dataclass(slots=True)
class EventDraft:
    """An event before the log has given it an id."""

    recipients: tuple[str, ...]
    payload: bytes
    #: The WebSocket session whose request caused the event; it sees ``ack`` instead.
    origin: str | None = None
    #: For ``new_message``: the payload the originating session gets (``message_sent``).
    ack: bytes | None = None


@dataclass(slots=True)
class Event:
    id: int
    recipients: tuple[str, ...]
    payload: bytes
    origin: str | None = None
    ack: bytes | None = None
    _frame: bytes | None = field(default=None, repr=False)
    _ws_frame: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_draft(cls, event_id: int, draft: EventDraft) -> Event:
        return cls(event_id, draft.recipients, draft.payload, draft.origin, draft.ack)

    @classmethod
    def from_stored(cls, stored: StoredEvent) -> Event:
        return cls(stored.id, stored.recipients, stored.payload)

    @property
    def frame(self) -> bytes:
        """The JSON object with ``event_id`` first, as sent to every recipient."""
        if self._frame is None:
            self._frame = with_event_id(self.id, self.payload)
        return self._frame

    @property
    def ws_frame(self) -> bytes:
        if self._ws_frame is None:
            self._ws_frame = ws_text_frame(self.frame)
        return self._ws_frame

    def frame_for(self, session_id: str | None) -> bytes:
        """The frame one session gets: the ack for the session that sent the message."""
        if self.ack is not None and session_id is not None and session_id == self.origin:
            return with_event_id(self.id, self.ack)
        return self.frame

    def ws_frame_for(self, session_id: str | None) -> bytes:
        if self.ack is not None and session_id is not None and session_id == self.origin:
            return ws_text_frame(self.frame_for(session_id))
        return self.ws_frame


def with_event_id(event_id: int, payload: bytes) -> bytes:
    """``{"type":…}`` → ``{"event_id":N,"type":…}`` without decoding the payload."""
    return b'{"event_id":%d,%s' % (event_id, payload[1:])


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2), server side."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def control(kind: str, cursor: int, **fields: Any) -> bytes:
    """A frame outside the stream (``ready``, ``error``, ``resync_required``, ``message_sent``
    for a replayed send): its ``event_id`` is the session's cursor and does not advance."""
    return orjson.dumps({"event_id": cursor, "type": kind, **fields})


# -- builders ------------------------------------------------------------------------------
def new_message(message: Message, recipients: Sequence[str], origin: str | None) -> EventDraft:
    body = message.to_json()
    ack = None
    if origin is not None:
        ack = encode({"type": "message_sent", "client_msg_id": message.client_msg_id,
                      "message": body})
    return EventDraft(tuple(recipients), encode({"type": "new_message", "message": body}),
                      origin, ack)


def typing(chat_id: str, user_id: str, is_typing: bool, recipients: Iterable[str]) -> EventDraft:
    return EventDraft(
        tuple(r for r in recipients if r != user_id),
        encode({"type": "typing", "chat_id": chat_id, "user_id": user_id,
                "is_typing": is_typing}),
    )


def read(chat_id: str, user_id: str, seq: int, unread_count: int,
         recipients: Sequence[str]) -> EventDraft:
    return EventDraft(
        tuple(recipients),
        encode({"type": "read", "chat_id": chat_id, "user_id": user_id, "seq": seq,
                "unread_count": unread_count}),
    )


def presence(user_id: str, online: bool, last_seen: datetime,
             recipients: Iterable[str]) -> EventDraft:
    return EventDraft(
        tuple(recipients),
        encode({"type": "presence", "user_id": user_id,
                "status": "online" if online else "offline",
                "last_seen": isoformat(last_seen)}),
    )


def chat_created(chat: Chat) -> EventDraft:
    return EventDraft(chat.member_ids, encode({"type": "chat_created", "chat": chat.to_json()}))


def members_added(chat: Chat, user_ids: Sequence[str], by: str) -> EventDraft:
    return EventDraft(
        chat.member_ids,
        encode({"type": "members_added", "chat": chat.to_json(), "user_ids": list(user_ids),
                "by": by}),
    )


def member_removed(chat: Chat, user_id: str, by: str) -> EventDraft:
    return EventDraft(
        (*chat.member_ids, user_id),
        encode({"type": "member_removed", "chat": chat.to_json(), "user_id": user_id,
                "by": by}),
    )
