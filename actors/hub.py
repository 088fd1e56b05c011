"""RealtimeHub: the one object handlers talk to for anything real-time on this process.

It wires this process's real-time parts together and gives handlers plain calls:

* the **node** (``messenger/realtime/node.py``) with its broker: every publication reaches
  local sessions' feeds through it; each session has a ``Feed`` that follows its streams;
* the **stream publisher** (``messenger/realtime/publisher.py``): the one door out for events,
  stored first, then published; chat actors and chat changes go through it;
* the **actors**: a ``ChatActor`` per active chat (members, typing, the send path), a
  ``UserActor`` per user with a session here (presence);
* background sweeps: fan-outs left incomplete by a writer that died (``complete_fanouts``),
  retention (``trim_streams``), idle WebSockets.

Membership changes made here are announced to every node with a ``chat_changed`` control
message, on which each node's chat actor reloads its members (the store checks membership on
every send regardless: a stale cache can only refuse late, never accept a removed member).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actors import chat as chat_actor
from actors.chat import ChatActor, ReadOutcome, SendOutcome
from actors.ports import AttachmentClaims, ChatPorts, UserPorts
from actors.runtime import ActorRegistry, InboxFull
from actors.user import Attach, Detach, Session, UserActor
from config import Settings
from messenger.clock import utcnow
from messenger.errors import ChatNotFound
from messenger.ids import is_valid_id
from messenger.models import Chat
from messenger.realtime import frames
from messenger.realtime.backends import open_backends
from messenger.realtime.broker import (
    Broker,
    BrokerError,
    ControlKind,
    ControlMessage,
    InProcessNetwork,
)
from messenger.realtime.feed import Feed, Outlet
from messenger.realtime.history import StoreHistory
from messenger.realtime.keepalive import KeepalivePolicy
from messenger.realtime.node import Node
from messenger.realtime.presence import PresenceManager
from messenger.realtime.publisher import StreamPublisher
from messenger.realtime.resume import ResumeCursor
from messenger.store import Store

log = logging.getLogger("messenger.realtime")

ASK_TIMEOUT_SECONDS = 30.0
#: A fan-out still incomplete after this long is finished by the sweep (its writer died).
FANOUT_SWEEP_AGE_SECONDS = 10.0
FANOUT_SWEEP_INTERVAL_SECONDS = 10.0
#: How often the node compares its feeds' positions with the store's stream heads.
POSITION_CHECK_SECONDS = 5.0
#: On close, how long publications still queued for the broker may take to leave.
BROKER_FLUSH_SECONDS = 2.0


@dataclass
class PollOutlet:
    """A long poll as a feed's outlet: it collects the frames."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    frames: list[bytes] = field(default_factory=list)
    resynced: bool = False
    #: Set when frames arrive or the client went away: the poll answers.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def write_frames(self, batch: list[bytes]) -> None:
        self.frames.extend(batch)

    async def write_paced(self, batch: list[bytes]) -> None:
        self.frames.extend(batch)

    def resync(self, cursor: str) -> None:
        self.resynced = True


@dataclass(frozen=True, slots=True)
class PollResult:
    frames: list[bytes]
    cursor: str
    resync: bool


