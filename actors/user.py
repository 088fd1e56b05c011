"""UserActor: one per user with a session on this process — their presence.

State it owns:

* **sessions**: the user's WebSocket connections and in-flight long polls on this process;
* **presence**: online while a session is open; offline ``PRESENCE_GRACE_SECONDS`` after the
  last one closed (so a page reload or the gap between two polls does not flap).

Delivery is not here: each session has its own feed (``messenger/realtime/feed.py``), fed by
the node. Sessions opening and closing and presence changes, which await the store and the
publisher, go through the inbox, one message at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from actors.ports import UserPorts
from actors.runtime import Actor
from messenger.clock import utcnow

log = logging.getLogger("messenger.actors.user")


class Session(Protocol):
    """One connection of a user: a WebSocket, or a long poll while it waits."""

    id: str

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

    def __init__(self, user_id: str, ports: UserPorts) -> None:
        super().__init__(f"user:{user_id}")
        self.user_id = user_id
        self.idle_timeout = ports.idle_timeout
        self._presence = ports.presence
        self._grace = ports.presence_grace
        self.sessions: dict[str, Session] = {}
        self.online = False
        self._grace_generation = 0
        self._grace_timer: asyncio.TimerHandle | None = None

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
        return not self.sessions and not self.online

    async def on_stop(self) -> None:
        self._cancel_grace()
