"""Whether this process is shutting down, as its handlers see it, and the long polls to answer.

``Drain.begin()`` (called once by the shutdown in ``messenger/app.py``, on SIGTERM or SIGINT)
makes ``draining`` true for good and sets the wake-up event of every long poll held with
``hold_poll``, so each answers at once with what it has; a poll held after that is woken as it
is held. Readiness reads ``draining`` (503, ``"node": "draining"``) and the WebSocket handshake
refuses while it is true. Plain state: no I/O and no timers of its own.
"""

from __future__ import annotations

import asyncio


class Drain:
    def __init__(self) -> None:
        self._draining = False
        self._polls: set[asyncio.Event] = set()

    @property
    def draining(self) -> bool:
        """True from ``begin()`` on."""
        return self._draining

    def begin(self) -> None:
        """Start draining: wake every long poll held now (and, from now on, as it is held)."""
        self._draining = True
        for wake in self._polls:
            wake.set()

    def hold_poll(self, wake: asyncio.Event) -> None:
        """A long poll waits on ``wake``; it is set on ``begin()`` (at once when draining)."""
        self._polls.add(wake)
        if self._draining:
            wake.set()

    def release_poll(self, wake: asyncio.Event) -> None:
        """The poll has answered (or its client went away)."""
        self._polls.discard(wake)