class RealtimeHub:
    def __init__(self, settings: Settings, store: Store, attachments: AttachmentClaims,
                 network: InProcessNetwork | None = None, node_id: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id or uuid.uuid4().hex
        #: pings and the closes of silent or expired sessions (the sweep's rules)
        self.keepalive_policy = KeepalivePolicy(settings.ws_idle_timeout,
                                                settings.ws_ping_interval,
                                                settings.ws_ping_timeout)
        self.history = StoreHistory(store)
        self.backends = open_backends(settings, self.node_id, self.history, network)
        self.broker: Broker = self.backends.broker
        self.presence: PresenceManager = self.backends.presence
        self._presence_lost = False  # a heartbeat failed: re-add this node's users when back
        self.node = Node(self.broker, self.history, store, settings.stream_gap_hold)
        self.publisher = StreamPublisher(store, self.broker, self.history,
                                         settings.stream_fanout_max_members)
        chat_ports = ChatPorts(
            store=store,
            events=self.publisher,
            attachments=attachments,
            idle_timeout=settings.actor_idle_timeout,
            batch_max=settings.send_batch_max,
            typing_ttl=settings.typing_ttl,
        )
        user_ports = UserPorts(
            presence=self,
            idle_timeout=settings.actor_idle_timeout,
            presence_grace=settings.presence_grace,
        )
        self.users: ActorRegistry[str, UserActor] = ActorRegistry(
            lambda user_id: UserActor(user_id, user_ports)
        )
        self.chats: ActorRegistry[str, ChatActor] = ActorRegistry(
            lambda chat_id: ChatActor(chat_id, chat_ports)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._ws_sessions: set[Any] = set()
        self.open_polls = 0  # long polls in progress (metrics)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.node.on_control_message(self._on_control)
        await self.node.start()
        await self._complete_fanouts()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sweep_streams()),
                       loop.create_task(self._sweep_idle()),
                       loop.create_task(self._heartbeat())]
        if self.broker.may_lose:  # in process, a publication cannot be lost on the way
            self._tasks.append(loop.create_task(self._check_positions()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.users.stop_all()
        await self.chats.stop_all()
        try:  # what this node published reaches the others before it goes
            await asyncio.wait_for(self.broker.flushed(), BROKER_FLUSH_SECONDS)
        except TimeoutError:
            log.warning("publications still queued for the broker after %.0fs: dropped (they "
                        "are stored; other nodes read them from the store)", BROKER_FLUSH_SECONDS)
        await self.node.close()
        # This node's presence entries are left to expire (PRESENCE_NODE_TTL_SECONDS): its
        # users reconnecting elsewhere meanwhile do not flap; the others go offline then.
        await self.backends.close()

    async def _complete_fanouts(self) -> None:
        before = utcnow() - timedelta(seconds=FANOUT_SWEEP_AGE_SECONDS)
        completed = await self.store.complete_fanouts(before)
        if completed:
            log.warning("completed %d fan-outs left by a writer that stopped", completed)

    async def _sweep_streams(self) -> None:
        retention = self.settings.event_retention
        trim_every = min(3600.0, max(1.0, retention / 10))
        next_trim = time.monotonic() + trim_every
        while True:
            await asyncio.sleep(FANOUT_SWEEP_INTERVAL_SECONDS)
            try:
                await self._complete_fanouts()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + trim_every
                    await self.store.trim_streams(utcnow() - timedelta(seconds=retention))
            except Exception:
                log.exception("stream sweep failed; will retry")

    async def _check_positions(self) -> None:
        while True:
            await asyncio.sleep(POSITION_CHECK_SECONDS)
            try:
                await self.node.check_positions()
            except Exception:
                log.exception("checking stream positions failed; will retry")

    # -- sessions ----------------------------------------------------------------------------
    async def open_session(self, user_id: str, session: Session) -> None:
        """Count a session for presence (the first one makes the user online)."""
        await self.users.ask(user_id, Attach(session), ASK_TIMEOUT_SECONDS)

    def close_session(self, user_id: str, session: Session) -> None:
        actor = self.users.get(user_id)
        if actor is not None:
            try:
                actor.tell(Detach(session))
            except InboxFull:
                actor.overflow()
            except Exception:
                pass  # the actor is gone, and the session with it

    async def _presence_contacts(self, user_id: str) -> set[str]:
        """Who hears of ``user_id``'s presence, and whose they hear: the other members of their
        chats of at most ``PRESENCE_MAX_CHAT_MEMBERS``."""
        contacts = await self.store.contact_ids(user_id, self.settings.presence_max_chat_members)
        contacts.discard(user_id)
        return contacts

    async def online_contacts(self, user_id: str) -> list[str]:
        """The user's presence contacts that some node holds now, sorted (the snapshot a new
        WebSocket gets after ``ready``, API contract §8); none while presence is unreachable."""
        contacts = await self._presence_contacts(user_id)
        if not contacts:
            return []
        try:
            return sorted(await self.presence.online(contacts))
        except BrokerError:
            return []

    async def open_feed(self, user_id: str, outlet: Outlet,
                        resume: ResumeCursor | None) -> tuple[Feed, str, bool]:
        """A feed for a WebSocket session, started from ``resume`` (None: from now); returns
        it, the cursor for ``ready``, and whether ``resume`` could not be served (the feed
        starts from now: ``resync_required``). What it missed follows, then live events."""
        feed = Feed(self.node, user_id, outlet, self.settings.resume_max_events)
        try:
            cursor, resynced = await feed.start(resume)
        except BaseException:
            await feed.close()
            raise
        return feed, cursor, resynced

    # -- long polling ------------------------------------------------------------------------
    async def poll(self, user_id: str, resume: ResumeCursor | None, wait: float,
                   session: Session, outlet: PollOutlet) -> PollResult:
        """Events after ``resume`` (at most ``POLL_MAX_EVENTS``), waiting up to ``wait`` s for
        one; without ``resume``, none and the current cursor."""
        await self.open_session(user_id, session)
        feed = Feed(self.node, user_id, outlet, max_frames=self.settings.poll_max_events)
        feed.on_frames = outlet.wake.set
        self.open_polls += 1
        try:
            cursor, outlet.resynced = await feed.start(resume)
            if resume is None or outlet.resynced:
                return PollResult([], cursor, outlet.resynced)
            await feed.settled()
            if not outlet.frames and wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await outlet.wake.wait()
                await feed.settled()
            feed.flush()  # the cursor below counts every frame given: all must be in
            return PollResult(list(outlet.frames), feed.cursor_text(), outlet.resynced)
        finally:
            self.open_polls -= 1
            await feed.close()
            self.close_session(user_id, session)

    # -- WebSocket sessions: idle sweep ------------------------------------------------------
    def track(self, session: Any) -> None:
        self._ws_sessions.add(session)

    def untrack(self, session: Any) -> None:
        self._ws_sessions.discard(session)

    def websocket_sessions(self) -> list[Any]:
        """The WebSocket sessions tracked now, from ``track`` until ``untrack`` (a copy: the
        shutdown closes each with 1001 and waits until none is left)."""
        return list(self._ws_sessions)

    async def _sweep_idle(self) -> None:
        policy = self.keepalive_policy
        while True:
            await asyncio.sleep(policy.period)  # also the token-expiry bound (§8)
            now, wall = time.monotonic(), time.time()
            for session in list(self._ws_sessions):
                session.check_alive(now, wall, policy)

    # -- commands ----------------------------------------------------------------------------
    async def send(self, user_id: str, chat_id: str, text: str, client_msg_id: str | None,
                   attachment_ids: Sequence[str] = (), origin: str = ""
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
        """The user's first session here opened, or their last one here closed (after the
        grace): this node's entry is added or removed, and the change is announced unless
        another node still holds the user."""
        ttl = self.settings.presence_node_ttl
        try:
            if online:
                await self.presence.add(user_id, self.node_id, ttl)
            else:
                await self.presence.remove(user_id, self.node_id)
                if await self.presence.online([user_id]):
                    return  # still online through another node
        except BrokerError as exc:
            if not self._presence_lost:
                log.warning("presence not shared (%s: %s); announcing it from here until "
                            "the presence manager answers again", exc.code, exc)
            self._presence_lost = True  # the next heartbeat that gets through re-adds
        await self._announce_presence(user_id, online, at)

    async def _announce_presence(self, user_id: str, online: bool, at: datetime) -> None:
        try:  # for missed-message digests; the live presence event goes out regardless
            await self.store.record_presence(user_id, online, at)
        except Exception:
            log.exception("recording presence of %s failed", user_id)
        contacts = await self._presence_contacts(user_id)
        if contacts:
            await self.publisher.ephemeral_to_users(
                sorted(contacts), frames.presence(user_id, online, at), user_id)

    async def _heartbeat(self) -> None:
        """Keep this node's entries alive; announce offline the users whose last entry expired
        (a node that stopped without a word: each such user is announced by one node)."""
        ttl = self.settings.presence_node_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.beat()
            except BrokerError as exc:
                if not self._presence_lost:
                    log.warning("presence heartbeat failed (%s); retrying", exc.code)
                self._presence_lost = True
            except Exception:
                log.exception("presence heartbeat failed; retrying")

    async def beat(self) -> None:
        """One heartbeat (the task runs it every third of ``PRESENCE_NODE_TTL_SECONDS``)."""
        ttl = self.settings.presence_node_ttl
        await self.presence.refresh(self.node_id, ttl)
        if self._presence_lost:  # entries may have expired meanwhile: hold this node's again
            for actor in self.users.values():
                if actor.online:  # and say so again: another node may have announced offline
                    await self.presence.add(actor.user_id, self.node_id, ttl)
                    await self._announce_presence(actor.user_id, True, utcnow())
            self._presence_lost = False
        for user_id in await self.presence.expire():
            actor = self.users.get(user_id)
            if actor is not None and actor.online:  # ours after all: hold it again
                await self.presence.add(user_id, self.node_id, ttl)
                continue
            await self._announce_presence(user_id, False, utcnow())

    # -- chat changes (ChatService's notifier) -----------------------------------------------
    async def chat_created(self, chat: Chat) -> None:
        await self.publisher.chat_event(chat, frames.chat_created(chat),
                                        joiners=chat.member_ids)

    async def members_added(self, chat: Chat, user_ids: list[str], by: str) -> None:
        await self.publisher.chat_event(chat, frames.members_added(chat, user_ids, by),
                                        joiners=user_ids)
        await self._chat_changed(chat.id)

    async def member_removed(self, chat: Chat, user_id: str, by: str) -> None:
        await self.publisher.chat_event(chat, frames.member_removed(chat, user_id, by),
                                        also=(user_id,))
        await self._chat_changed(chat.id)

    async def _chat_changed(self, chat_id: str) -> None:
        """Every node's actor of the chat (this one's too) reloads its members."""
        await self.broker.publish_control(
            ControlMessage(ControlKind.CHAT_CHANGED, {"chat_id": chat_id}))

    async def _on_control(self, msg: ControlMessage) -> None:
        if msg.kind is ControlKind.CHAT_CHANGED:
            chat_id = msg.data.get("chat_id")
            actor = self.chats.get(chat_id) if isinstance(chat_id, str) else None
            if actor is not None:
                try:
                    actor.tell(chat_actor.Reload())
                except Exception:
                    log.warning("chat actor %s could not reload its members", chat_id)
