"""The boundary between this process's actors and the other processes: one small interface.

The event log publishes every batch of events to the bus after storing it; the bus hands it to
every subscriber (the hub's router, which delivers to the user actors of this process). Today
the only bus is ``LocalBus`` (one process). A multi-process deployment swaps in a bus that also
publishes to Redis pub/sub and hands other processes' events to the same subscribers; nothing
else changes, because everything a client needs to resume is in the event log (storage), not
in the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from messenger.events import Event

log = logging.getLogger("messenger.bus")

Subscriber = Callable[[list[Event]], None]


class Bus(Protocol):
    def publish(self, events: list[Event]) -> None:
        """Hand stored events, in id order, to every subscriber."""

    def subscribe(self, subscriber: Subscriber) -> None: ...


class LocalBus:
    """In-process bus: ``publish`` calls each subscriber synchronously, in order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, events: list[Event]) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(events)
            except Exception:
                log.exception("bus subscriber failed on %d events", len(events))
