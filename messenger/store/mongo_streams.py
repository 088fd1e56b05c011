"""The streams part of the MongoDB adapter (``Store.append_stream`` and friends; the design is in
docs/REALTIME_STREAMS.md). Mixed into ``MongoStore``.

No multi-document transactions: an entry's offset is taken by the insert of its document under
the unique index ``stream_offset`` on ``(s, o)``, and nothing is reserved beforehand, so an
offset exists exactly when its entry does and a writer that dies leaves no hole.

* ``append_stream`` queues the batch behind the other appends to the same stream in this
  process; one task per stream writes what is queued, all of it together, in the order the
  calls were made (so a later call gets larger offsets, and the process never races itself;
  under load many appends take one round trip). It starts from the head this process
  remembers (``HeadCache``), else reads it: the largest ``o`` of the stream, one entry of the
  index. It writes at ``head + 1``, ``head + 2``, ... with one ``insert_many(ordered=True)``; a
  duplicate key at index *j* means another writer took that offset first: the first *j* are
  in and kept, and the rest goes on right after the offset that was taken (an entry is there,
  so no hole can open below it); after a second run in a row that stored nothing, from the
  head read again instead (``StoreError`` after ``APPEND_ATTEMPTS`` runs). The offsets are
  increasing in batch order, consecutive unless another writer's entries land in between.
  Writing the queue together and going on past a taken offset without a read keep two busy
  writers of one stream from losing to each other in lockstep (one call at a time, re-reading
  the head first, a loser kept reaching the server just behind the winner's next insert).
* A remembered head is never above the true one (heads only grow), but it can be below a trim:
  offsets above it may have been trimmed, and an insert there meets no duplicate. So after each
  run the writer reads the stream's floor (every trim raises it before deleting anything). A
  run with an entry above the floor, or whose last entry is the stream's newest, was appended
  properly (a trimmed offset always has a newer entry above it that trims never delete). A run
  entirely at or below the floor that is not the newest landed on trimmed offsets: the writer
  deletes those entries again (never the newest one) and appends their payloads after the
  head. Readers never take them meanwhile: they are at or below the floor, and a reader checks
  the floor first (``Store``'s module docstring). One case is ambiguous: entries appended
  properly and trimmed before the writer read the floor, by a trim whose cutoff reached entries
  being written (a retention shorter than the clock skew between processes). They are taken
  as trimmed offsets too, so a reader that read them in that instant gets them twice; none is
  lost or reordered.
* ``trim_streams``: one aggregate finds each stream's newest entry created before the cutoff;
  per chunk of streams, one ``bulk_write`` ``$max``-es those offsets into ``stream_floors``
  **before** one ``bulk_write`` of range deletes, each stopping below the stream's head as
  read just before (heads only grow, so the newest entry is never deleted and the next append
  continues at head + 1) and sparing the chat log's entry of its largest message seq, read
  (one aggregate per chunk, on the index ``chat_log_message_seq``) after the heads: an entry
  of a larger seq inserted after that read sits above those heads, since chat-log entries are
  appended from the head read then (below), so the largest message seq is never deleted.
* ``stream_bounds`` is one aggregate per chunk of streams: each stream's head (``$sort`` then
  ``$first`` per stream, which the index serves one entry per stream) with the floors joined
  in by ``$unionWith``.
* ``append_chat_events`` (no transaction; ``append_chat_event`` is its batch of one): (1) the
  batch's chat-log entries, appended together like any entries (one ordered ``insert_many``
  while nothing clashes; consecutive offsets unless another writer's land in between), each
  one with recipients carrying them and ``pend: true`` in its one insert; (2) one query for
  the chat's entries still ``pend``-ing up to the last offset a call per event would complete
  (the batch's last entry with recipients or markers, or of a message seq already there),
  the batch's own among them; (3) their copies, in chat-offset order, in rounds of at most
  ``FAN_OUT_ROUND_COPIES``: in a round, per user stream one append of that user's copies in
  chat-offset order, all user streams concurrently, under the unique index
  ``fanout_source`` (a duplicate there means the copy is in already, and its offset is read
  back: a no-op); (4) once a round's copies are all in, ``pend`` and ``r`` unset on its
  entries with one ``update_many``. **Order**: whoever writes entry *n*'s copy into
  ``u:<user>`` has every earlier entry of the chat that goes to that user in that stream
  already. An earlier entry is complete then (the mark comes after all its copies), or it was
  ``pend``-ing when that writer read the pending ones (offsets have no holes: it was in the
  chat log before *n*, which that writer had seen or written), so it comes before *n* in the
  same writer's copies for that stream, which go in in order. So each user stream holds a
  chat's events in chat-offset order, whatever other users' streams get meanwhile; a writer
  that dies leaves ``pend`` set and the next writer (or ``complete_fanouts``) redoes steps 3
  and 4, which only adds the missing copies. A batch of *k* events costs about the round
  trips of one (the entries' append, the pending read, an append per user stream, the mark)
  per round, not *k* times that. Entries that carry fan-out fields or a message seq are
  appended from the head read then, never a remembered one: they never land on trimmed
  offsets, so no other writer can see one that is about to move; a batch of plain entries
  (no recipients, no markers, no seq) is one append from the remembered head, like
  ``append_stream``.
  With ``markers`` (a streamed chat's entry) it is the same with the markers as recipients:
  the chat-log entry also carries ``rm: true`` (kept after step 4), so whoever completes it
  writes marker copies, each with ``m: true``. ``latest_marker`` walks the index
  ``fanout_source`` for (user stream, chat) down from the largest ``so``.
  With ``message_seq`` the chat-log entry carries ``ms`` in its one insert, under the partial
  unique index ``chat_log_message_seq`` on ``(s, ms)``. So the insert can clash on two unique
  indexes, told apart by the error's ``keyPattern`` (``mongo_docs.duplicate_on``; the index's
  name in the message on servers without it): on ``(s, o)`` the offset is taken and the insert
  goes on after it as any append; on ``(s, ms)`` another writer's entry has that seq, so
  nothing is written and that entry's offset is read back (``existed``; if a trim deleted it
  meanwhile, the insert is tried again). Then that entry's fan-out, with the chat's earlier
  incomplete ones, is completed (a no-op unless its writer died half-way). No transaction:
  the unique index alone decides which of concurrent writers of one seq writes the entry.
  ``last_message_event_seq`` is the last entry of ``chat_log_message_seq`` for the chat log
  (trims keep it).
* The epoch is a ``store_meta`` document ``{_id: "stream_epoch", value}`` made on first use
  (``migrate`` uses it): insert, and on a duplicate key read the one another process made
  first, so all agree.
* A cancelled append leaves no hole: cancelled before its turn, it stores nothing; after, what
  it stored is stored, at offsets its inserts took.

Collections and indexes are declared in ``mongo_docs.INDEXES``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, DeleteMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from messenger.clock import utcnow
from messenger.models import ChatEvent, ChatEventWrite, StreamEntry
from messenger.store.errors import StoreError, StoreUnavailable
from messenger.store.mongo_docs import (
    DUPLICATE_KEY,
    MESSAGE_EVENT_INDEX,
    Doc,
    bulk_upsert_max,
    duplicate_on,
    guarded,
    to_stream_entry,
)
from messenger.store.streams import (
    APPEND_ATTEMPTS,
    EPOCH_KEY,
    CheckedChatEvent,
    HeadCache,
    chat_log_key,
    check_stream,
    check_streams,
    new_epoch,
    recipient_keys,
)

_CHUNK = 1000  # streams per aggregate / bulk write
#: The most fan-out copies written together (``append_chat_events``): a batch's copies go in
#: rounds, so no one insert grows with the batch beyond this (a slow server's per-operation
#: timeout stays as far as for single events).
FAN_OUT_ROUND_COPIES = 256


#: An entry to append: its payload and the extra fields of its document (a fan-out copy's
#: source ``sc``/``so`` and marker flag ``m``, a chat-log entry's pending recipients ``r``,
#: ``pend`` and ``rm``, and its message seq ``ms``).
NewEntry = tuple[bytes, Doc]
#: Where an entry is: its offset, and whether it was there already (a fan-out copy of the same
#: source, or a chat-log entry of the same message seq) instead of inserted now.
Placed = tuple[int, bool]


class StreamQueue:
    """The appends to one stream waiting in this process, and the task writing them."""

    def __init__(self) -> None:
        self.waiting: list[tuple[list[NewEntry], asyncio.Future[list[Placed]]]] = []
        self.writer: asyncio.Task[None] | None = None


class MongoStreamsMixin:
    """Stream methods of ``MongoStore`` (see ``Store`` for the semantics)."""

    _db: Any  # MongoStore's database property
    _stream_queues: dict[str, StreamQueue]  # MongoStore's: appends waiting, per stream
    _stream_heads: HeadCache  # MongoStore's
    _appends: set[asyncio.Task[Any]]  # MongoStore's: writes close() lets finish
    _epoch: str | None  # MongoStore's: the epoch once read

    @guarded
    async def stream_epoch(self) -> str:
        if self._epoch is None:
            self._epoch = await _ensure_epoch(self._db)
        return self._epoch

    async def append_stream(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """See ``Store.append_stream`` and the module docstring: queued behind the appends of
        the same stream in this process, and written together with them."""
        check_stream(stream)
        return await self._append_entries(stream, [(bytes(payload), {}) for payload in payloads])

    async def _append_entries(self, stream: str, batch: list[NewEntry]) -> list[int]:
        return [offset for offset, _ in await self._place_entries(stream, batch)]

    async def _place_entries(self, stream: str, batch: list[NewEntry]) -> list[Placed]:
        if not batch:
            return []
        db = self._db  # first: a closed store raises here; a new event loop gets new queues
        queue = self._stream_queues.get(stream)
        if queue is None:
            queue = self._stream_queues[stream] = StreamQueue()
        future: asyncio.Future[list[Placed]] = asyncio.get_running_loop().create_future()
        queue.waiting.append((batch, future))
        if queue.writer is None:
            queue.writer = asyncio.ensure_future(self._write_queue(db, stream, queue))
            self._appends.add(queue.writer)
            queue.writer.add_done_callback(self._appends.discard)
        return await future  # a caller cancelled before its turn stores nothing

    async def _write_queue(
        self, db: AsyncIOMotorDatabase, stream: str, queue: StreamQueue
    ) -> None:
        """Write what waits in ``queue``, a group at a time, until nothing does. Every waiting
        caller gets its offsets, or the failure, also when this task itself is cancelled."""
        group: list[tuple[list[NewEntry], asyncio.Future[list[Placed]]]] = []
        try:
            while queue.waiting:
                group = [(batch, f) for batch, f in queue.waiting if not f.cancelled()]
                queue.waiting.clear()
                stored: list[Placed] = []
                failure: Exception | None = None
                try:
                    entries = [entry for batch, _ in group for entry in batch]
                    await _append_all(db, stream, entries, self._stream_heads, stored)
                except Exception as exc:  # handed to the callers it concerns
                    failure = exc
                start = 0
                for batch, future in group:
                    offsets = stored[start : start + len(batch)]
                    start += len(batch)
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if len(offsets) == len(batch):
                        future.set_result(offsets)
                    else:
                        future.set_exception(failure or StoreError("stream append stopped"))
                group = []
        except BaseException:
            for _, future in [*group, *queue.waiting]:
                if not future.done():
                    future.set_exception(StoreUnavailable("the stream append was cancelled"))
            queue.waiting.clear()
            raise
        finally:
            queue.writer = None
            if self._stream_queues.get(stream) is queue:
                del self._stream_queues[stream]

    @guarded
    async def read_stream(self, stream: str, after: int, limit: int) -> list[StreamEntry]:
        check_stream(stream)
        if limit <= 0:
            return []
        docs = (
            await self._db.stream_entries.find({"s": stream, "o": {"$gt": after}})
            .sort("o", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        return [to_stream_entry(doc) for doc in docs]

    @guarded
    async def stream_bounds(self, streams: Sequence[str]) -> dict[str, tuple[int, int]]:
        wanted = check_streams(streams)
        bounds: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(wanted):
            heads: dict[str, int] = {}
            floors: dict[str, int] = {}
            pipeline = [*_heads_pipeline(chunk), {"$unionWith": {
                "coll": "stream_floors", "pipeline": [{"$match": {"_id": {"$in": chunk}}}],
            }}]
            for doc in await self._db.stream_entries.aggregate(pipeline).to_list(None):
                if "head" in doc:
                    heads[doc["_id"]] = doc["head"]
                else:
                    floors[doc["_id"]] = doc.get("floor", 0)
            for stream in chunk:
                floor = floors.get(stream, 0)
                bounds[stream] = (floor, max(heads.get(stream, 0), floor))
        return bounds

    @guarded
    async def trim_streams(self, created_before: datetime) -> int:
        """See ``Store.trim_streams`` and the module docstring: floors first, then deletes."""
        db = self._db
        newest_old = {
            doc["_id"]: doc["floor"]
            for doc in await db.stream_entries.aggregate(
                [
                    {"$match": {"t": {"$lt": created_before}}},
                    {"$group": {"_id": "$s", "floor": {"$max": "$o"}}},
                ]
            ).to_list(None)
        }
        deleted = 0
        for chunk in _chunks(list(newest_old)):
            await bulk_upsert_max(
                db.stream_floors,
                [
                    UpdateOne({"_id": stream}, {"$max": {"floor": newest_old[stream]}}, upsert=True)
                    for stream in chunk
                ],
            )
            heads = await _stream_heads(db, chunk)
            # After the heads: a chat log's entry of its largest message seq, which stays too.
            keep = await _message_heads(db, [s for s in chunk if s.startswith("c:")])
            # Up to the new floor, but below the head as read now: the newest entry stays.
            result = await db.stream_entries.bulk_write(
                [
                    DeleteMany(_trim_filter(s, min(newest_old[s] + 1, heads[s]), keep.get(s)))
                    for s in chunk
                ],
                ordered=False,
            )
            deleted += result.deleted_count
        return deleted

    # -- fan-out of a chat's events (docs/REALTIME_STREAMS.md) ---------------------------------
    async def append_chat_events(
        self, chat_id: str, events: Sequence[ChatEvent]
    ) -> list[ChatEventWrite]:
        """See ``Store.append_chat_events`` and the module docstring: every event checked, the
        chat-log entries in one ordered append (a message seq already in the chat log: that
        entry), then the copies of the chat's incomplete entries up to the last one this batch
        has to complete (its own among them) together, then their marks."""
        log = chat_log_key(chat_id)
        checked = [CheckedChatEvent.of(event) for event in events]
        if not checked:
            return []
        placed = await self._place_entries(
            log, [(event.payload, _log_entry_fields(event)) for event in checked]
        )
        through = 0  # a single call per event would complete the chat's entries up to here
        own: list[Fanning] = []
        for event, (chat_offset, existed) in zip(checked, placed, strict=True):
            if existed or event.users is not None:
                through = max(through, chat_offset)
            if not existed and event.users:
                own.append(Fanning(chat_offset, event.payload, event.users, event.marker))
        copies = (await self._complete_chat(log, through, own))[1] if through else {}
        # of entries that were there, left incomplete by their writers: the copies written now
        mine = {entry.chat_offset for entry in own}
        completed = {offset: made for offset, made in copies.items() if offset not in mine}
        return [
            ChatEventWrite(chat_offset, completed.get(chat_offset, {}), existed=True) if existed
            else ChatEventWrite(chat_offset, copies.get(chat_offset, {}))
            for chat_offset, existed in placed
        ]

    async def append_chat_log(
        self,
        chat_id: str,
        payload: bytes,
        recipients: Sequence[str] | None,
        markers: Sequence[str] = (),
        *,
        message_seq: int | None = None,
    ) -> int:
        """The first step of ``append_chat_event``: the chat-log entry, with its recipients (or
        markers, and ``rm``) and marked incomplete in the same insert when there are any, and
        its ``message_seq``; its chat offset (for a ``message_seq`` already in the chat log:
        that entry's, and nothing is written)."""
        log = chat_log_key(chat_id)
        event = CheckedChatEvent.of(ChatEvent(payload, recipients, markers, message_seq))
        [(chat_offset, _)] = await self._place_entries(
            log, [(event.payload, _log_entry_fields(event))]
        )
        return chat_offset

    @guarded
    async def last_message_event_seq(self, chat_id: str) -> int:
        """See ``Store.last_message_event_seq``: the last entry of the chat log's part of the
        index ``chat_log_message_seq`` (trims keep that entry)."""
        log = chat_log_key(chat_id)
        docs = (
            await self._db.stream_entries.find(
                {"s": log, "ms": {"$exists": True}}, {"ms": 1, "_id": 0}
            )
            .sort("ms", DESCENDING)
            .limit(1)
            .to_list(None)
        )
        return int(docs[0]["ms"]) if docs else 0

    async def fan_out_entry(
        self,
        chat_id: str,
        chat_offset: int,
        payload: bytes,
        recipients: Sequence[str],
        *,
        marker: bool = False,
    ) -> dict[str, int]:
        """The fan-out step of ``append_chat_event``, without marking the chat-log entry
        complete: one entry per recipient with source ``(chat_id, chat_offset)`` (a marker copy
        with ``marker``), or the offset that source already took there; each recipient's
        offset."""
        users = recipient_keys(recipients)
        log = chat_log_key(chat_id)
        [offsets] = await self._fan_out(log, [Fanning(chat_offset, bytes(payload), users, marker)])
        return offsets

    async def _fan_out(self, log: str, entries: list[Fanning]) -> list[dict[str, int]]:
        """The copies of the chat-log entries ``entries`` (in chat-offset order): per user
        stream one append of that user's copies, in chat-offset order, all user streams
        concurrently (the module docstring says why that keeps each user stream in order);
        each entry's offset per recipient (a copy there already: its offset)."""
        chat_id = log[2:]
        copies: dict[str, list[NewEntry]] = {}  # user stream -> its copies, in order
        for entry in entries:
            source: Doc = {"sc": chat_id, "so": entry.chat_offset}
            if entry.marker:
                source["m"] = True
            for stream in entry.users.values():
                copies.setdefault(stream, []).append((entry.payload, source))
        streams = list(copies)
        appended = await asyncio.gather(
            *(self._append_entries(stream, copies[stream]) for stream in streams)
        )
        offsets = {stream: iter(taken) for stream, taken in zip(streams, appended, strict=True)}
        return [
            {user_id: next(offsets[stream]) for user_id, stream in entry.users.items()}
            for entry in entries
        ]

    @guarded
    async def complete_fanouts(self, created_before: datetime) -> int:
        """See ``Store.complete_fanouts``: per chat with an old incomplete entry, oldest
        first, its incomplete entries up to the newest old one, in chat-offset order."""
        docs = await self._db.stream_entries.find(
            {"pend": True, "t": {"$lt": created_before}}, {"s": 1, "o": 1, "t": 1, "_id": 0}
        ).to_list(None)
        chats: dict[str, tuple[datetime, int]] = {}
        for doc in docs:
            oldest, newest = chats.get(doc["s"], (doc["t"], doc["o"]))
            chats[doc["s"]] = (min(oldest, doc["t"]), max(newest, doc["o"]))
        completed = 0
        for log, (_, newest) in sorted(chats.items(), key=lambda item: item[1][0]):
            completed += (await self._complete_chat(log, newest))[0]
        return completed

    @guarded
    async def _complete_chat(
        self, log: str, through: int, own: Sequence[Fanning] = ()
    ) -> tuple[int, dict[int, dict[str, int]]]:
        """Complete the chat's incomplete entries up to chat offset ``through``, in order,
        with the entries ``own`` (this writer's, at or below ``through``, whether still
        incomplete or not): in rounds of at most ``FAN_OUT_ROUND_COPIES`` copies, the copies
        of a round's entries together (``_fan_out``), then their marks. How many incomplete
        ones it found, and the user offsets of each entry."""
        if through < 1:
            return 0, {}
        pending = (
            await self._db.stream_entries.find(
                {"pend": True, "s": log, "o": {"$lte": through}},
                {"o": 1, "p": 1, "r": 1, "rm": 1, "_id": 0},
            )
            .sort("o", ASCENDING)
            .to_list(None)
        )
        entries = {
            doc["o"]: Fanning(
                doc["o"], bytes(doc["p"]), recipient_keys(doc.get("r", [])), bool(doc.get("rm"))
            )
            for doc in pending
        }
        for entry in own:  # completed by another writer meanwhile: its copies are read back
            entries.setdefault(entry.chat_offset, entry)
        user_offsets: dict[int, dict[str, int]] = {}
        for run in _fan_out_rounds([entries[chat_offset] for chat_offset in sorted(entries)]):
            offsets = await self._fan_out(log, run)
            await self._mark_fanned(log, [entry.chat_offset for entry in run])
            user_offsets.update(
                (entry.chat_offset, copies) for entry, copies in zip(run, offsets, strict=True)
            )
        return len(pending), user_offsets

    @guarded
    async def latest_marker(self, user_id: str, chat_id: str) -> tuple[int, int] | None:
        """See ``Store.latest_marker``: the index ``fanout_source`` from the largest ``so`` down
        (further only past the chat's copies that are not markers)."""
        if not isinstance(user_id, str) or not isinstance(chat_id, str):
            return None
        docs = (
            await self._db.stream_entries.find(
                {"s": f"u:{user_id}", "sc": chat_id, "m": True}, {"o": 1, "so": 1, "_id": 0}
            )
            .sort("so", DESCENDING)
            .limit(1)
            .to_list(None)
        )
        return (int(docs[0]["o"]), int(docs[0]["so"])) if docs else None

    @guarded
    async def _mark_fanned(self, log: str, chat_offsets: list[int]) -> None:
        """Mark the chat-log entries complete (every copy of each is in)."""
        if chat_offsets:
            await self._db.stream_entries.update_many(
                {"s": log, "o": {"$in": chat_offsets}}, {"$unset": {"pend": "", "r": ""}}
            )


@dataclass(frozen=True, slots=True)
class Fanning:
    """A chat-log entry whose copies are to be written: its chat offset, payload, the user
    streams of its recipients (or markers), and whether the copies are markers."""

    chat_offset: int
    payload: bytes
    users: dict[str, str]
    marker: bool


# -- helpers ---------------------------------------------------------------------------------
def _fan_out_rounds(entries: list[Fanning]) -> Iterator[list[Fanning]]:
    """``entries`` in order, cut into runs of at most ``FAN_OUT_ROUND_COPIES`` copies (an entry
    with more copies than that is a run of its own)."""
    run: list[Fanning] = []
    copies = 0
    for entry in entries:
        if run and copies + len(entry.users) > FAN_OUT_ROUND_COPIES:
            yield run
            run, copies = [], 0
        run.append(entry)
        copies += len(entry.users)
    if run:
        yield run


def _log_entry_fields(event: CheckedChatEvent) -> Doc:
    """The fields of ``event``'s chat-log entry beyond the payload: its recipients (or
    markers, with ``rm``) and ``pend`` when there are any, and its message seq ``ms``."""
    extra: Doc = {"r": list(event.users), "pend": True} if event.users else {}
    if extra and event.marker:
        extra["rm"] = True
    if event.message_seq is not None:
        extra["ms"] = event.message_seq
    return extra


@guarded
async def _append_all(
    db: AsyncIOMotorDatabase, stream: str, entries: list[NewEntry], heads: HeadCache,
    stored: list[Placed],
) -> None:
    """Append ``entries`` in order (the module docstring), adding each offset taken properly
    (or, for a fan-out copy or a message seq already there, the offset of that entry, marked
    as there already) to ``stored`` as it goes, so that a failure part-way still tells what
    was stored."""
    fan_out = any(extra for _, extra in entries)
    # Fan-out fields or a message seq: from the true head, so never on trimmed offsets.
    head = None if fan_out else heads.get(stream)
    if head is None:
        head = await _stream_head(db, stream)
    pending = entries
    stepped = False  # this run's head is an offset another writer took, not a read one
    lost = 0
    while lost < APPEND_ATTEMPTS:
        docs = _entry_docs(stream, head, pending)
        landed, clash = await _insert_run(db, docs)
        above = await _settle_run(db, stream, docs[:landed]) if landed else None
        if above is not None:  # landed on trimmed offsets: the head is above them
            head, stepped, lost = above, False, lost + 1
            heads.put(stream, head)
            continue
        stored += [(doc["o"], False) for doc in docs[:landed]]  # appended properly
        pending = pending[landed:]
        if clash in ("source", "message"):  # the next entry is in the stream already: a no-op
            taken = await _existing_offset(db, docs[landed], clash)
            if taken is not None:
                stored.append((taken, True))
                pending = pending[1:]
            else:  # trimmed meanwhile: insert it again
                lost += 1
            head, stepped = docs[landed]["o"] - 1, False
        if not pending:
            heads.put(stream, max(offset for offset, _ in stored))
            return
        if clash in ("source", "message"):
            continue
        lost += 1
        if stepped and not landed:  # the other writer is further on: read where it is
            head, stepped = await _stream_head(db, stream), False
        else:  # another writer holds the next offset: go on right after it
            head, stepped = docs[landed]["o"], True
        heads.put(stream, head)
    raise StoreError(f"stream {stream}: other writers kept taking the next offset")


def _entry_docs(stream: str, head: int, entries: list[NewEntry]) -> list[Doc]:
    now = utcnow()
    return [
        {**extra, "_id": ObjectId(), "s": stream, "o": head + 1 + i, "p": payload, "t": now}
        for i, (payload, extra) in enumerate(entries)
    ]


async def _insert_run(db: AsyncIOMotorDatabase, docs: list[Doc]) -> tuple[int, str | None]:
    """Insert ``docs`` in order; how many went in before one clashed, and on what: ``"offset"``
    (another writer's entry took the offset), ``"source"`` (a fan-out copy of the same source
    is in the stream already), ``"message"`` (the chat log has an entry of that message seq
    already), or None (all went in)."""
    try:
        await db.stream_entries.insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise StoreUnavailable(f"mongodb: {exc}") from exc
        [error, *_] = exc.details.get("writeErrors") or [{}]
        if error.get("code") != DUPLICATE_KEY:
            raise StoreError(f"mongodb: stream entry: {error or exc}") from exc
        if duplicate_on(error, "ms", MESSAGE_EVENT_INDEX):
            return int(error["index"]), "message"
        if duplicate_on(error, "sc"):
            return int(error["index"]), "source"
        if not duplicate_on(error, "o"):
            raise StoreError(f"mongodb: stream entry: {error or exc}") from exc
        return int(error["index"]), "offset"
    return len(docs), None


async def _existing_offset(db: AsyncIOMotorDatabase, doc: Doc, clash: str) -> int | None:
    """The offset of the entry in ``doc``'s stream with ``doc``'s source (``clash``
    ``"source"``) or message seq (``"message"``); None: not there (any more)."""
    if clash == "source":
        query: Doc = {"s": doc["s"], "sc": doc["sc"], "so": doc["so"]}
    else:
        query = {"s": doc["s"], "ms": doc["ms"]}
    found = await db.stream_entries.find_one(query, {"o": 1, "_id": 0})
    return None if found is None else int(found["o"])


async def _settle_run(db: AsyncIOMotorDatabase, stream: str, landed: list[Doc]) -> int | None:
    """Check a run of inserted entries against the floor (the module docstring): None if it
    was appended properly; otherwise its entries are deleted again and the stream's head, above
    them, is returned."""
    floor_doc = await db.stream_floors.find_one({"_id": stream})
    floor = floor_doc.get("floor", 0) if floor_doc else 0
    last = landed[-1]["o"]
    if last > floor:
        return None
    head = await _stream_head(db, stream)
    if head == last:
        return None
    # Landed on trimmed offsets: all below ``head``, so the newest entry stays.
    await db.stream_entries.delete_many({"_id": {"$in": [doc["_id"] for doc in landed]}})
    return head


async def _stream_head(db: AsyncIOMotorDatabase, stream: str) -> int:
    """The stream's largest stored offset (0 for none): one entry of the index."""
    docs = (
        await db.stream_entries.find({"s": stream}, {"o": 1, "_id": 0})
        .sort("o", DESCENDING)
        .limit(1)
        .to_list(None)
    )
    return docs[0]["o"] if docs else 0


def _heads_pipeline(streams: list[str]) -> list[Doc]:
    """Each stream's head, one entry per stream: ``$sort`` in the index's (reverse) order, then
    the first entry per stream."""
    return [
        {"$match": {"s": {"$in": streams}}},
        {"$sort": {"s": -1, "o": -1}},
        {"$group": {"_id": "$s", "head": {"$first": "$o"}}},
    ]


async def _stream_heads(db: AsyncIOMotorDatabase, streams: list[str]) -> dict[str, int]:
    docs = await db.stream_entries.aggregate(_heads_pipeline(streams)).to_list(None)
    heads = {doc["_id"]: doc["head"] for doc in docs}
    return {stream: heads.get(stream, 0) for stream in streams}


async def _message_heads(db: AsyncIOMotorDatabase, logs: list[str]) -> dict[str, int]:
    """The offset of each chat log's entry of its largest message seq (logs without one are
    left out): ``$sort`` in the index ``chat_log_message_seq``'s (reverse) order, then the
    first entry per chat log."""
    if not logs:
        return {}
    docs = await db.stream_entries.aggregate([
        {"$match": {"s": {"$in": logs}, "ms": {"$exists": True}}},
        {"$sort": {"s": -1, "ms": -1}},
        {"$group": {"_id": "$s", "o": {"$first": "$o"}}},
    ]).to_list(None)
    return {doc["_id"]: int(doc["o"]) for doc in docs}


def _trim_filter(stream: str, below: int, keep: int | None) -> Doc:
    """The entries a trim deletes: offsets below ``below``, except ``keep``."""
    offsets: Doc = {"$lt": below}
    if keep is not None:
        offsets["$ne"] = keep
    return {"s": stream, "o": offsets}


async def _ensure_epoch(db: AsyncIOMotorDatabase) -> str:
    """The stored epoch, made now if there is none (the first insert wins)."""
    doc = await db.store_meta.find_one({"_id": EPOCH_KEY})
    if doc is None:
        with contextlib.suppress(DuplicateKeyError):  # another process made it first: theirs
            await db.store_meta.insert_one({"_id": EPOCH_KEY, "value": new_epoch()})
        doc = await db.store_meta.find_one({"_id": EPOCH_KEY})
    if doc is None:
        raise StoreError("mongodb: the stream epoch vanished after it was made")
    return str(doc["value"])


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
