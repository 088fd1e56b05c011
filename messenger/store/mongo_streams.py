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
  continues at head + 1).
* ``stream_bounds`` is one aggregate per chunk of streams: each stream's head (``$sort`` then
  ``$first`` per stream, which the index serves one entry per stream) with the floors joined
  in by ``$unionWith``.
* ``append_chat_event`` (no transaction): (1) the chat-log entry, appended like any entry,
  carrying the recipients and ``pend: true`` in its one insert; (2) the chat's earlier entries
  still ``pend``-ing, completed in chat-offset order (steps 3 and 4 for each); (3) one entry per
  recipient with source ``sc``/``so``, into each user stream concurrently, under the unique
  index ``fanout_source``: a duplicate there means the copy is in already, and its offset is
  read back (a no-op); (4) ``pend`` and ``r`` unset. Step 3 for entry *n* starts only when
  every earlier entry of the chat has all its copies in, so a user sees a chat's events in
  chat-offset order; a writer that dies leaves ``pend`` set and the next writer (or
  ``complete_fanouts``) redoes steps 3 and 4, which only adds the missing copies. Entries that
  carry fan-out fields are appended from the head read then, never a remembered one: they
  never land on trimmed offsets, so no other writer can see one that is about to move.
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
from datetime import datetime
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, DeleteMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from messenger.clock import utcnow
from messenger.models import ChatEventWrite, StreamEntry
from messenger.store.errors import StoreError, StoreUnavailable
from messenger.store.mongo_docs import (
    DUPLICATE_KEY,
    Doc,
    bulk_upsert_max,
    duplicate_on,
    guarded,
    to_stream_entry,
)
from messenger.store.streams import (
    APPEND_ATTEMPTS,
    EPOCH_KEY,
    HeadCache,
    chat_log_key,
    check_stream,
    check_streams,
    new_epoch,
    recipient_keys,
)

_CHUNK = 1000  # streams per aggregate / bulk write


#: An entry to append: its payload and the extra fields of its document (a fan-out copy's
#: source ``sc``/``so``, a chat-log entry's pending recipients ``r`` and ``pend``).
NewEntry = tuple[bytes, Doc]


