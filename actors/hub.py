"""RealtimeHub: the one object handlers talk to for anything real-time.

It owns this process's actors — a ``UserActor`` per connected user, a ``ChatActor`` per active
chat, the ``EventLogActor`` — and the router that hands every published batch of events to
the user actors of its recipients. Handlers call it with plain arguments and get plain results
or typed ``ApiError``s; they never touch an actor directly.

The actors do not know the hub: each gets its ports (``actors/ports.py``) — the store, the
hub as event publisher and presence listener, the attachment claims, its settings values.

Resume: a session that gives ``last_event_id`` is first caught up from the user's ring (or from
the event log in storage when the ring does not reach back that far), page by page, and only
then made live; events that arrive meanwhile go to the ring and are written when it goes live,
so nothing is missed or repeated. A cursor older than what the event log retains (or newer
than anything published) gets ``resync_required``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors import chat as chat_actor
from actors.chat import ChatActor, ReadOutcome, SendOutcome
from actors.event_log import Append, EventLogActor, Purge
from actors.ports import AttachmentClaims, ChatPorts, UserPorts
from actors.runtime import ActorRegistry, InboxFull
from actors.user import Attach, Detach, Session, UserActor
from config import Settings
from messenger import events
from messenger.bus import Bus, LocalBus
from messenger.errors import ChatNotFound
from messenger.events import Event, EventDraft
from messenger.ids import is_valid_id
from messenger.models import Chat
from messenger.store import Store

log = logging.getLogger("messenger.realtime")

ASK_TIMEOUT_SECONDS = 30.0
CATCH_UP_PAGE = 500


@dataclass(frozen=True, slots=True)
class Backlog:
    events: list[Event]
    resync: bool
    head: int


class RealtimeHub:
    def __init__(self, settings: Settings, store: Store, attachments: AttachmentClaims,
                 bus: Bus | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus or LocalBus()
        chat_ports = ChatPorts(
            store=store,
            publisher=self,
            attachments=attachments,
            idle_timeout=settings.actor_idle_timeout,
            batch_max=settings.send_batch_max,
            typing_ttl=settings.typing_ttl,
        )
        user_ports = UserPorts(
            presence=self,
            idle_timeout=settings.actor_idle_timeout,
            presence_grace=settings.presence_grace,
            ring_size=settings.event_ring_size,
        )
        self.users: ActorRegistry[str, UserActor] = ActorRegistry(
            lambda user_id: UserActor(user_id, user_ports, self.event_log.head)
        )
        self.chats: ActorRegistry[str, ChatActor] = ActorRegistry(
            lambda chat_id: ChatActor(chat_id, chat_ports)
        )
        self.event_log: EventLogActor
        self._purge_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._ws_sessions: set[Any] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        _, head = await self.store.event_bounds()
        self.event_log = EventLogActor(self.store, self.bus, head,
                                       self.settings.event_retention)
        self.event_log.start()
        self.bus.subscribe(self.route)
        loop = asyncio.get_running_loop()
        self._purge_task = loop.create_task(self._purge_periodically())
        self._sweep_task = loop.create_task(self._sweep_idle())

    async def close(self) -> None:
        for task in (self._purge_task, self._sweep_task):
            if task is not None:
                task.cancel()
        await self.users.stop_all()
        await self.chats.stop_all()
        if hasattr(self, "event_log"):
            await self.event_log.stop()

    async def _purge_periodically(self) -> None:
        interval = min(3600.0, max(1.0, self.settings.event_retention / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.event_log.ask(Purge(), ASK_TIMEOUT_SECONDS)
            except Exception:
                log.exception("purging old events failed; will retry")

    # -- publishing (the chat actors' EventPublisher) and routing ---------------------------
    async def publish(self, drafts: list[EventDraft]) -> list[Event]:
        """Store events in the log and publish them; returns them with their ids."""
        drafts = [d for d in drafts if d.recipients]
        if not drafts:
            return []
        result: list[Event] = await self.event_log.ask(Append(drafts), ASK_TIMEOUT_SECONDS)
        return result

    def route(self, published: list[Event]) -> None:
        """Bus subscriber: hand each event to the user actors of its recipients here."""
        by_actor: dict[UserActor, list[Event]] = {}
        get = self.users.get
        for event in published:
            for user_id in event.recipients:
                actor = get(user_id)
                if actor is not None:
                    batch = by_actor.get(actor)
                    if batch is None:
                        by_actor[actor] = [event]
                    else:
                        batch.append(event)
        for actor, batch in by_actor.items():
            actor.deliver(batch)

    # -- sessions ----------------------------------------------------------------------------
    @property
    def head(self) -> int:
        return self.event_log.head

    async def open_session(self, user_id: str, session: Session) -> None:
        """Count a session for presence (the first one makes the user online)."""
        await self.users.ask(user_id, Attach(session), ASK_TIMEOUT_SECONDS)

    def close_session(self, user_id: str, session: Session) -> None:
        session.live = False
        actor = self.users.get(user_id)
        if actor is not None:
            try:
                actor.tell(Detach(session))
            except InboxFull:
                actor.overflow()
            except Exception:
                pass  # the actor is gone, and the session with it

    async def read_backlog(self, user_id: str, after: int, limit: int) -> Backlog:
        """Events for ``user_id`` with ids above ``after`` (at most ``limit``)."""
        head = self.event_log.head
        if after > head:
            return Backlog([], True, head)
        actor = self.users.get(user_id)
        if actor is not None:
            recent = actor.events_after(after, limit)
            if recent is not None:
                return Backlog(recent, False, head)
        floor, _ = await self.store.event_bounds()
        if after < floor:
            return Backlog([], True, head)
        stored = await self.store.list_events(user_id, after, limit)
        return Backlog([Event.from_stored(s) for s in stored if s.id <= head], False, head)

    async def catch_up(self, user_id: str, session: Any, resync: Any) -> None:
        """Write what ``session`` missed since its cursor, then make it live.

        ``session.write_backlog`` writes a page at the pace the client reads. When the cursor is
        too old, unknown or too far behind, ``resync()`` is called once (it tells the client)
        and the session continues live from the current head.
        """
        replayed = 0
        while True:
            if session.closed:  # the client left meanwhile: nothing to make live
                return
            backlog = await self.read_backlog(user_id, session.cursor, CATCH_UP_PAGE)
            if session.closed:
                return
            if backlog.resync or replayed > self.settings.resume_max_events:
                session.cursor = backlog.head
                resync()
                replayed = 0
                continue
            if backlog.events:
                await session.write_backlog(backlog.events)
                if session.closed:
                    return
                replayed += len(backlog.events)
                continue
            actor = self.users.get_or_spawn(user_id)
            if actor.go_live(session):
                actor.sessions.setdefault(session.id, session)
                return

    # -- long polling ------------------------------------------------------------------------
    async def poll(self, user_id: str, after: int | None, wait: float,
                   session: Session) -> tuple[list[Event], int, bool]:
        """Events above ``after``, waiting up to ``wait`` s for one: (events, cursor, resync)."""
        await self.open_session(user_id, session)
        try:
            if after is None:
                return [], self.event_log.head, False
            limit = self.settings.poll_max_events
            backlog = await self.read_backlog(user_id, after, limit)
            if backlog.resync:
                return [], backlog.head, True
            if not backlog.events and wait > 0:
                waiter = self.users.get_or_spawn(user_id).wait_for_events(after)
                session.waiter = waiter  # type: ignore[attr-defined]
                if session.closed:
                    return [], after, False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, wait)
                backlog = await self.read_backlog(user_id, after, limit)
                if backlog.resync:
                    return [], backlog.head, True
            cursor = backlog.events[-1].id if backlog.events else max(after, 0)
            return backlog.events, cursor, False
        finally:
            self.close_session(user_id, session)

    def cancel_poll(self, user_id: str, session: Session) -> None:
        """The polling client went away: stop waiting for it."""
        waiter = getattr(session, "waiter", None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- WebSocket sessions: idle sweep ------------------------------------------------------
    def track(self, session: Any) -> None:
        self._ws_sessions.add(session)

    def untrack(self, session: Any) -> None:
        self._ws_sessions.discard(session)

    async def _sweep_idle(self) -> None:
        idle = self.settings.ws_idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            for session in list(self._ws_sessions):
                session.check_idle(now, idle)

    # -- commands ----------------------------------------------------------------------------
    async def send(self, user_id: str, chat_id: str, text: str, client_msg_id: str | None,
                   attachment_ids: Sequence[str] = (), origin: str | None = None
                   ) -> SendOutcome:
        send = chat_actor.Send(user_id, text, client_msg_id, tuple(attachment_ids), origin)
        outcome: SendOutcome = await self._ask_chat(chat_id, send)
        return outcome

    async def set_typing(self, user_id: str, chat_id: str, is_typing: bool) -> None:
        await self._ask_chat(chat_id, chat_actor.SetTyping(user_id, is_typing))

    async def mark_read(self, user_id: str, chat_id: str, seq: int) -> ReadOutcome:
        outcome: ReadOutcome = await self._ask_chat(chat_id, chat_actor.MarkRead(user_id, seq))
        return outcome

    async def _ask_chat(self, chat_id: str, message: Any) -> Any:
        if not is_valid_id(chat_id):
            raise ChatNotFound("chat not found")
        return await self.chats.ask(chat_id, message, ASK_TIMEOUT_SECONDS)

    # -- presence (the user actors' PresenceListener) ----------------------------------------------
    async def presence_changed(self, user_id: str, online: bool, at: datetime) -> None:
        try:  # for missed-message digests; the live presence event goes out regardless
            await self.store.record_presence(user_id, online, at)
        except Exception:
            log.exception("recording presence of %s failed", user_id)
        contacts = await self.store.contact_ids(
            user_id, self.settings.presence_max_chat_members)
        if contacts:
            await self.publish([events.presence(user_id, online, at, sorted(contacts))])

    # -- chat changes (ChatService's notifier) -----------------------------------------------
    async def chat_created(self, chat: Chat) -> None:
        await self.publish([events.chat_created(chat)])

    async def members_added(self, chat: Chat, user_ids: list[str], by: str) -> None:
        self._reload_chat(chat.id)
        await self.publish([events.members_added(chat, user_ids, by)])

    async def member_removed(self, chat: Chat, user_id: str, by: str) -> None:
        self._reload_chat(chat.id)
        await self.publish([events.member_removed(chat, user_id, by)])

    def _reload_chat(self, chat_id: str) -> None:
        actor = self.chats.get(chat_id)
        if actor is not None:
            try:
                actor.tell(chat_actor.Reload())
            except Exception:
                log.warning("chat actor %s could not reload its members", chat_id)
