"""How many connections this process holds, in all and per client address. No I/O.

A connection is admitted with the address it comes from, or with no address when its peer is a
trusted proxy (the client behind it is known only once a request's ``X-Forwarded-For`` has been
read; :meth:`ConnectionLimiter.rekey` then moves it under that address). Each admitted
connection is released exactly once, when it closes.

Refusals are tallied rather than logged one by one, so that a flood of them costs one summary
line per interval (``take_summary``) and never a log storm.
"""

from __future__ import annotations

import enum
from collections import Counter

from messenger.capped_counts import CappedCounts


class Refusal(enum.Enum):
    """Why a connection was refused."""

    SERVER_FULL = "server_full"  # MAX_CONNECTIONS
    ADDRESS_FULL = "address_full"  # MAX_CONNECTIONS_PER_IP


class ConnectionLimiter:
    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.total = 0
        self._per_address = CappedCounts(max_per_address)
        self._refused: Counter[Refusal] = Counter()
        self._refused_from: Counter[str] = Counter()

    def count(self, address: str) -> int:
        return self._per_address.held(address)

    def admit(self, address: str | None) -> Refusal | None:
        """Count a new connection, or say why it must be refused (then nothing is counted)."""
        if self.total >= self.max_total:
            return self._refuse(Refusal.SERVER_FULL, address)
        if address is not None and not self._per_address.acquire(address):
            return self._refuse(Refusal.ADDRESS_FULL, address)
        self.total += 1
        return None

    def rekey(self, old: str | None, new: str) -> Refusal | None:
        """Move an admitted connection from ``old`` to ``new``; refused if ``new`` is full.

        On a refusal the connection stays counted under ``old`` (it is released from there
        when it closes).
        """
        if old == new:
            return None
        if not self._per_address.acquire(new):
            return self._refuse(Refusal.ADDRESS_FULL, new)
        if old is not None:
            self._per_address.release(old)
        return None

    def release(self, address: str | None) -> None:
        """A connection admitted under ``address`` (its current key) has closed."""
        self.total -= 1
        if address is not None:
            self._per_address.release(address)

    def _refuse(self, why: Refusal, address: str | None) -> Refusal:
        self._refused[why] += 1
        if address is not None:
            self._refused_from[address] += 1
        return why

    def take_summary(self) -> str | None:
        """One line about the refusals since the last call (None if there were none)."""
        if not self._refused:
            return None
        parts = [f"{n} over {limit}" for limit, n in (
            ("MAX_CONNECTIONS", self._refused[Refusal.SERVER_FULL]),
            ("MAX_CONNECTIONS_PER_IP", self._refused[Refusal.ADDRESS_FULL]),
        ) if n]
        top = ", ".join(f"{address} ({n})" for address, n in self._refused_from.most_common(3))
        total = sum(self._refused.values())
        self._refused.clear()
        self._refused_from.clear()
        line = f"refused {total} connections ({'; '.join(parts)}); {self.total} open"
        return f"{line}; most refused: {top}" if top else line
