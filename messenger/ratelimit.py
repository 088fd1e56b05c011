"""Rate limits without I/O: a token bucket (``TokenBucket``) and token buckets by key
(``KeyedLimiter``), e.g. per client address or per account.

Limits are kept in the memory of one process: behind a balancer with N processes a client can
get up to N times a limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (one per WebSocket connection)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def consume(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if there are enough; False (and take none) otherwise."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False


class KeyedLimiter:
    """At most ``count`` events per ``window`` seconds for each key: one token bucket per key
    (a burst of ``count``, then one more every ``window / count`` seconds). No I/O.

    Memory is bounded two ways. A bucket that has refilled is the same as no bucket, so an
    entry is dropped once ``window`` seconds have passed since it last changed (entries are kept
    in the order they last changed, so expired ones are popped from the front, O(1) amortised).
    And the table holds at most ``max_keys`` entries: past that, the entry that changed longest
    ago (the fullest bucket) is dropped, so a flood of distinct keys (addresses, emails) costs
    a fixed amount of memory; the price is that such a flood, if larger than the table, forgets
    the oldest keys early (counted in ``evicted``).
    """

    def __init__(
        self,
        count: int,
        window: float,
        *,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1 or window <= 0 or max_keys < 1:
            raise ValueError("count, window and max_keys must be positive")
        self.count = count
        self.window = window
        self.rate = count / window
        self.max_keys = max_keys
        self.evicted = 0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        self._expire(now)
        entry = self._buckets.get(key)
        if entry is None:
            return float(self.count)
        tokens, stamp = entry
        return min(float(self.count), tokens + (now - stamp) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if tokens >= self.count:
            self._buckets.pop(key, None)
            return
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
            self.evicted += 1

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, (_tokens, stamp) = next(iter(buckets.items()))
            if now - stamp < self.window:
                return
            del buckets[key]

    def _wait(self, tokens: float) -> float:
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def check(self, key: str) -> float:
        """Seconds until ``key`` may have an event (0: now); takes nothing."""
        return self._wait(self._tokens(key, self._clock()))

    def take(self, key: str) -> float:
        """Count an event for ``key`` if one is allowed now and return 0; otherwise count
        nothing and return the seconds until one is."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            return self._wait(tokens)
        self._store(key, tokens - 1, now)
        return 0.0

    def hit(self, key: str) -> None:
        """Count an event that already happened (e.g. a failed login), allowed or not: the
        bucket goes down by one, to no less than empty."""
        now = self._clock()
        self._store(key, max(0.0, self._tokens(key, now) - 1), now)
