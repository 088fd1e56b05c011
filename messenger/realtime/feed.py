"""A session's feed: the stored events of the streams it follows, in order, once, then live.

One ``Feed`` per WebSocket session or long poll. It follows the user's stream ``u:<user>``
and the stream ``c:<chat>`` of each large chat the user is in (docs/REALTIME_STREAMS.md), with
one ``StreamCursor`` per stream. Events reach it live from the node (the broker, at most once,
possibly out of order across writers) and from the store (catch-up after a resume, and gap
fills); the cursor decides: the next offset is delivered, a repeat is dropped, an event past a
gap is held, and ``STREAM_GAP_HOLD_SECONDS`` after the first held event arrived the missing
offsets are read from the store — which has every one of them, because offsets have no holes.

Rules on the user stream (each entry is delivered or skipped, and the cursor moves past it):

* a *marker* copy (``source`` chat, ``source_offset`` n): the chat became large, or the user
  joined a large chat, at chat offset n: the feed starts following ``c:<chat>`` after n - 1
  (if the user is still a member), and delivers nothing for the marker itself;
* a fan-out copy from a chat whose stream the feed follows: skipped (it comes through the
  chat's stream, which has every event of the chat in order);
* anything else: delivered.

On a chat stream, a ``member_removed`` of the feed's own user is delivered and then the feed
stops following that chat (unless the user was added back: then it follows on from the marker
of that addition).

Frames: the stored payload with ``"event_id"`` first, whose value is the session's cursor
(``ResumeCursor``) *after* that event; the sending session gets the ``ack`` payload instead.
Everything a feed writes goes to its ``Outlet`` in order: while a catch-up or fill is running,
through a queue that the fill task writes paced (waiting for the socket to drain), else at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from messenger.realtime import frames
from messenger.realtime.broker import HistoryTrimmed, Publication
from messenger.realtime.cursor import StreamCursor, Verdict
from messenger.realtime.frames import ws_header
from messenger.realtime.resume import ResumeCursor, encode_cursor, encode_cursor_around

log = logging.getLogger("messenger.realtime.feed")

#: Entries read from the store per round trip during a catch-up or gap fill.
FILL_PAGE = 500
#: Sends of one session whose ack a feed remembers at most (``Feed.expect_ack``).
AWAITED_ACKS_MAX = 256
_NEW_MESSAGE = b'{"type":"new_message"'

_REMOVED = b'{"type":"member_removed"'
_NONE_LEAVING: frozenset[str] = frozenset()
#: ``ws_header`` of a frame of 126 to 65,535 bytes (most events), without its call
_header16 = struct.Struct("!BBH").pack


class Outlet(Protocol):
    """Where a feed's frames go (a WebSocket session, or a long poll collecting them). An
    outlet with a true ``websocket`` attribute is given WebSocket text frames, ready to write;
    any other, the frames' JSON."""

    session_id: str

    def write_frame(self, frame: bytes) -> None:
        """Write one frame at once (the hot path: one live event)."""

    def write_frames(self, frames: list[bytes]) -> None:
        """Write frames at once, in order."""

    async def write_paced(self, frames: list[bytes]) -> None:
        """Write JSON frames in order at the pace the client reads them."""

    def resync(self, cursor: str) -> None:
        """The position cannot be served: tell the client (``resync_required``)."""


class FeedHost(Protocol):
    """What a feed needs from its node."""

    hold: float

    async def follow(self, stream: str, feed: Feed) -> None: ...

    async def unfollow(self, stream: str, feed: Feed) -> None: ...

    async def epoch(self) -> str: ...

    async def bounds(self, streams: list[str]) -> dict[str, tuple[int, int]]: ...

    async def history(self, stream: str, after: int, limit: int) -> list[Publication]: ...

    async def large_chats(self, user_id: str, user_offset: int) -> list[str]:
        """Large chats whose stream a fresh feed at ``user_offset`` of the user's stream
        follows: those whose newest marker for the user is at or below that offset."""
        ...

    async def is_member(self, chat_id: str, user_id: str) -> bool: ...

    #: True while the node hands over a publication with nothing more queued behind it (a
    #: feed then writes at once instead of waiting for the end of the loop turn).
    last_of_burst: bool
    #: Metrics: frames emitted and held gaps filled, by every feed of the host.
    frames_delivered: int
    gap_fills: int

    def write_soon(self, feed: Feed) -> None:
        """Call ``feed.flush()`` at the end of this turn of the event loop."""

    async def rejoined_at(self, chat_id: str, user_id: str, after: int) -> int | None:
        """The chat offset of the user's newest marker of the chat if it is above ``after``."""
        ...


