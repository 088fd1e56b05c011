"""Whether a user id names an account: for tokens whose ``sub`` is well formed and validly
signed, but of no user (a store that was reset under the same ``JWT_SECRET``, a token made
with a leaked secret).

One store read per id the first time it is asked; a positive answer is cached in a bounded
LRU and is true for good, since accounts are never deleted. Negative answers are not cached,
so an account created a moment later (on this process or another) is found.
"""

from __future__ import annotations

from collections import OrderedDict

from messenger.ids import is_valid_id
from messenger.store import Store

#: Ids remembered per process (about 100 bytes each).
DEFAULT_CAPACITY = 100_000


class KnownUsers:
    def __init__(self, store: Store, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._store = store
        self.capacity = capacity
        self._known: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    async def exists(self, user_id: str) -> bool:
        """Whether ``user_id`` is an account. Raises ``StoreUnavailable`` (a 503) when the
        store does not answer and the id is not cached."""
        if user_id in self._known:
            self._known.move_to_end(user_id)
            return True
        if not is_valid_id(user_id) or await self._store.get_user(user_id) is None:
            return False
        self.remember(user_id)
        return True

    def remember(self, user_id: str) -> None:
        """Record an id known to be an account (e.g. one just registered)."""
        self._known[user_id] = None
        self._known.move_to_end(user_id)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)
