"""The messages a store adapter read recently, by id, so a history page that is read again (a
polling client's newest page, the chat everyone opens) reuses what was made of them — the same
``Message`` objects (and, through ``Message.json_bytes``, their rendering), or the API JSON the
store encoded (SQLite's history pages) — instead of building and encoding every row again.

Exact because a stored message never changes (no edit or delete exists; API_CONTRACT.md §3):
a cached one is always what the row says. Bounded: at most ``capacity`` messages, the oldest
cached dropped first. Not thread-safe: used from the event loop's thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Messages kept per cache (~0.5-1 KiB each with their rendering).
RECENT_MESSAGES_CAPACITY = 4096


class RecentMessages[T]:
    """What was made of each recently read message (a ``Message``, its encoded JSON), by id."""

    def __init__(self, capacity: int = RECENT_MESSAGES_CAPACITY) -> None:
        self._capacity = capacity
        self._by_id: dict[str, T] = {}

    def get(self, message_id: str) -> T | None:
        """The cached ``message_id``, or None."""
        return self._by_id.get(message_id)

    def of(self, message_id: str, row: Any, build: Callable[[Any], T]) -> T:
        """The cached ``message_id``, else ``build(row)``, now cached."""
        message = self._by_id.get(message_id)
        if message is None:
            message = build(row)
            if len(self._by_id) >= self._capacity:
                del self._by_id[next(iter(self._by_id))]
            self._by_id[message_id] = message
        return message

    def __len__(self) -> int:
        return len(self._by_id)