class Lane(StreamCursor[Publication]):
    """A feed's position on one stream: the cursor, the last offset the client was given
    (``delivered``: the cursor's offset runs ahead of it while events wait to be taken), and,
    on a chat stream, the session's cursor text before and after this stream's offset
    (``before``/``after``, None until made; valid while no other position of the feed moves).
    One object per stream, so that the hot path — the next event of a large chat, for
    thousands of feeds at once — reads one object per feed beside the feed itself."""

    __slots__ = ("after", "before", "delivered")

    def __init__(self, epoch: str, offset: int, hold: float) -> None:
        super().__init__(epoch, offset, hold=hold)
        self.delivered = offset
        self.before: bytes | None = None
        self.after = b""


class Feed:
    # Slots, in this order on purpose: what the hot path (``offer``) reads comes first, so it
    # shares the object's first cache lines (and a feed is 48 bytes smaller than with a dict).
    __slots__ = (  # noqa: RUF023
        "closed", "cursors", "_leaving", "session_id", "host", "_task", "_live", "outlet",
        "_write_frame", "frames_written", "on_frames", "_websocket", "user_id", "user_stream",
        "resume_max", "max_frames", "epoch", "_queue", "_timer", "_jobs", "_followed",
        "_behind", "_restarting", "page", "_awaiting")

    def __init__(self, host: FeedHost, user_id: str, outlet: Outlet,
                 resume_max: int = 10_000, max_frames: int | None = None) -> None:
        self.closed = False
        self.cursors: dict[str, Lane] = {}
        #: chat streams of a removal being handled (rare: a shared empty one until then)
        self._leaving: set[str] | frozenset[str] = _NONE_LEAVING
        self.session_id = outlet.session_id
        self.host = host
        self._task: asyncio.Task[None] | None = None
        #: frames to write at the end of this loop turn (None: none)
        self._live: list[bytes] | None = None
        self.outlet = outlet
        #: the outlet's ``write_frame``, looked up once (a shared function, not a bound method
        #: per feed: the hot path calls it for every copy)
        self._write_frame = type(outlet).write_frame
        self.frames_written = 0
        self.on_frames: Callable[[], None] | None = None  # a long poll's wake-up
        #: Frames are WebSocket text frames (the outlet says so), else JSON objects.
        self._websocket = bool(getattr(outlet, "websocket", False))
        self.user_id = user_id
        self.user_stream = f"u:{user_id}"
        self.resume_max = resume_max
        self.max_frames = max_frames  # a long poll: stop catching up after this many
        self.epoch = ""
        self._queue: list[bytes] = []  # (lists, not deques: a deque costs 760 bytes empty)
        self._timer: asyncio.TimerHandle | None = None
        self._jobs: list[Callable[[], Awaitable[None]]] = []
        #: streams followed (a list: a few per feed, and a set costs 216 bytes)
        self._followed: list[str] = []
        #: stream: the store's head at the last periodic check that found this feed behind it
        self._behind: dict[str, int] | None = None  # made by the first check that finds it
        self._restarting = False
        self.page = FILL_PAGE if max_frames is None else max(1, min(FILL_PAGE, max_frames))
        #: client_msg_id: sends of this session whose ack is on its way (None: none)
        self._awaiting: dict[str, int] | None = None

    # -- start and stop -------------------------------------------------------------------------
    async def start(self, resume: ResumeCursor | None) -> tuple[str, bool]:
        """Follow the streams from ``resume`` (or from now); returns the cursor to announce in
        ``ready`` and whether ``resume`` could not be served (then the feed starts from now
        and the caller says ``resync_required``). Nothing is written to the outlet before
        this returns: the catch-up runs as a task after it."""
        self.epoch = await self.host.epoch()
        await self._follow(self.user_stream)  # subscribe first, then read positions
        streams = None if resume is None else await self._resumable(resume)
        resynced = resume is not None and streams is None
        if streams is None:
            streams = await self._now()
        for stream in streams:
            await self._follow(stream)
        for stream, offset in streams.items():  # no await from here: live offers wait
            self._set_cursor(stream, offset)
        self._kick(self._catch_up)
        return self.cursor_text(), resynced

    async def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        for stream in list(self._followed):
            await self._unfollow(stream)

    async def _now(self) -> dict[str, int]:
        """Positions of a fresh feed: the head of each stream it follows."""
        user_head = (await self.host.bounds([self.user_stream]))[self.user_stream][1]
        chats = [f"c:{chat}" for chat in await self.host.large_chats(self.user_id, user_head)]
        for stream in chats:
            await self._follow(stream)  # before reading its head
        heads = await self.host.bounds(chats) if chats else {}
        return {self.user_stream: user_head, **{s: heads[s][1] for s in chats}}

    async def _resumable(self, resume: ResumeCursor) -> dict[str, int] | None:
        """The cursor's positions if every one can be served from the store, else None."""
        if resume.epoch != self.epoch:
            return None
        streams = {self.user_stream: resume.user_offset}
        for chat, offset in resume.chats.items():
            if await self.host.is_member(chat, self.user_id):
                streams[f"c:{chat}"] = offset
        bounds = await self.host.bounds(list(streams))
        behind = 0
        for stream, offset in streams.items():
            floor, head = bounds[stream]
            if offset < floor or offset > head:
                return None
            behind += head - offset
        return streams if behind <= self.resume_max or self.max_frames else None

    def _set_cursor(self, stream: str, offset: int) -> None:
        # interned, as ``Publication.stream`` is: the hot path's lookup matches by identity
        self.cursors[sys.intern(stream)] = Lane(self.epoch, offset, self.host.hold)
        self._positions_moved()

    def _drop_cursor(self, stream: str) -> None:
        self.cursors.pop(stream, None)
        if self._behind is not None:
            self._behind.pop(stream, None)
        self._positions_moved()

    def _positions_moved(self) -> None:
        """A position moved outside the hot path: the cursor text around each chat's offset
        is made again when next needed."""
        for lane in self.cursors.values():
            lane.before = None

    async def _follow(self, stream: str) -> None:
        if stream not in self._followed:
            self._followed.append(stream)
            await self.host.follow(stream, self)

    async def _unfollow(self, stream: str) -> None:
        if stream in self._followed:
            self._followed.remove(stream)
            await self.host.unfollow(stream, self)

    async def settled(self) -> None:
        """Return once the catch-up, fills and follows asked for so far are done."""
        while self._task is not None and not self.closed:
            await asyncio.wait([self._task])

    def recheck(self, stream: str, head: int, lost: bool) -> None:
        """Publications of ``stream`` may have been lost: read it on unless its cursor is at
        ``head`` (the store's) already. ``lost`` (the broker reconnected): at once. Otherwise
        (the periodic check) only if the cursor is still below the head seen at the previous
        check: an event stored a moment ago may be on its way live, and must reach the session
        that sent it live (its ``message_sent``), not read back."""
        cursor = self.cursors.get(stream)
        if cursor is None:
            return
        behind = self._behind
        if cursor.offset >= head and not cursor.held:
            if behind is not None:
                behind.pop(stream, None)
                if not behind:
                    self._behind = None
            return
        if behind is None:
            behind = self._behind = {}
        seen = behind.get(stream)
        behind[stream] = head
        if lost or (seen is not None and cursor.offset < seen):
            behind.pop(stream, None)
            self._kick(lambda: self._fill(stream, None))

    # -- the cursor --------------------------------------------------------------------------
    def cursor_text(self) -> str:
        return encode_cursor(self.epoch, self._user_delivered(), self._chat_positions())

    def _user_delivered(self) -> int:
        lane = self.cursors.get(self.user_stream)
        return lane.delivered if lane is not None else 0

    def _chat_positions(self) -> dict[str, int]:
        return {s[2:]: lane.delivered for s, lane in self.cursors.items() if s[0] == "c"}

    # -- live ----------------------------------------------------------------------------------
    def offer(self, pub: Publication) -> None:
        """A publication from the node (live)."""
        if self.closed:
            return
        if pub.offset == 0:  # ephemeral: about now, no position; not to the user it is about
            if pub.source != self.user_id and self.cursors:
                self._emit([self._frame(pub, self.cursor_text())])
            return
        stream = pub.stream
        lane = self.cursors.get(stream)
        if lane is None:
            return  # followed a moment ago, its position not read yet: the catch-up has it
        offset = pub.offset
        if stream[0] == "c" and stream not in self._leaving and lane.step(pub.epoch, offset):
            # The hot path of a large chat (thousands of feeds per publication): the next
            # offset of a chat stream, nothing held. The cursor text around this stream's
            # offset is kept from the last time; only the offset is new. Inline, reading the
            # feed, its lane and the outlet only: at 5,000 sessions, each further object per
            # feed is a cache miss per copy.
            lane.delivered = offset
            if pub.payload.startswith(_REMOVED) and self._removes_me(pub):
                self._leave(stream, offset)
                self._kick(None)
            before = lane.before
            if before is None:
                before = self._cursor_around(stream, lane)
            tail = (self._ack_tail(pub.ack) if pub.ack is not None
                    and pub.origin == self.session_id else pub.tail)
            after = lane.after
            if self._websocket:
                # 13: len(b'{"event_id":"'); the offset's digits are ``digits``
                digits = b"%d" % offset
                size = len(before) + len(digits) + len(after) + len(tail) + 13
                frame = b"".join((_header16(0x81, 126, size) if 125 < size < 65536
                                  else ws_header(size),
                                  b'{"event_id":"', before, digits, after, tail))
            else:
                frame = b'{"event_id":"%s%d%s%s' % (before, offset, after, tail)
            self.frames_written += 1
            host = self.host
            host.frames_delivered += 1
            if self._task is None and self._live is None and host.last_of_burst:
                self._write_frame(self.outlet, frame)
                if self.on_frames is not None:
                    self.on_frames()
            else:
                self._emit_later([frame])
            return
        verdict = lane.accept(pub.epoch, offset, pub, time.monotonic())
        if verdict is Verdict.DELIVER:
            self._emit(self._take(stream, lane))
        elif verdict is Verdict.GAP:
            self._arm_timer()
        elif verdict is Verdict.RESYNC and not self._restarting:
            self._restarting = True
            self._kick(self._restart)

    def _take(self, stream: str, lane: Lane) -> list[bytes]:
        self._positions_moved()  # positions move here outside the hot path
        frames: list[bytes] = []
        for offset, pub in lane.take_ready():
            lane.delivered = offset
            if stream == self.user_stream:
                if pub.marker:
                    chat_stream = f"c:{pub.source}"
                    if chat_stream not in self.cursors:
                        # From now on the chat's copies here are skipped; its stream is read
                        # from the store after the marker's chat offset, then live.
                        self._set_cursor(chat_stream, pub.source_offset - 1)
                        self._jobs.append(lambda s=chat_stream: self._follow_chat(s))
                    continue
                if pub.source and f"c:{pub.source}" in self.cursors:
                    continue
            elif stream in self._leaving:
                continue
            elif self._removes_me(pub):
                self._leave(stream, offset)
            frames.append(self._frame(pub, self.cursor_text()))
        if self._jobs:
            self._kick(None)
        return frames

    def _removes_me(self, pub: Publication) -> bool:
        """Whether ``pub`` (of a chat stream) is the ``member_removed`` of this feed's user."""
        if not pub.payload.startswith(_REMOVED):
            return False
        try:
            return orjson.loads(pub.payload).get("user_id") == self.user_id
        except ValueError:
            return False

    def _leave(self, stream: str, offset: int) -> None:
        """The user was removed at ``offset``: deliver nothing more of ``stream`` until the
        job decides (stop following, or go on from a later re-addition)."""
        if not self._leaving:
            self._leaving = set()
        self._leaving.add(stream)  # type: ignore[union-attr]
        self._jobs.append(lambda: self._left_chat(stream, offset))

    def _frame(self, pub: Publication, cursor: str) -> bytes:
        """The session's frame of ``pub``: ``{"event_id":"<cursor>",`` + the payload after its
        ``{`` — as a WebSocket text frame when the outlet takes those (``websocket``)."""
        return self._frame_with(pub, cursor.encode())

    # -- acks of this session's sends ----------------------------------------------------------
    def expect_ack(self, client_msg_id: str) -> None:
        """A send of this session is on its way (``handlers/ws.py``, before the hub has it).
        Its event normally arrives live, carrying the ack (``message_sent``) for this session;
        if it arrives read back from the store instead — the catch-up of a chat this feed has
        just started to follow (after its marker), or a gap fill — it is written as the ack
        all the same, once. At most ``AWAITED_ACKS_MAX`` are remembered (oldest dropped)."""
        awaiting = self._awaiting
        if awaiting is None:
            awaiting = self._awaiting = {}
        awaiting[client_msg_id] = awaiting.pop(client_msg_id, 0) + 1
        if len(awaiting) > AWAITED_ACKS_MAX:
            del awaiting[next(iter(awaiting))]

    def ack_settled(self, client_msg_id: str) -> None:
        """The send's ack is not to come through this feed (the send failed, or the session
        was answered directly)."""
        awaiting = self._awaiting
        if awaiting is None or client_msg_id not in awaiting:
            return
        if awaiting[client_msg_id] > 1:
            awaiting[client_msg_id] -= 1
            return
        del awaiting[client_msg_id]
        if not awaiting:
            self._awaiting = None

    def _ack_tail(self, ack: bytes) -> bytes:
        """What follows the cursor in the frame of this session's own ack (``message_sent``),
        which settles its send."""
        if self._awaiting is not None:
            client_msg_id = orjson.loads(ack).get("client_msg_id")
            if isinstance(client_msg_id, str):
                self.ack_settled(client_msg_id)
        return b'",' + ack[1:]

    def _with_ack(self, pub: Publication) -> Publication:
        """``pub`` read back from the store, carrying its ack for this session if it is the
        ``new_message`` of a send of this session's that awaits its ack (the ack is settled
        when the frame is written)."""
        if not pub.payload.startswith(_NEW_MESSAGE):
            return pub
        message = orjson.loads(pub.payload).get("message")
        if not isinstance(message, dict) or message.get("sender_id") != self.user_id:
            return pub
        client_msg_id = message.get("client_msg_id")
        if not isinstance(client_msg_id, str) or client_msg_id not in (self._awaiting or ()):
            return pub
        return dataclasses.replace(pub, origin=self.session_id,
                                   ack=frames.message_sent_of(client_msg_id, message))

    def _cursor_around(self, stream: str, lane: Lane) -> bytes:
        """The cursor text before ``stream``'s offset (and after it, kept in the lane) until
        another position moves."""
        before, after = encode_cursor_around(
            self.epoch, self._user_delivered(), self._chat_positions(), stream[2:])
        lane.before = before.encode()
        lane.after = after.encode()
        return lane.before

    def _frame_with(self, pub: Publication, head: bytes) -> bytes:
        tail = (self._ack_tail(pub.ack) if pub.ack is not None
                and pub.origin == self.session_id else pub.tail)
        if self._websocket:
            size = len(head) + len(tail) + 13  # 13: len(b'{"event_id":"')
            return b"".join((ws_header(size), b'{"event_id":"', head, tail))
        return b"".join((b'{"event_id":"', head, tail))

    def _emit(self, frames: list[bytes]) -> None:
        if not frames:
            return
        self.frames_written += len(frames)
        self.host.frames_delivered += len(frames)
        self._emit_later(frames)

    def _emit_later(self, frames: list[bytes]) -> None:
        """Frames counted already: to the outlet at once, or at the end of this loop turn
        (other frames wait there), or behind a running fill."""
        if self._task is not None:
            self._queue.extend(frames)
        else:
            # Written once per turn of the event loop: the publications the node hands over
            # in one turn (a batch of sends, several chats) go out in one write per socket —
            # unless the node has nothing more to hand over now: then at once.
            if self._live is not None:
                self._live.extend(frames)
            elif self.host.last_of_burst:
                self.outlet.write_frames(frames)
            else:
                self.host.write_soon(self)
                self._live = list(frames)
        if self.on_frames is not None:
            self.on_frames()

    def flush(self) -> None:
        """Write the frames still waiting for the end of this loop turn now."""
        frames, self._live = self._live, None
        if frames and not self.closed:
            if self._task is not None:  # a fill started meanwhile: keep the order
                self._queue[:0] = frames
            else:
                self.outlet.write_frames(frames)

    # -- catch-up, gap fills, follows: one task at a time -------------------------------------
    def _arm_timer(self) -> None:
        if self._timer is None and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(self.host.hold, self._hold_over)

    def _hold_over(self) -> None:
        self._timer = None
        now = time.monotonic()
        if any(c.fill_due(now) for c in self.cursors.values()):
            self._kick(self._fill_gaps)
        elif any(c.held for c in self.cursors.values()):
            self._arm_timer()

    def _kick(self, job: Callable[[], Awaitable[None]] | None) -> None:
        if job is not None:
            self._jobs.append(job)
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._run_jobs())

    async def _run_jobs(self) -> None:
        try:
            while self._jobs and not self.closed:
                job = self._jobs.pop(0)
                try:
                    await job()
                except HistoryTrimmed:
                    await self._restart()
                await self._flush()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("feed of %s failed; restarting it from now", self.user_id)
            if not self.closed:
                self._jobs.clear()
                self._task = None
                self._kick(self._restart)
                return
        finally:
            if self._task is asyncio.current_task():
                self._task = None
        if self._queue and not self.closed:  # emitted while the last flush awaited
            self.outlet.write_frames(list(self._queue))
            self._queue.clear()

    async def _flush(self) -> None:
        while self._queue and not self.closed:
            frames = list(self._queue)
            self._queue.clear()
            await self.outlet.write_paced(frames)

    async def _catch_up(self) -> None:
        for stream in list(self.cursors):
            await self._fill(stream, None)

    async def _fill_gaps(self) -> None:
        self.host.gap_fills += 1
        now = time.monotonic()
        for stream, cursor in list(self.cursors.items()):
            if cursor.fill_due(now) is not None:
                await self._fill(stream, cursor.missing()[1])  # type: ignore[index]
        if any(c.held for c in self.cursors.values()):
            self._arm_timer()

    async def _fill(self, stream: str, through: int | None) -> None:
        """Read ``stream`` from the store after the cursor, through ``through`` (None: to the
        end), accepting each entry as if it had arrived live."""
        while not self.closed:
            cursor = self.cursors.get(stream)
            if cursor is None or (through is not None and cursor.offset >= through):
                return
            if self.max_frames is not None and self.frames_written >= self.max_frames:
                return
            pubs = await self.host.history(stream, cursor.offset, self.page)
            if self.cursors.get(stream) is not cursor:
                return
            now = time.monotonic()
            for pub in pubs:
                if self._awaiting is not None:
                    pub = self._with_ack(pub)
                if cursor.accept(pub.epoch, pub.offset, pub, now) is Verdict.RESYNC:
                    raise HistoryTrimmed(f"{stream}: epoch changed")
            self._emit(self._take(stream, cursor))
            await self._flush()
            if len(pubs) < self.page:
                return

    async def _follow_chat(self, stream: str) -> None:
        """After a marker: subscribe to the chat's stream, then read it from the marker on
        (nothing is followed for a user who is no longer a member)."""
        if stream not in self.cursors:
            return
        if not await self.host.is_member(stream[2:], self.user_id):
            self._drop_cursor(stream)
            return
        await self._follow(stream)
        await self._fill(stream, None)

    async def _left_chat(self, stream: str, offset: int) -> None:
        """After the user's own ``member_removed`` at ``offset`` of the chat's stream."""
        if stream in self._leaving:
            self._leaving.discard(stream)  # type: ignore[union-attr]
        rejoined = await self.host.rejoined_at(stream[2:], self.user_id, offset)
        if rejoined is not None and stream in self.cursors:
            # Added back later: go on from that addition (the events between are not theirs).
            self._set_cursor(stream, rejoined - 1)
            await self._fill(stream, None)
            return
        self._drop_cursor(stream)
        await self._unfollow(stream)

    async def _restart(self) -> None:
        """The position broke (trimmed, another epoch, too much held): start from now."""
        for stream in list(self.cursors):
            if stream != self.user_stream:
                await self._unfollow(stream)
        self.cursors.clear()
        self._queue.clear()
        self._live = None
        self.epoch = await self.host.epoch()
        for stream, offset in (await self._now()).items():
            self._set_cursor(stream, offset)
        self._restarting = False
        self.outlet.resync(self.cursor_text())
