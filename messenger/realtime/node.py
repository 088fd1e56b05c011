"""The node: this process's end of the broker, handing each publication to the local feeds of
its stream (and answering the feeds' questions about streams, chats and history).

A node follows a stream while at least one local feed does: the first ``follow`` subscribes
with the broker, the last ``unfollow`` unsubscribes, so this process receives only what its
sessions need. Every publication — this process's own ones too — reaches local feeds through
``on_publication``, the one path; control messages go to ``on_control`` listeners (the hub
reloads a chat's members when another process changed them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from messenger.models import Chat
from messenger.realtime.broker import Broker, ControlMessage, Publication
from messenger.realtime.feed import Feed
from messenger.realtime.history import StoreHistory

log = logging.getLogger("messenger.realtime.node")

#: Feeds of one stream kept in a list; past this many, in a dict (removal in O(1)).
SMALL_FOLLOWING = 16
#: Streams whose heads one store query reads when the node checks its feeds' positions.
RECHECK_BATCH = 500

ControlListener = Callable[[ControlMessage], Awaitable[None]]


class MembershipReader(Protocol):
    """The part of ``Store`` a node reads about chats and markers."""

    async def streamed_chats(self, user_id: str) -> list[str]: ...

    async def latest_marker(self, user_id: str, chat_id: str) -> tuple[int, int] | None: ...

    async def get_chat(self, chat_id: str) -> Chat | None: ...


class Node:
    def __init__(self, broker: Broker, history: StoreHistory, store: MembershipReader,
                 hold: float) -> None:
        self.broker = broker
        self.history_source = history
        self.store = store
        self.hold = hold
        #: stream: the local feeds following it, in the order they came (a list while a few —
        #: most streams are a user's, with one session: a set costs 216 bytes — then a dict)
        self.feeds: dict[str, list[Feed] | dict[Feed, None]] = {}
        self._control_listeners: list[ControlListener] = []
        self._to_write: list[Feed] = []
        self.last_of_burst = False
        # metrics (messenger/metrics/): counted here, read when scraped
        self.frames_delivered = 0  # frames the feeds emitted (Feed._emit)
        self.gap_fills = 0  # held gaps the feeds read from the store (Feed._fill_gaps)
        self.history_reads = 0  # history pages read (catch-ups, gap fills, repairs)

    async def start(self) -> None:
        await self.broker.start(self)

    async def close(self) -> None:
        await self.broker.close()
        self.feeds.clear()

    def on_control_message(self, listener: ControlListener) -> None:
        self._control_listeners.append(listener)

    # -- BrokerEventHandler ------------------------------------------------------------------
    async def on_publication(self, pub: Publication) -> None:
        feeds = self.feeds.get(pub.stream)
        if feeds:
            # Nothing queued behind it: feeds write at once (one message in flight); else they
            # write at the end of the loop turn, every publication handed over by then in one
            # write per socket.
            self.last_of_burst = not self.broker.pending
            try:
                for feed in list(feeds):
                    try:
                        feed.offer(pub)
                    except Exception:
                        log.exception("feed of %s failed on %s offset %d", feed.user_id,
                                      pub.stream, pub.offset)
            finally:
                self.last_of_burst = False

    async def on_control(self, msg: ControlMessage) -> None:
        for listener in self._control_listeners:
            try:
                await listener(msg)
            except Exception:
                log.exception("control listener failed on %s", msg.kind)

    async def on_connection_lost(self) -> None:
        log.warning("broker connection lost: feeds fill from the store when it is back")

    async def on_reconnected(self) -> None:
        """Anything published meanwhile may be lost: every feed reads on what it missed."""
        try:
            await self.check_positions(lost=True)
        except Exception:
            log.warning("reading stream heads after a reconnect failed; the periodic check "
                        "will", exc_info=True)

    async def check_positions(self, lost: bool = False) -> None:
        """Each followed stream's head is read from the store (one query per
        ``RECHECK_BATCH`` streams), and every feed behind a head reads that stream on from its
        cursor: at once after a reconnect (``lost``); periodically (the hub), when it is still
        behind the head of the previous check. So a publication lost without a reconnect — its
        writer died between the store and the broker, a batch lost on the way to Redis —
        reaches the feeds within two periods even if nothing follows it, and one merely on its
        way is not read back."""
        streams = list(self.feeds)
        for start in range(0, len(streams), RECHECK_BATCH):
            batch = streams[start:start + RECHECK_BATCH]
            heads = await self.history_source.bounds(batch)  # fails: the next check retries
            for stream in batch:
                head = heads.get(stream, (0, 0))[1]
                for feed in list(self.feeds.get(stream, ())):
                    feed.recheck(stream, head, lost)

    # -- FeedHost ------------------------------------------------------------------------------
    async def follow(self, stream: str, feed: Feed) -> None:
        feeds = self.feeds.get(stream)
        if feeds is None:
            self.feeds[stream] = [feed]
        elif type(feeds) is list:
            if feed not in feeds:
                feeds.append(feed)
                if len(feeds) > SMALL_FOLLOWING:
                    self.feeds[stream] = dict.fromkeys(feeds)
        else:
            feeds[feed] = None
        await self.broker.subscribe(stream)

    async def unfollow(self, stream: str, feed: Feed) -> None:
        feeds = self.feeds.get(stream)
        if feeds is None or feed not in feeds:
            return
        if type(feeds) is list:
            feeds.remove(feed)
        else:
            del feeds[feed]
        if not feeds:
            del self.feeds[stream]
        try:
            await self.broker.unsubscribe(stream)
        except Exception:
            log.warning("unsubscribing %s failed", stream, exc_info=True)

    def write_soon(self, feed: Feed) -> None:
        """One callback per loop turn writes every feed that has frames (each in one write)."""
        if not self._to_write:
            asyncio.get_running_loop().call_soon(self._write_feeds)
        self._to_write.append(feed)

    def _write_feeds(self) -> None:
        feeds, self._to_write = self._to_write, []
        for feed in feeds:
            try:
                feed.flush()
            except Exception:
                log.exception("writing the frames of %s failed", feed.user_id)

    async def epoch(self) -> str:
        return await self.history_source.epoch()

    async def bounds(self, streams: list[str]) -> dict[str, tuple[int, int]]:
        return await self.history_source.bounds(streams)

    async def history(self, stream: str, after: int, limit: int) -> list[Publication]:
        self.history_reads += 1
        return await self.broker.history(stream, after, limit)

    async def large_chats(self, user_id: str, user_offset: int) -> list[str]:
        chats = []
        for chat_id in await self.store.streamed_chats(user_id):
            marker = await self.store.latest_marker(user_id, chat_id)
            if marker is not None and marker[0] <= user_offset:
                chats.append(chat_id)
        return chats

    async def is_member(self, chat_id: str, user_id: str) -> bool:
        chat = await self.store.get_chat(chat_id)
        return chat is not None and chat.is_member(user_id)

    async def rejoined_at(self, chat_id: str, user_id: str, after: int) -> int | None:
        if not await self.is_member(chat_id, user_id):
            return None
        marker = await self.store.latest_marker(user_id, chat_id)
        return marker[1] if marker is not None and marker[1] > after else None
