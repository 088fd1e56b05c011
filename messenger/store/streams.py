"""What the adapters share for streams (``Store.append_stream`` and friends): the key format,
the check of a chat-log entry's message seq, the epoch's shape, the bound on append retries,
and the per-process head cache (MongoDB's; SQLite reads the head inside its write transaction
instead).

A stream is ``u:<user id>`` (a user's stream) or ``c:<chat id>`` (a chat's log: the stream of a
large chat, and the source of truth of a small chat's fan-out to its members' user streams);
docs/REALTIME_STREAMS.md has the design.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from messenger.models import ChatEvent
from messenger.store.errors import StoreError

#: The whole key must match (``fullmatch``): ``u:`` or ``c:`` and a 24-hex-digit id.
STREAM_KEY = re.compile(r"[uc]:[0-9a-f]{24}")
#: An append gives up (``StoreError``) after this many runs of inserts lost to other writers.
APPEND_ATTEMPTS = 32
#: The epoch is this many random bytes, in lower-case hex (16 characters).
EPOCH_BYTES = 8
#: Key of the epoch in the store's meta table (SQLite) or collection (MongoDB).
EPOCH_KEY = "stream_epoch"
#: Streams whose head a process remembers (least recently used ones are forgotten first).
HEAD_CACHE_ENTRIES = 10_000


def check_stream(stream: object) -> str:
    """``stream`` if it is a stream key; a malformed one is a caller's bug (``StoreError``)."""
    if not isinstance(stream, str) or STREAM_KEY.fullmatch(stream) is None:
        raise StoreError(f"malformed stream key: {stream!r}")
    return stream


def check_streams(streams: Iterable[object]) -> list[str]:
    """The keys, each once, in order; any malformed one raises ``StoreError``."""
    return [check_stream(stream) for stream in dict.fromkeys(streams)]


def chat_log_key(chat_id: object) -> str:
    """The chat log stream ``c:<chat_id>``; a malformed id raises ``StoreError``."""
    return check_stream(f"c:{chat_id}" if isinstance(chat_id, str) else chat_id)


def recipient_keys(recipients: Iterable[object]) -> dict[str, str]:
    """``{user id: "u:<user id>"}`` for each recipient, once, in order; a malformed id raises
    ``StoreError``."""
    keys: dict[str, str] = {}
    for user_id in recipients:
        if not isinstance(user_id, str):
            raise StoreError(f"malformed recipient id: {user_id!r}")
        keys[user_id] = check_stream(f"u:{user_id}")
    return keys


def fan_out_targets(
    recipients: Iterable[object] | None, markers: Iterable[object]
) -> tuple[dict[str, str] | None, bool]:
    """Where a chat event's copies go (``Store.append_chat_event``): ``(keys, marker)``, the
    recipients' ``recipient_keys`` and False, or, with ``recipients`` None, the markers' keys
    and True (keys None when there are no markers: the chat-log entry alone). Recipients and
    markers together, or a malformed id, raise ``StoreError``."""
    wanted = list(markers)
    if recipients is not None:
        if wanted:
            raise StoreError("a chat event has recipients or markers, not both")
        return recipient_keys(recipients), False
    return (recipient_keys(wanted), True) if wanted else (None, False)


def check_message_seq(message_seq: object) -> int | None:
    """``message_seq`` if it is None or a message seq (an int >= 1, not a bool); anything else
    is a caller's bug (``StoreError``)."""
    if message_seq is None:
        return None
    if isinstance(message_seq, bool) or not isinstance(message_seq, int) or message_seq < 1:
        raise StoreError(f"malformed message seq: {message_seq!r}")
    return message_seq


@dataclass(frozen=True, slots=True)
class CheckedChatEvent:
    """A ``ChatEvent`` of ``Store.append_chat_events``, checked (``fan_out_targets``,
    ``check_message_seq``; ``StoreError`` otherwise): its payload, the user streams its copies
    go to (None: the chat-log entry alone), whether they are markers, its message seq."""

    payload: bytes
    users: dict[str, str] | None
    marker: bool
    message_seq: int | None

    @classmethod
    def of(cls, event: ChatEvent) -> CheckedChatEvent:
        users, marker = fan_out_targets(event.recipients, event.markers)
        return cls(bytes(event.payload), users, marker, check_message_seq(event.message_seq))


def new_epoch() -> str:
    """A fresh epoch: random, so a new database never repeats an old one's."""
    return secrets.token_hex(EPOCH_BYTES)


class HeadCache:
    """The last head this process saw per stream: only a starting guess for the next append
    (the unique index on ``(stream, offset)`` is the truth). Bounded, least recently used
    first out. A head only grows, so a remembered value is never above the true head."""

    def __init__(self, max_entries: int = HEAD_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._heads: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, stream: str) -> int | None:
        head = self._heads.pop(stream, None)
        if head is not None:
            self._heads[stream] = head  # most recently used last
        return head

    def put(self, stream: str, head: int) -> None:
        head = max(head, self._heads.pop(stream, 0))
        self._heads[stream] = head
        while len(self._heads) > self.max_entries:
            del self._heads[next(iter(self._heads))]
