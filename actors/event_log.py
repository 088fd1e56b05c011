"""EventLogActor: the one writer of this process's events, so ids are published in order.

Every event (a message, a read, typing, presence, a chat change) is stored once in the event
log with its recipients, then published on the bus. Batches of ``Append`` requests from any
number of chat and user actors are stored together (one ``Store.append_events`` call), and the
next batch is stored only after the previous one was published, so within this process a
later id is never published before an earlier one. ``head`` is the last id published here: a
user actor that registers now receives, through the bus, every event with a larger id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from actors.runtime import Actor
from messenger.bus import Bus
from messenger.clock import utcnow
from messenger.events import Event, EventDraft
from messenger.store import Store


@dataclass(frozen=True, slots=True)
class Append:
    drafts: list[EventDraft]


@dataclass(frozen=True, slots=True)
class Purge:
    """Drop events older than the retention period."""


class EventLogActor(Actor):
    inbox_size = 100_000
    batch_types = (Append,)
    batch_max = 500

    def __init__(self, store: Store, bus: Bus, head: int, retention_seconds: float) -> None:
        super().__init__("event-log")
        self._store = store
        self._bus = bus
        self._retention = timedelta(seconds=retention_seconds)
        self.head = head

    async def receive_batch(self, messages: list[Any]) -> list[Any]:
        drafts = [draft for append in messages for draft in append.drafts]
        if not drafts:
            return [[] for _ in messages]
        ids = await self._store.append_events([(d.recipients, d.payload) for d in drafts])
        events = [Event.from_draft(event_id, draft) for event_id, draft in zip(ids, drafts,
                                                                                 strict=True)]
        self.head = max(self.head, ids[-1])
        self._bus.publish(events)
        results: list[Any] = []
        start = 0
        for append in messages:
            results.append(events[start:start + len(append.drafts)])
            start += len(append.drafts)
        return results

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Purge):
            return await self._store.purge_events(utcnow() - self._retention)
        raise TypeError(f"unexpected message {type(message).__name__}")
