"""Counts of held things per key, each capped (a key's slots). No I/O.

Used for the connections of each client address and the WebSocket sessions of each user: a
slot is taken with ``acquire`` (refused at the cap) and given back exactly once with
``release``; a key with nothing held takes no memory.
"""

from __future__ import annotations


class CappedCounts:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def acquire(self, key: str) -> bool:
        """Take a slot of ``key``; False (and nothing taken) when it holds ``limit``."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)
