"""``FanoutClock``: how long after a store write of chat events this node had written them.

The measure (``messenger_fanout_seconds``, API_CONTRACT.md §4): from the moment a store write
of chat events returned on this node (``stored``, called by ``MeasuredStore``; the publisher
publishes them right after, in the same step) to the moment this node has handed every
publication queued for it by then to its local feeds **and** the feeds have written their
frames. That bounds from above the last local socket write of those events: the node's
broker hands publications over in the order they were queued, and a feed writes a frame
either at once or at the end of the same turn of the event loop (``Node.write_soon``).

How, without a line on the delivery path: the clock looks at two numbers of the node's broker,
``taken`` (items it has handed over so far, ever) and ``pending`` (queued, not yet handed).
At its first check after a write, the write's *target* is ``taken + pending``: every item
queued so far, its own publications included. Once ``taken`` has reached the target, the node
has handed over all of them; the clock waits one more turn, in which the frames kept for the
end of the turn are written, and observes then. A write after which this node wrote no frame
at all (no local session follows its streams) is not observed.

One check per turn of the event loop while writes wait, whatever their number; a check that
sees no progress for ``SPIN_TURNS`` turns (the broker's task awaits something) looks again
every ``POLL_SECONDS`` instead of every turn; a write still waiting after ``GIVE_UP_SECONDS``
(the broker stopped) is dropped unobserved. Nothing here blocks or takes a lock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from messenger.metrics.histogram import Histogram

SPIN_TURNS = 8
POLL_SECONDS = 0.001
GIVE_UP_SECONDS = 10.0

perf_counter = time.perf_counter


class _Write:
    __slots__ = ("frames", "ready", "stored_at", "target")

    def __init__(self, stored_at: float, frames: int) -> None:
        self.stored_at = stored_at
        self.frames = frames  # the node's frame count when it was stored
        self.target: int | None = None
        self.ready = False


class FanoutClock:
    """``taken`` / ``pending``: the broker's items handed over so far and still queued;
    ``frames``: the node's frames written so far (``Node.frames_delivered``)."""

    def __init__(self, taken: Callable[[], int], pending: Callable[[], int],
                 frames: Callable[[], int], histogram: Histogram) -> None:
        self._taken = taken
        self._pending = pending
        self._frames = frames
        self.histogram = histogram
        self._writes: deque[_Write] = deque()
        self._scheduled = False
        self._idle_checks = 0
        self._last_taken = -1

    def stored(self) -> None:
        """A store write of chat events returned just now (its publications follow)."""
        self._writes.append(_Write(perf_counter(), self._frames()))
        if not self._scheduled:
            self._scheduled = True
            self._idle_checks = 0
            asyncio.get_running_loop().call_soon(self._check)

    def _check(self) -> None:
        self._scheduled = False
        writes = self._writes
        now = perf_counter()
        frames = self._frames()
        while writes and writes[0].ready:  # handed over one turn ago: their frames are out
            write = writes.popleft()
            if frames != write.frames:
                self.histogram.observe(now - write.stored_at)
        taken = self._taken()
        queued = taken + self._pending()
        for write in writes:
            if write.target is None:
                write.target = queued
            if write.target <= taken:
                write.ready = True
        while writes and now - writes[0].stored_at > GIVE_UP_SECONDS and not writes[0].ready:
            writes.popleft()
        if not writes:
            return
        if taken != self._last_taken or writes[0].ready:
            self._last_taken = taken
            self._idle_checks = 0
        else:
            self._idle_checks += 1
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if self._idle_checks < SPIN_TURNS:
            loop.call_soon(self._check)
        else:
            loop.call_later(POLL_SECONDS, self._check)
