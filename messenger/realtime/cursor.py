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


class Verdict(enum.Enum):
    DELIVER = "deliver"
    SKIP = "skip"
    GAP = "gap"
    RESYNC = "resync"


class StreamCursor[T]:
    """The position on one stream after ``offset`` (the last offset delivered) in ``epoch``.

    Slots, and no container while nothing is held or ready (``None``): a process keeps one per
    stream per session, and the common case (``step``) reads this one object only."""

    __slots__ = ("_held", "_ready", "broken", "epoch", "hold", "max_held", "offset")

    def __init__(self, epoch: Hashable, offset: int = 0, hold: float = 0.5,
                 max_held: int = 10_000) -> None:
        self.epoch = epoch
        self.offset = offset
        self.hold = hold
        self.max_held = max_held
        self.broken = False
        self._held: dict[int, tuple[T, float]] | None = None  # offset: (item, arrived)
        self._ready: list[tuple[int, T]] | None = None

    def __repr__(self) -> str:
        return (f"StreamCursor(epoch={self.epoch!r}, offset={self.offset}, held={self.held}, "
                f"broken={self.broken})")

    def accept(self, epoch: Hashable, offset: int, item: T, now: float) -> Verdict:
        """Take one event of this stream, live or from the store."""
        if self.broken:
            return Verdict.RESYNC
        if epoch != self.epoch:
            self.broken = True
            return Verdict.RESYNC
        held = self._held
        if offset <= self.offset or (held is not None and offset in held):
            return Verdict.SKIP
        if offset > self.offset + 1:
            if held is None:
                held = self._held = {}
            if len(held) >= self.max_held:
                self.broken = True
                return Verdict.RESYNC
            held[offset] = (item, now)
            return Verdict.GAP
        self._advance(offset, item)
        if held is not None:
            while self.offset + 1 in held:
                self._advance(self.offset + 1, held.pop(self.offset + 1)[0])
            if not held:
                self._held = None
        return Verdict.DELIVER

    def step(self, epoch: Hashable, offset: int) -> bool:
        """The common case in one call: if ``offset`` is the next one and nothing is held or
        waiting, advance to it and return True (deliver it now); else change nothing and
        return False (pass the event to ``accept``)."""
        if offset == self.offset + 1 and epoch == self.epoch and self._held is None \
                and self._ready is None and not self.broken:
            self.offset = offset
            return True
        return False

    def _advance(self, offset: int, item: T) -> None:
        self.offset = offset
        if self._ready is None:
            self._ready = []
        self._ready.append((offset, item))

    def take_ready(self) -> list[tuple[int, T]]:
        """Events to deliver now, in offset order (each exactly once)."""
        ready, self._ready = self._ready, None
        return ready if ready is not None else []

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
        return len(self._held) if self._held is not None else 0
