"""The resume cursor a client echoes back: an opaque string naming its position on each stream.

Sans-I/O. A session follows its user's stream (``u:<user id>``) and the stream of each large
chat it is in (``c:<chat id>``, docs/REALTIME_STREAMS.md); the cursor holds the store's stream
epoch and the last offset delivered on each::

    v1.<epoch>.<user-stream offset>[.<chat id>-<chat-stream offset>]...

Chat ids in increasing order. The user is not named: it is the user of the session's token, so a
cursor means nothing to anyone else. Clients must treat it as opaque (API_CONTRACT.md §8);
the server decodes it strictly: anything malformed, too long or with too many chats is a
``CursorError`` (422 at the API), never an exception of another kind. Encoding is a few string
joins, because every stored event a session receives carries the session's cursor after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "v1."
MAX_CURSOR_CHARS = 8192
#: Chat streams one cursor may name (large chats a user follows live).
MAX_CHATS = 256
MAX_OFFSET = 2**53
_EPOCH = re.compile(r"[0-9a-f]{1,64}")
_OFFSET = re.compile(r"0|[1-9][0-9]{0,15}")
_OTHER_VERSION = re.compile(r"[0-9]{1,16}|v[0-9]{1,4}\.[!-~]*")
_CHAT = re.compile(r"([0-9a-f]{24})-(0|[1-9][0-9]{0,15})")


class CursorError(ValueError):
    """A resume cursor that this server did not make (422 at the API)."""


class OutdatedCursor(CursorError):
    """A cursor of another version of this server (an integer of the old event log, or
    ``v<n>.`` other than ``v1.``): it cannot be served, so the client resyncs."""


@dataclass(frozen=True)
class ResumeCursor:
    epoch: str
    user_offset: int = 0
    chats: dict[str, int] = field(default_factory=dict)  # chat id: last chat-stream offset

    def encode(self) -> str:
        return encode_cursor(self.epoch, self.user_offset, self.chats)

    @classmethod
    def decode(cls, text: object) -> ResumeCursor:
        if not isinstance(text, str) or len(text) > MAX_CURSOR_CHARS:
            raise CursorError("the cursor is too long")
        if not text.startswith(PREFIX):
            if _OTHER_VERSION.fullmatch(text):
                raise OutdatedCursor("a cursor of another version")
            raise CursorError("not a cursor of this server")
        parts = text[len(PREFIX):].split(".")
        if len(parts) < 2 or len(parts) - 2 > MAX_CHATS:
            raise CursorError("the cursor is malformed or names too many chats")
        epoch, user_offset, *chat_parts = parts
        if not _EPOCH.fullmatch(epoch) or not _OFFSET.fullmatch(user_offset):
            raise CursorError("the cursor is malformed")
        chats: dict[str, int] = {}
        for part in chat_parts:
            match = _CHAT.fullmatch(part)
            if match is None or match[1] in chats:
                raise CursorError("the cursor is malformed")
            chats[match[1]] = _offset(match[2])
        return cls(epoch, _offset(user_offset), chats)


def encode_cursor(epoch: str, user_offset: int, chats: dict[str, int]) -> str:
    """The cursor text (the hot path: called once per stored event per session)."""
    if not chats:
        return f"{PREFIX}{epoch}.{user_offset}"
    if len(chats) == 1:
        [(chat, offset)] = chats.items()
        return f"{PREFIX}{epoch}.{user_offset}.{chat}-{offset}"
    tail = "".join(f".{chat}-{offset}" for chat, offset in sorted(chats.items()))
    return f"{PREFIX}{epoch}.{user_offset}{tail}"


def encode_cursor_around(epoch: str, user_offset: int, chats: dict[str, int],
                         chat: str) -> tuple[str, str]:
    """The cursor text before and after ``chat``'s offset, the other positions as given, so
    that ``before + str(offset) + after == encode_cursor(..., {**chats, chat: offset})`` for
    any offset (a feed keeps them while only that chat's offset moves)."""
    others = sorted((c, o) for c, o in chats.items() if c != chat)
    before = f"{PREFIX}{epoch}.{user_offset}" + "".join(
        f".{c}-{o}" for c, o in others if c < chat) + f".{chat}-"
    after = "".join(f".{c}-{o}" for c, o in others if c > chat)
    return before, after


def _offset(text: str) -> int:
    value = int(text)
    if value > MAX_OFFSET:
        raise CursorError("the cursor is malformed")
    return value
