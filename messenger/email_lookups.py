"""The per-caller limit of email lookups, ``GET /api/users?email=`` (API_CONTRACT.md §4).

Anyone can be found by their exact email, so an account could otherwise test a whole list of
addresses for accounts. Each caller gets a token bucket of ``EMAIL_LOOKUP_LIMIT`` (a burst of 30,
then one more every 20 s), in this process's memory like the auth limits (``auth_limits``): with
N processes behind a balancer a caller can get up to N times it. Checked before the store is
asked; a refusal is 429 ``rate_limited`` with ``retry_after``. No I/O.
"""

from __future__ import annotations

import math

from messenger.errors import TooManyAttempts
from messenger.ratelimit import KeyedLimiter

#: (count, seconds): a burst of count lookups, then one more every seconds / count.
EMAIL_LOOKUP_LIMIT = (30, 600.0)
#: Callers remembered at once (a full bucket is forgotten anyway).
TABLE_SIZE = 10_000


class EmailLookupLimit:
    def __init__(
        self, limit: tuple[int, float] = EMAIL_LOOKUP_LIMIT, *, max_keys: int = TABLE_SIZE
    ) -> None:
        self._limiter = KeyedLimiter(limit[0], limit[1], max_keys=max_keys)

    def admit(self, user_id: str) -> None:
        """Count one lookup of ``user_id``'s, or raise ``TooManyAttempts`` (counting none)."""
        wait = self._limiter.take(user_id)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyAttempts(
                f"too many email lookups for this account; try again in {seconds} s",
                retry_after=seconds,
            )
