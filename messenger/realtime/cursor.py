"""A node's delivery position on one stream: offsets in order, duplicates dropped, gaps filled.

Sans-I/O: no clock of its own, no store, no sockets. Every stored event of a stream carries an
``offset`` (1, 2, 3, … with no holes, assigned with its durable write) and the stream's
``epoch`` (which changes only when the stream is reset, e.g. a store restored from a backup).
Events reach a node live (through the broker, at most once and possibly out of order) and from
the store (gap fill, exactly what is stored). ``StreamCursor.accept`` says what to do with each:

* ``DELIVER``: it is the next offset; it and any held events that now follow it without a gap
  are ready (``take_ready``), in offset order.
* ``SKIP``: at or below the position: a duplicate (live and filled copies of one event meet).
* ``GAP``: beyond the next offset: it is held (up to ``max_held``) and the missing range is
  reported by ``missing()``; the node waits ``hold`` seconds for the missing events to arrive
  live (``fill_due(now)``), then reads that range from the store and passes it to ``accept``.
  Because offsets have no holes, the store either has every missing event or the stream was
  trimmed below them — never "perhaps later": the hold is only a latency trade, not a guess.
* ``RESYNC``: another epoch, or more held than ``max_held``: the position means nothing any
  more; the client must reload (``resync_required``).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    DELIVER = "deliver"
    SKIP = "skip"
    GAP = "gap"
    RESYNC = "resync"


@dataclass
class StreamCursor[T]:
    """The position on one stream after ``offset`` (the last offset delivered) in ``epoch``."""

    epoch: Hashable
    offset: int = 0
    hold: float = 0.5
    max_held: int = 10_000
    _held: dict[int, tuple[T, float]] = field(default_factory=dict)  # offset: (item, arrived)
    _ready: list[tuple[int, T]] = field(default_factory=list)
    broken: bool = False

    def accept(self, epoch: Hashable, offset: int, item: T, now: float) -> Verdict:
        """Take one event of this stream, live or from the store."""
        if self.broken:
            return Verdict.RESYNC
        if epoch != self.epoch:
            self.broken = True
            return Verdict.RESYNC
        if offset <= self.offset or offset in self._held:
            return Verdict.SKIP
        if offset > self.offset + 1:
            if len(self._held) >= self.max_held:
                self.broken = True
                return Verdict.RESYNC
            self._held[offset] = (item, now)
            return Verdict.GAP
        self._advance(offset, item)
        while self.offset + 1 in self._held:
            self._advance(self.offset + 1, self._held.pop(self.offset + 1)[0])
        return Verdict.DELIVER

    def step(self, epoch: Hashable, offset: int) -> bool:
        """The common case in one call: if ``offset`` is the next one and nothing is held or
        waiting, advance to it and return True (deliver it now); else change nothing and
        return False (pass the event to ``accept``)."""
        if offset == self.offset + 1 and epoch == self.epoch and not self._held \
                and not self._ready and not self.broken:
            self.offset = offset
            return True
        return False

    def _advance(self, offset: int, item: T) -> None:
        self.offset = offset
        self._ready.append((offset, item))

    def take_ready(self) -> list[tuple[int, T]]:
        """Events to deliver now, in offset order (each exactly once)."""
        ready, self._ready = self._ready, []
        return ready

    def missing(self) -> tuple[int, int] | None:
        """The offsets ``(first, last)`` missing before the first held event, if any."""
        if not self._held:
            return None
        return self.offset + 1, min(self._held) - 1

    def fill_due(self, now: float) -> tuple[int, int] | None:
        """The range to read from the store once the first event beyond the gap has been
        held ``hold`` seconds."""
        if not self._held:
            return None
        _item, arrived = self._held[min(self._held)]
        return self.missing() if now - arrived >= self.hold else None

    @property
    def held(self) -> int:
        return len(self._held)
