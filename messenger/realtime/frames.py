"""Server→client frames: event payloads, encoded once for every recipient, and control frames.

An event payload is a JSON object with a ``"type"``, stored once per stream entry and published
as it is. A session's frame is that payload with ``"event_id"`` (the session's cursor after the
event, ``messenger/realtime/feed.py``) put first, spliced in without decoding the payload.
Builders below are the only place event payloads are shaped; API_CONTRACT.md §8 lists them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from messenger.clock import isoformat
from messenger.models import Chat, Message


def ws_header(size: int) -> bytes:
    """The header of one unmasked, uncompressed, final WebSocket text frame of ``size`` bytes
    (RFC 6455 §5.2), server side."""
    if size < 126:
        return struct.pack("!BB", 0x81, size)
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


def ws_text_frame(payload: bytes) -> bytes:
    """``payload`` as one WebSocket text frame (``ws_header``)."""
    return ws_header(len(payload)) + payload


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def control(kind: str, cursor: str, **fields: Any) -> bytes:
    """A frame outside the stream (``ready``, ``error``, ``resync_required``, ``pong``,
    ``message_sent`` for a replayed send): its ``event_id`` is the session's cursor as it is."""
    return orjson.dumps({"event_id": cursor, "type": kind, **fields})


# -- stored events ----------------------------------------------------------------------------
def new_message(message: Message) -> bytes:
    return encode({"type": "new_message", "message": message.to_json()})


def message_sent(message: Message) -> bytes:
    """What the sending session gets in place of ``new_message`` (same position)."""
    return message_sent_of(message.client_msg_id, message.to_json())


def message_sent_of(client_msg_id: str | None, message: dict[str, Any]) -> bytes:
    """``message_sent`` of a message's API JSON (a ``new_message`` payload's ``message``)."""
    return encode({"type": "message_sent", "client_msg_id": client_msg_id, "message": message})


def read(chat_id: str, user_id: str, seq: int, unread_count: int) -> bytes:
    return encode({"type": "read", "chat_id": chat_id, "user_id": user_id, "seq": seq,
                   "unread_count": unread_count})


def chat_created(chat: Chat) -> bytes:
    return encode({"type": "chat_created", "chat": chat.to_json()})


def members_added(chat: Chat, user_ids: Sequence[str], by: str) -> bytes:
    return encode({"type": "members_added", "chat": chat.to_json(), "user_ids": list(user_ids),
                   "by": by})


def member_removed(chat: Chat, user_id: str, by: str) -> bytes:
    return encode({"type": "member_removed", "chat": chat.to_json(), "user_id": user_id,
                   "by": by})


# -- ephemeral events (not stored, no position) ------------------------------------------------
def typing(chat_id: str, user_id: str, is_typing: bool) -> bytes:
    return encode({"type": "typing", "chat_id": chat_id, "user_id": user_id,
                   "is_typing": is_typing})


def presence(user_id: str, online: bool, last_seen: datetime) -> bytes:
    return encode({"type": "presence", "user_id": user_id,
                   "status": "online" if online else "offline",
                   "last_seen": isoformat(last_seen)})
