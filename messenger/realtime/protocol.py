"""The WebSocket client→server protocol as plain data: parse and validate frames, no I/O.

``parse_client_frame`` turns the text or bytes of one frame into a typed command or raises an
``ApiError`` (``malformed_json``, ``validation_error``, ``unknown_type``, ``frame_too_large``)
carrying the ``ref`` the error frame should echo: the frame's ``client_msg_id`` for a send,
otherwise its optional ``"ref"`` string. The same field rules as the REST API apply
(``messenger.validation``), so a WebSocket send and a REST send accept exactly the same input,
nesting depth (``max_depth``, the ``JSON_MAX_DEPTH`` setting) included: a frame nested deeper is
a ``validation_error`` (``field: "frame"``), and the socket stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from messenger import validation
from messenger.errors import ApiError, FrameTooLarge, MalformedJson, UnknownFrameType

REF_MAX = 128


@dataclass(frozen=True, slots=True)
class SendMessage:
    chat_id: str
    text: str
    client_msg_id: str
    attachment_ids: tuple[str, ...] = ()
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    chat_id: str
    is_typing: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MarkRead:
    chat_id: str
    seq: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | None = None


ClientFrame = SendMessage | Typing | MarkRead | Ping


class FrameError(Exception):
    """A frame that cannot be handled: ``error`` is what to tell the client, with ``ref``."""

    def __init__(self, error: ApiError, ref: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


def parse_client_frame(
    data: str | bytes, *, max_bytes: int, max_text: int, max_attachments: int = 10,
    max_depth: int = validation.JSON_MAX_DEPTH,
) -> ClientFrame:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise FrameError(FrameTooLarge(f"frame is larger than {max_bytes} bytes"), None)
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        if validation.nesting_exceeds(data, max_depth):
            raise FrameError(validation.too_deep("frame", max_depth), None) from None
        raise FrameError(MalformedJson("frame is not valid JSON"), None) from None
    ref = _ref(body) if isinstance(body, dict) else None
    try:
        validation.check_structure(body, max_depth=max_depth, field="frame")
        if not isinstance(body, dict):
            raise validation.ValidationFailed("frame", "frame must be a JSON object")
        return _command(body, ref, max_text, max_attachments)
    except ApiError as error:
        raise FrameError(error, ref) from None


def _ref(body: dict[str, Any]) -> str | None:
    for field in ("client_msg_id", "ref"):
        value = body.get(field)
        if isinstance(value, str) and 0 < len(value) <= REF_MAX:
            return value
    return None


def _command(
    body: dict[str, Any], ref: str | None, max_text: int, max_attachments: int
) -> ClientFrame:
    kind = body.get("type")
    if not isinstance(kind, str):
        raise validation.ValidationFailed("type", "type is required and must be a string")
    if kind == "ping":
        return Ping(ref)
    if kind not in ("send_message", "typing_start", "typing_stop", "mark_read"):
        raise UnknownFrameType(f"unknown frame type {kind[:64]!r}")
    chat_id = validation.object_id(body.get("chat_id"), "chat_id")
    if kind == "send_message":
        attachment_ids = tuple(validation.attachment_ids(body, max_attachments))
        text = validation.message_text(body, max_text, optional=bool(attachment_ids))
        client_msg_id = validation.client_msg_id(body)
        if client_msg_id is None:
            raise validation.ValidationFailed("client_msg_id", "client_msg_id is required")
        return SendMessage(chat_id, text, client_msg_id, attachment_ids, ref)
    if kind == "mark_read":
        return MarkRead(chat_id, validation.integer(body, "seq", minimum=0), ref)
    return Typing(chat_id, kind == "typing_start", ref)
