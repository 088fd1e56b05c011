"""UserActor: one per user with a session on this process — sessions, recent events, presence.

State it owns:

* **sessions**: the user's WebSocket connections and in-flight long polls on this process.
  A session is *live* once it has caught up with the stream; only live sessions are written to.
* **ring**: the user's most recent events (``EVENT_RING_SIZE``), with ``ring_floor``: every
  event for this user with an id above the floor is in the ring. Resumes and polls are served
  from it; older cursors are served from the event log in storage.
* **waiters**: long polls waiting for the next event.
* **presence**: online while a session is open; offline ``PRESENCE_GRACE_SECONDS`` after the
  last one closed (so a page reload or the gap between two polls does not flap).

Delivery is the hot path and is a plain synchronous method (``deliver``), called by the router
for every batch the bus publishes: it appends to the ring, writes the already-encoded frames to
live sessions and wakes waiters, and never awaits, so it is atomic with respect to the actor's
own coroutine. Everything else — sessions opening and closing, presence changes, which await
the store and the event log — goes through the inbox, one message at a time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from actors.ports import UserPorts
from actors.runtime import Actor
from messenger.clock import utcnow
from messenger.events import Event

log = logging.getLogger("messenger.actors.user")


class Session(Protocol):
    """One connection of a user: a WebSocket, or a long poll while it waits."""

    id: str
    cursor: int  # id of the last stream event this session was given
    live: bool
    closed: bool  # the connection is gone

    def write_events(self, events: list[Event]) -> None:
        """Write the events with ids above ``cursor``, in order; advance ``cursor``."""

    def disconnect(self, reason: str) -> None:
        """Drop the connection (the client can resume from its cursor)."""


@dataclass(frozen=True, slots=True)
class Attach:
    session: Session


@dataclass(frozen=True, slots=True)
class Detach:
    session: Session


@dataclass(frozen=True, slots=True)
class GraceEnded:
    generation: int


class UserActor(Actor):
    inbox_size = 10_000

    def __init__(self, user_id: str, ports: UserPorts, ring_floor: int) -> None:
        super().__init__(f"user:{user_id}")
        self.user_id = user_id
        self.idle_timeout = ports.idle_timeout
        self._presence = ports.presence
        self._grace = ports.presence_grace
        self._ring_size = ports.ring_size
        self.ring: collections.deque[Event] = collections.deque()
        self.ring_floor = ring_floor
        self.sessions: dict[str, Session] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self.online = False
        self._grace_generation = 0
        self._grace_timer: asyncio.TimerHandle | None = None

    # -- hot path (synchronous) ----------------------------------------------------------
    def deliver(self, events: list[Event]) -> None:
        fresh = [e for e in events if e.id > self.ring_floor and
                 (not self.ring or e.id > self.ring[-1].id)]
        if not fresh:
            return
        self.ring.extend(fresh)
        while len(self.ring) > self._ring_size:
            self.ring_floor = self.ring.popleft().id
        for session in list(self.sessions.values()):
            if session.live:
                session.write_events(fresh)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def events_after(self, after: int, limit: int) -> list[Event] | None:
        """Ring events with ids above ``after``; None if the ring does not reach back that far."""
        if after < self.ring_floor:
            return None
        out: list[Event] = []
        for event in reversed(self.ring):
            if event.id <= after:
                break
            out.append(event)
        out.reverse()
        return out[:limit]

    def go_live(self, session: Session) -> bool:
        """Make a caught-up session live; False if the ring no longer covers its cursor."""
        pending = self.events_after(session.cursor, self._ring_size)
        if pending is None:
            return False
        if pending:
            session.write_events(pending)
        session.live = True
        return True

    def wait_for_events(self, after: int) -> asyncio.Future[None]:
        """A future resolved when an event above ``after`` arrives (at once if one has)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ring and self.ring[-1].id > after:
            future.set_result(None)
        else:
            self._waiters.append(future)
        return future

    def overflow(self) -> None:
        """The inbox could not take more: cut sessions so clients resume from storage."""
        for session in list(self.sessions.values()):
            session.disconnect("server overloaded")

    # -- inbox -----------------------------------------------------------------------------
    async def receive(self, message: Any) -> Any:
        if isinstance(message, Attach):
            self.sessions[message.session.id] = message.session
            self._cancel_grace()
            if not self.online:
                self.online = True
                await self._presence.presence_changed(self.user_id, True, utcnow())
            return None
        if isinstance(message, Detach):
            if self.sessions.pop(message.session.id, None) is not None and not self.sessions:
                self._start_grace()
            return None
        if isinstance(message, GraceEnded):
            if message.generation == self._grace_generation and not self.sessions \
                    and self.online:
                self.online = False
                await self._presence.presence_changed(self.user_id, False, utcnow())
            return None
        raise TypeError(f"unexpected message {type(message).__name__}")

    def _start_grace(self) -> None:
        self._cancel_grace()
        generation = self._grace_generation
        self._grace_timer = asyncio.get_running_loop().call_later(
            self._grace, self._tell_quietly, GraceEnded(generation)
        )

    def _cancel_grace(self) -> None:
        self._grace_generation += 1
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def _tell_quietly(self, message: Any) -> None:
        try:
            self.tell(message)
        except Exception:
            log.warning("%s could not take %s", self.name, type(message).__name__)

    def is_idle(self) -> bool:
        return not self.sessions and not self._waiters and not self.online

    async def on_stop(self) -> None:
        self._cancel_grace()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []
