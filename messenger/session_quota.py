"""How many WebSocket sessions each user holds in this process (``WS_MAX_SESSIONS_PER_USER``).

No I/O. A slot is taken at the handshake, before the upgrade, so a refusal is a JSON answer, and
given back exactly once when the session ends (or the handshake fails after taking it).
"""

from __future__ import annotations


class SessionQuota:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._held: dict[str, int] = {}

    def held(self, user_id: str) -> int:
        return self._held.get(user_id, 0)

    def acquire(self, user_id: str) -> bool:
        held = self._held.get(user_id, 0)
        if held >= self.per_user:
            return False
        self._held[user_id] = held + 1
        return True

    def release(self, user_id: str) -> None:
        held = self._held.get(user_id, 0) - 1
        if held > 0:
            self._held[user_id] = held
        else:
            self._held.pop(user_id, None)