class StreamQueue:
    """The appends to one stream waiting in this process, and the task writing them."""

    def __init__(self) -> None:
        self.waiting: list[tuple[list[NewEntry], asyncio.Future[list[int]]]] = []
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
        if not batch:
            return []
        db = self._db  # first: a closed store raises here; a new event loop gets new queues
        queue = self._stream_queues.get(stream)
        if queue is None:
            queue = self._stream_queues[stream] = StreamQueue()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
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
        group: list[tuple[list[NewEntry], asyncio.Future[list[int]]]] = []
        try:
            while queue.waiting:
                group = [(batch, f) for batch, f in queue.waiting if not f.cancelled()]
                queue.waiting.clear()
                stored: list[int] = []
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
            # Up to the new floor, but below the head as read now: the newest entry stays.
            result = await db.stream_entries.bulk_write(
                [
                    DeleteMany({"s": s, "o": {"$lt": min(newest_old[s] + 1, heads[s])}})
                    for s in chunk
                ],
                ordered=False,
            )
            deleted += result.deleted_count
        return deleted


    # -- fan-out of a chat's events (docs/REALTIME_STREAMS.md) ---------------------------------
    async def append_chat_event(
        self, chat_id: str, payload: bytes, recipients: Sequence[str] | None
    ) -> ChatEventWrite:
        """See ``Store.append_chat_event`` and the module docstring: the chat-log entry, the
        chat's earlier incomplete entries, this one's fan-out, then the mark."""
        chat_offset = await self.append_chat_log(chat_id, payload, recipients)
        if recipients is None:
            return ChatEventWrite(chat_offset, {})
        log = chat_log_key(chat_id)
        await self._complete_chat(log, chat_offset - 1)
        user_offsets = await self.fan_out_entry(chat_id, chat_offset, payload, recipients)
        await self._mark_fanned(log, chat_offset)
        return ChatEventWrite(chat_offset, user_offsets)

    async def append_chat_log(
        self, chat_id: str, payload: bytes, recipients: Sequence[str] | None
    ) -> int:
        """The first step of ``append_chat_event``: the chat-log entry, with its recipients
        and marked incomplete in the same insert when there are any; its chat offset."""
        log = chat_log_key(chat_id)
        users = None if recipients is None else recipient_keys(recipients)
        extra: Doc = {"r": list(users), "pend": True} if users else {}
        [chat_offset] = await self._append_entries(log, [(bytes(payload), extra)])
        return chat_offset

    async def fan_out_entry(
        self, chat_id: str, chat_offset: int, payload: bytes, recipients: Sequence[str]
    ) -> dict[str, int]:
        """The fan-out step of ``append_chat_event``, without marking the chat-log entry
        complete: one entry per recipient with source ``(chat_id, chat_offset)``, or the offset
        that source already took there; each recipient's offset."""
        users = recipient_keys(recipients)
        chat_log_key(chat_id)
        source: Doc = {"sc": chat_id, "so": chat_offset}
        body = bytes(payload)
        offsets = await asyncio.gather(
            *(self._append_entries(stream, [(body, source)]) for stream in users.values())
        )
        return {user_id: offset for user_id, [offset] in zip(users, offsets, strict=True)}

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
            completed += await self._complete_chat(log, newest)
        return completed

    @guarded
    async def _complete_chat(self, log: str, through: int) -> int:
        """Complete the chat's incomplete entries up to chat offset ``through``, in order."""
        if through < 1:
            return 0
        pending = (
            await self._db.stream_entries.find({"pend": True, "s": log, "o": {"$lte": through}})
            .sort("o", ASCENDING)
            .to_list(None)
        )
        for doc in pending:
            await self.fan_out_entry(log[2:], doc["o"], bytes(doc["p"]), doc.get("r", []))
            await self._mark_fanned(log, doc["o"])
        return len(pending)

    @guarded
    async def _mark_fanned(self, log: str, chat_offset: int) -> None:
        await self._db.stream_entries.update_one(
            {"s": log, "o": chat_offset}, {"$unset": {"pend": "", "r": ""}}
        )


# -- helpers ---------------------------------------------------------------------------------
@guarded
async def _append_all(
    db: AsyncIOMotorDatabase, stream: str, entries: list[NewEntry], heads: HeadCache,
    stored: list[int],
) -> None:
    """Append ``entries`` in order (the module docstring), adding each offset taken properly
    (or, for a fan-out copy already there, the offset its source took) to ``stored`` as it
    goes, so that a failure part-way still tells what was stored."""
    fan_out = any(extra for _, extra in entries)
    head = None if fan_out else heads.get(stream)  # a fan-out starts from the true head
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
        stored += [doc["o"] for doc in docs[:landed]]  # appended properly
        pending = pending[landed:]
        if clash == "source":  # the next entry's source is in the stream already: a no-op
            taken = await _source_offset(db, docs[landed])
            if taken is not None:
                stored.append(taken)
                pending = pending[1:]
            else:  # trimmed meanwhile: insert it again
                lost += 1
            head, stepped = docs[landed]["o"] - 1, False
        if not pending:
            heads.put(stream, max(stored))
            return
        if clash == "source":
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
    is in the stream already), or None (all went in)."""
    try:
        await db.stream_entries.insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise StoreUnavailable(f"mongodb: {exc}") from exc
        [error, *_] = exc.details.get("writeErrors") or [{}]
        if error.get("code") != DUPLICATE_KEY:
            raise StoreError(f"mongodb: stream entry: {error or exc}") from exc
        if duplicate_on(error, "sc"):
            return int(error["index"]), "source"
        if not duplicate_on(error, "o"):
            raise StoreError(f"mongodb: stream entry: {error or exc}") from exc
        return int(error["index"]), "offset"
    return len(docs), None


async def _source_offset(db: AsyncIOMotorDatabase, doc: Doc) -> int | None:
    """The offset of the entry in ``doc``'s stream with ``doc``'s source (None: not there)."""
    found = await db.stream_entries.find_one(
        {"s": doc["s"], "sc": doc["sc"], "so": doc["so"]}, {"o": 1, "_id": 0}
    )
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
