"""The resume cursor a client echoes back: an opaque string naming its position on each stream.

Sans-I/O. ``v1.<base64url of JSON [epoch, {stream: offset}]>``, no padding. Clients must treat
it as opaque (API_CONTRACT.md §8); the server decodes it strictly: anything malformed, too long
or with too many streams is a ``CursorError`` (422 at the API), never an exception of another
kind.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import orjson

from messenger.store.streams import STREAM_KEY

PREFIX = "v1."
MAX_CURSOR_CHARS = 2048
MAX_STREAMS = 64
MAX_OFFSET = 2**53


class CursorError(ValueError):
    """A resume cursor that this server did not make (or no longer understands)."""


@dataclass(frozen=True)
class ResumeCursor:
    epoch: str
    positions: dict[str, int] = field(default_factory=dict)

    def encode(self) -> str:
        body = orjson.dumps([self.epoch, self.positions], option=orjson.OPT_SORT_KEYS)
        return PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")

    def advanced(self, stream: str, offset: int) -> ResumeCursor:
        return ResumeCursor(self.epoch, {**self.positions, stream: offset})

    @classmethod
    def decode(cls, text: str) -> ResumeCursor:
        if not isinstance(text, str) or len(text) > MAX_CURSOR_CHARS:
            raise CursorError("the cursor is too long")
        if not text.startswith(PREFIX):
            raise CursorError("not a cursor of this server")
        raw = text[len(PREFIX):]
        try:
            body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            value = orjson.loads(body)
        except (binascii.Error, ValueError):
            raise CursorError("the cursor is malformed") from None
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], dict)):
            raise CursorError("the cursor is malformed")
        epoch, positions = value
        if len(positions) > MAX_STREAMS:
            raise CursorError("the cursor names too many streams")
        for stream, offset in positions.items():
            if not STREAM_KEY.fullmatch(stream) or type(offset) is not int \
                    or not 0 <= offset <= MAX_OFFSET:
                raise CursorError("the cursor is malformed")
        return cls(epoch, dict(positions))
