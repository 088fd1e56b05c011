"""The streams part of the SQLite adapter (``Store.append_stream`` and friends; the design is in
docs/REALTIME_STREAMS.md). Mixed into ``SQLiteStore``; every method that writes runs on the
store's one worker thread through ``_run``, the reads (``read_stream``, ``stream_bounds``,
``last_message_event_seq``, ``latest_marker``) on the loop's thread through ``_read``.

* ``append_stream`` reads the stream's head (its largest stored offset, one step down the
  primary key) and inserts the batch at the offsets after it, in one ``BEGIN IMMEDIATE``
  transaction. That transaction excludes every other writer of the file, this process or
  another, from the read to the commit, so the head it reads is the true one and the batch is
  always consecutive; the primary key on ``(stream, offset)`` is the backstop. Nothing is
  reserved, so a failed or rolled-back append leaves no hole. No head cache: reading the head
  inside the transaction costs one index lookup.
* ``trim_streams``, in one transaction: per stream, the largest offset created before the
  cutoff raises the stream's row in ``stream_floors`` (never lowers it), then the entries at or
  below it are deleted except the stream's newest, which stays: the head is always the largest
  stored offset, so the next append continues at head + 1. A chat log's entry of its largest
  message seq stays too (one lookup of ``stream_entries_message_seq``), so
  ``last_message_event_seq`` is always that index's last entry for the chat log. So does any
  entry created at or after the cutoff (only if the clock stepped back can one sit below the
  floor): a copy that is still readable was made with its chat-log entry, at the same
  ``created_at``, and reads its payload from it.
* A copy written in the transaction of its chat-log entry (``append_chat_events``) stores an
  empty payload: ``read_stream`` reads the entry's (one primary-key lookup). Copies written
  later (completing a stopped writer's fan-out) carry their own.
* ``stream_bounds`` is one statement for the whole list (``json_each``), each stream's head and
  floor a lookup of one index entry.
* ``append_chat_event`` is one transaction: the chat-log entry (with its recipients, marking
  its fan-out incomplete), the earlier incomplete entries of the chat completed first (there are
  none unless the steps below were run alone), one entry per recipient at the head of their
  user stream (or the offset its source already took there: the unique index
  ``stream_entries_source``), then the recipients cleared (complete). Its steps,
  ``append_chat_log`` and ``fan_out_entry``, are each a transaction of their own too, so a test
  can stop between them like a writer that died; ``complete_fanouts`` finishes such entries.
  With ``markers`` (a streamed chat's entry) it is the same with the markers as recipients:
  the chat-log entry also has ``marker_fan_out`` set (so a completer writes marker copies too),
  and each copy has ``marker`` set. ``latest_marker`` is the last entry of the index
  ``stream_entries_source`` for (user stream, chat) that is a marker.
  With ``message_seq`` the chat-log entry stores it in ``message_seq``; the transaction first
  looks the seq up in the partial unique index ``stream_entries_message_seq`` and, when the
  chat log has it, writes nothing and returns that entry (``existed``), after completing the
  chat's incomplete entries up to it. ``BEGIN IMMEDIATE`` excludes every other writer between
  the lookup and the insert, so the check is exact; the index is the backstop.
* ``append_chat_events`` (and so ``append_chat_event``, its batch of one) is one transaction
  for the whole batch: each event as above, in order. Only entries at or below the chat log's
  head at the start can be incomplete (every entry the batch writes is complete before the
  commit), so those are completed once, before the first event that needs it (the first
  fan-out, or a message seq already in the chat log), not again per event. One ``BEGIN
  IMMEDIATE`` and one commit (one fsync) per batch, however many events.
* The epoch is made by the schema step that creates ``store_meta`` (one process runs it, in its
  write transaction) and read once per store object.

Tables are created by the streams step of ``sqlite_schema.MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from messenger.clock import from_millis, to_millis, utcnow
from messenger.models import ChatEvent, ChatEventWrite, Message, StreamEntry
from messenger.store.errors import StoreError
from messenger.store.sqlite_parts import Row, chunks, marks, write_transaction
from messenger.store.streams import (
    EPOCH_KEY,
    CheckedChatEvent,
    chat_log_key,
    check_message_seq,
    check_stream,
    check_streams,
    fan_out_targets,
    recipient_keys,
)

# -- queries (module constants so tests can EXPLAIN QUERY PLAN them) -----------------------------
SQL_STREAM_HEAD = "SELECT COALESCE(max(offset), 0) FROM stream_entries WHERE stream = ?"
SQL_INSERT_STREAM_ENTRY = """
    INSERT INTO stream_entries (stream, offset, payload, created_at) VALUES (?, ?, ?, ?)
"""
# A copy written with its chat-log entry stores no payload (an empty one): it is that entry's.
SQL_READ_STREAM = """
    SELECT e.stream, e.offset,
           CASE WHEN e.source_chat IS NOT NULL AND length(e.payload) = 0
                THEN (SELECT l.payload FROM stream_entries AS l
                      WHERE l.stream = 'c:' || e.source_chat AND l.offset = e.source_offset)
                ELSE e.payload END,
           e.created_at, e.source_chat, e.source_offset, e.marker
    FROM stream_entries AS e WHERE e.stream = ? AND e.offset > ? ORDER BY e.offset LIMIT ?
"""
SQL_INSERT_CHAT_LOG_ENTRY = """
    INSERT INTO stream_entries
        (stream, offset, payload, created_at, recipients, marker_fan_out, message_seq)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_MESSAGE_EVENT_OFFSET = """
    SELECT offset FROM stream_entries
    WHERE stream = ? AND message_seq = ? AND message_seq IS NOT NULL
"""
SQL_MESSAGE_EVENT_OFFSETS = """
    SELECT message_seq, offset FROM stream_entries
    WHERE stream = ? AND message_seq IN ({marks}) AND message_seq IS NOT NULL
"""
# INDEXED BY: one step down the chat log's message seqs, never the chat's whole log.
SQL_LAST_MESSAGE_EVENT = """
    SELECT offset, message_seq FROM stream_entries INDEXED BY stream_entries_message_seq
    WHERE stream = ? AND message_seq IS NOT NULL ORDER BY message_seq DESC LIMIT 1
"""
SQL_INSERT_FANOUT_ENTRY = """
    INSERT INTO stream_entries
        (stream, offset, payload, created_at, source_chat, source_offset, marker)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_SOURCE_OFFSET = """
    SELECT offset FROM stream_entries
    WHERE stream = ? AND source_chat = ? AND source_offset = ? AND source_chat IS NOT NULL
"""
# INDEXED BY: only the incomplete entries, never the chat's whole log.
SQL_PENDING_FANOUTS = """
    SELECT offset, payload, recipients, marker_fan_out
    FROM stream_entries INDEXED BY stream_entries_fanout_pending
    WHERE stream = ? AND offset <= ? AND recipients IS NOT NULL ORDER BY offset
"""
SQL_MARK_FANNED = "UPDATE stream_entries SET recipients = NULL WHERE stream = ? AND offset = ?"
SQL_OLD_PENDING_FANOUTS = """
    SELECT stream, max(offset), min(created_at) FROM stream_entries
    INDEXED BY stream_entries_fanout_pending
    WHERE recipients IS NOT NULL AND created_at < ? GROUP BY stream ORDER BY min(created_at)
"""
SQL_STREAM_BOUNDS = """
    SELECT wanted.value,
           COALESCE((SELECT f.floor FROM stream_floors AS f WHERE f.stream = wanted.value), 0),
           COALESCE((SELECT max(e.offset) FROM stream_entries AS e
                     WHERE e.stream = wanted.value), 0)
    FROM json_each(?) AS wanted
"""
# INDEXED BY: read only the old entries, not every stream's whole range.
SQL_NEWEST_OLD_ENTRIES = """
    SELECT stream, max(offset) FROM stream_entries INDEXED BY stream_entries_created_at
    WHERE created_at < ? GROUP BY stream
"""
SQL_RAISE_STREAM_FLOOR = """
    INSERT INTO stream_floors (stream, floor) VALUES (?, ?)
    ON CONFLICT (stream) DO UPDATE SET floor = max(floor, excluded.floor)
"""
# ``created_at < cutoff`` too: an entry made at or after the cutoff stays whatever its offset
# (entries at or below the floor are never read; a chat-log entry whose copies are still
# readable keeps its payload for them, also if the clock stepped back between two entries).
SQL_TRIM_STREAM = """
    DELETE FROM stream_entries WHERE stream = ? AND offset <= ? AND created_at < ?
"""
SQL_TRIM_STREAM_KEEPING = """
    DELETE FROM stream_entries WHERE stream = ? AND offset <= ? AND offset != ? AND created_at < ?
"""
SQL_STREAM_EPOCH = "SELECT value FROM store_meta WHERE key = ?"
# INDEXED BY: the chat's copies in the user stream, newest first, not the whole stream.
SQL_LATEST_MARKER = """
    SELECT offset, source_offset FROM stream_entries INDEXED BY stream_entries_source
    WHERE stream = ? AND source_chat = ? AND source_chat IS NOT NULL AND marker = 1
    ORDER BY source_offset DESC LIMIT 1
"""


class SQLiteStreamsMixin:
    """Stream methods of ``SQLiteStore`` (see ``Store`` for the semantics)."""

    _run: Callable[..., Any]
    _read: Callable[..., Any]
    _epoch: str | None  # SQLiteStore's: the epoch once read

    async def stream_epoch(self) -> str:
        if self._epoch is None:
            row = await self._run(lambda conn: conn.execute(SQL_STREAM_EPOCH, (EPOCH_KEY,))
                                  .fetchone())
            if row is None:  # the streams schema step always makes it
                raise StoreError("sqlite: the store has no stream epoch (not migrated?)")
            self._epoch = row[0]
        return self._epoch

    async def append_stream(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """See ``Store.append_stream`` and the module docstring: one transaction, consecutive
        offsets after the head it reads."""
        check_stream(stream)
        batch = [bytes(payload) for payload in payloads]
        if not batch:
            return []

        def op(conn: sqlite3.Connection) -> list[int]:
            now_ms = to_millis(utcnow())
            with write_transaction(conn):
                [(head,)] = conn.execute(SQL_STREAM_HEAD, (stream,)).fetchall()
                conn.executemany(
                    SQL_INSERT_STREAM_ENTRY,
                    [(stream, head + 1 + i, payload, now_ms) for i, payload in enumerate(batch)],
                )
            return list(range(head + 1, head + 1 + len(batch)))

        return await self._run(op)

    async def read_stream(self, stream: str, after: int, limit: int) -> list[StreamEntry]:
        check_stream(stream)
        if limit <= 0:
            return []
        rows = await self._read(
            lambda conn: conn.execute(SQL_READ_STREAM, (stream, after, limit)).fetchall()
        )
        return [_entry(row) for row in rows]

    async def stream_bounds(self, streams: Sequence[str]) -> dict[str, tuple[int, int]]:
        wanted = check_streams(streams)
        if not wanted:
            return {}
        keys = orjson.dumps(wanted).decode()
        rows = await self._read(lambda conn: conn.execute(SQL_STREAM_BOUNDS, (keys,)).fetchall())
        found = {stream: (floor, head) for stream, floor, head in rows}
        return {stream: found[stream] for stream in wanted}

    async def trim_streams(self, created_before: datetime) -> int:
        """See ``Store.trim_streams`` and the module docstring: one transaction; per stream one
        floor upsert and one range delete that stops below the stream's newest entry."""
        cutoff_ms = to_millis(created_before)

        def op(conn: sqlite3.Connection) -> int:
            deleted = 0
            with write_transaction(conn):
                newest_old = conn.execute(SQL_NEWEST_OLD_ENTRIES, (cutoff_ms,)).fetchall()
                conn.executemany(SQL_RAISE_STREAM_FLOOR, newest_old)  # before any delete
                for stream, floor in newest_old:
                    [(head,)] = conn.execute(SQL_STREAM_HEAD, (stream,)).fetchall()
                    # The newest entry stays: the head is read from the entries. So does a
                    # chat log's entry of its largest message seq.
                    through = min(floor, head - 1)
                    keep = conn.execute(SQL_LAST_MESSAGE_EVENT, (stream,)).fetchone()
                    if keep is not None and keep[0] <= through:
                        trimmed = conn.execute(SQL_TRIM_STREAM_KEEPING,
                                               (stream, through, keep[0], cutoff_ms))
                    else:
                        trimmed = conn.execute(SQL_TRIM_STREAM, (stream, through, cutoff_ms))
                    deleted += trimmed.rowcount
            return deleted

        return await self._run(op)

    # -- fan-out of a chat's events (docs/REALTIME_STREAMS.md) ---------------------------------
    async def append_chat_events(
        self, chat_id: str, events: Sequence[ChatEvent]
    ) -> list[ChatEventWrite]:
        """See ``Store.append_chat_events`` and the module docstring: the whole batch in one
        transaction, every event checked before it."""
        log = chat_log_key(chat_id)
        planned = [CheckedChatEvent.of(event) for event in events]
        if not planned:
            return []

        def op(conn: sqlite3.Connection) -> list[ChatEventWrite]:
            with write_transaction(conn):
                return _ChatEventBatch(conn, chat_id, log).write(planned)

        return await self._run(op)

    async def append_chat_log(
        self,
        chat_id: str,
        payload: bytes,
        recipients: Sequence[str] | None,
        markers: Sequence[str] = (),
        *,
        message_seq: int | None = None,
    ) -> int:
        """The first step of ``append_chat_event`` alone: the chat-log entry (its fan-out
        incomplete when there are recipients or markers); its chat offset (with
        ``message_seq`` already in the chat log: that entry's, and nothing is written)."""
        log = chat_log_key(chat_id)
        users, marker = fan_out_targets(recipients, markers)
        seq = check_message_seq(message_seq)

        def op(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                existing = _message_event(conn, log, seq)
                if existing is not None:
                    return existing
                return _log_entry(conn, log, bytes(payload), users, marker, seq)

        return await self._run(op)

    async def last_message_event_seq(self, chat_id: str) -> int:
        """See ``Store.last_message_event_seq``: the last entry of the chat log's part of the
        index ``stream_entries_message_seq`` (trims keep that entry)."""
        log = chat_log_key(chat_id)
        row = await self._read(lambda conn: conn.execute(SQL_LAST_MESSAGE_EVENT, (log,)).fetchone())
        return 0 if row is None else int(row[1])

    async def fan_out_entry(
        self,
        chat_id: str,
        chat_offset: int,
        payload: bytes,
        recipients: Sequence[str],
        *,
        marker: bool = False,
    ) -> dict[str, int]:
        """The fan-out step of ``append_chat_event`` alone, to the given recipients (marker
        copies with ``marker``), without marking the chat-log entry complete: each
        recipient's offset (idempotent)."""
        users = recipient_keys(recipients)
        chat_log_key(chat_id)

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            with write_transaction(conn):
                return _fan_out(conn, chat_id, chat_offset, bytes(payload), users, marker)

        return await self._run(op)

    async def latest_marker(self, user_id: str, chat_id: str) -> tuple[int, int] | None:
        """See ``Store.latest_marker``: one step down the index ``stream_entries_source``
        (further only past the chat's copies that are not markers)."""
        row = await self._read(
            lambda conn: conn.execute(SQL_LATEST_MARKER, (f"u:{user_id}", chat_id)).fetchone()
        )
        return None if row is None else (row[0], row[1])

    async def complete_fanouts(self, created_before: datetime) -> int:
        """See ``Store.complete_fanouts``: one transaction, oldest chat first."""
        cutoff_ms = to_millis(created_before)

        def op(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                chats = conn.execute(SQL_OLD_PENDING_FANOUTS, (cutoff_ms,)).fetchall()
                return sum(len(_complete_pending(conn, log, newest)) for log, newest, _ in chats)

        return await self._run(op)


def write_message_events(
    conn: sqlite3.Connection, chat_id: str, messages: Sequence[Message],
    event_of: Callable[[Message], ChatEvent],
) -> list[tuple[ChatEvent, ChatEventWrite]] | None:
    """Inside the caller's transaction (``append_messages_with_events``): the events of the
    messages it just stored, in seq order, when the chat log holds the event of every message
    before them; else None and nothing written."""
    if not messages:
        return []
    log = chat_log_key(chat_id)
    row = conn.execute(SQL_LAST_MESSAGE_EVENT, (log,)).fetchone()
    if (0 if row is None else int(row[1])) != messages[0].seq - 1:
        return None
    events = [event_of(message) for message in messages]
    writes = _ChatEventBatch(conn, chat_id, log).write([CheckedChatEvent.of(e) for e in events])
    return list(zip(events, writes, strict=True))


#: The payload of a copy written in the transaction of its chat-log entry: none of its own
#: (``SQL_READ_STREAM`` reads the entry's; the two have the same ``created_at``).
_CHAT_LOG_PAYLOAD = b""


class _ChatEventBatch:
    """The body of ``append_chat_events``, inside its transaction. ``BEGIN IMMEDIATE`` excludes
    every other writer, so each stream's head is read once and counted on from there; the rows
    go in with one ``executemany`` per table part instead of a statement each. A chat-log entry
    written here is complete before the commit, so it is inserted complete (no recipients),
    and its copies need no check for an earlier copy: its chat offset is new. Its copies
    carry no payload of their own (``_CHAT_LOG_PAYLOAD``): a read takes the entry's, which a
    trim keeps as long as any copy is readable (same ``created_at``; ``SQL_TRIM_STREAM``)."""

    def __init__(self, conn: sqlite3.Connection, chat_id: str, log: str) -> None:
        self.conn = conn
        self.chat_id = chat_id
        self.log = log
        self.now_ms = to_millis(utcnow())
        self._heads: dict[str, int] = {}
        self._log_rows: list[Row] = []
        self._copy_rows: list[Row] = []

    def write(self, planned: Sequence[CheckedChatEvent]) -> list[ChatEventWrite]:
        conn, log = self.conn, self.log
        # Only entries at or below the head as it is now can be incomplete: each one written
        # below is complete before the transaction ends.
        [(head,)] = conn.execute(SQL_STREAM_HEAD, (log,)).fetchall()
        offset = head
        existing = _message_events(conn, log, [e.message_seq for e in planned])
        completed = 0  # the chat's incomplete entries are completed up to here
        copies: dict[int, dict[str, int]] = {}  # of the entries completed here, by chat offset
        writes: list[ChatEventWrite] = []
        for event in planned:
            seq = event.message_seq
            found = existing.get(seq) if seq is not None else None
            if found is not None:  # left incomplete only by a writer that stopped
                if min(found, head) > completed:
                    copies.update(self._complete_pending(found))
                    completed = min(found, head)
                writes.append(ChatEventWrite(found, copies.get(found, {}), existed=True))
                continue
            if event.users is not None and min(offset, head) > completed:
                copies.update(self._complete_pending(offset))
                completed = min(offset, head)
            offset += 1
            if seq is not None:
                existing[seq] = offset
            users = event.users
            self._log_rows.append((
                log, offset, event.payload, self.now_ms, None,
                int(bool(users) and event.marker), seq,
            ))
            writes.append(ChatEventWrite(offset, self._copies(offset, event) if users else {}))
        self._flush()
        return writes

    def _copies(self, chat_offset: int, event: CheckedChatEvent) -> dict[str, int]:
        assert event.users is not None
        offsets: dict[str, int] = {}
        heads, rows, marker = self._heads, self._copy_rows, int(event.marker)
        for user_id, stream in event.users.items():
            head = heads.get(stream)
            if head is None:
                [(head,)] = self.conn.execute(SQL_STREAM_HEAD, (stream,)).fetchall()
            heads[stream] = head = head + 1
            rows.append((stream, head, _CHAT_LOG_PAYLOAD, self.now_ms, self.chat_id,
                         chat_offset, marker))
            offsets[user_id] = head
        return offsets

    def _complete_pending(self, through: int) -> dict[int, dict[str, int]]:
        """Complete a stopped writer's entries up to ``through``: they write with statements
        of their own, so what is held here goes in first and the heads are read again."""
        self._flush()
        self._heads.clear()
        return _complete_pending(self.conn, self.log, through)

    def _flush(self) -> None:
        if self._log_rows:
            self.conn.executemany(SQL_INSERT_CHAT_LOG_ENTRY, self._log_rows)
            self._log_rows = []
        if self._copy_rows:
            self.conn.executemany(SQL_INSERT_FANOUT_ENTRY, self._copy_rows)
            self._copy_rows = []


def _message_events(
    conn: sqlite3.Connection, log: str, seqs: Sequence[int | None]
) -> dict[int, int]:
    """The chat offsets of the chat log's entries of these message seqs, by seq."""
    wanted = sorted({seq for seq in seqs if seq is not None})
    found: dict[int, int] = {}
    for chunk in chunks(wanted):
        sql = SQL_MESSAGE_EVENT_OFFSETS.format(marks=marks(chunk))
        found.update(conn.execute(sql, (log, *chunk)).fetchall())
    return found


def _log_entry(
    conn: sqlite3.Connection, log: str, payload: bytes, users: dict[str, str] | None,
    marker: bool, message_seq: int | None,
) -> int:
    """Insert the chat-log entry at the head + 1 (inside the caller's transaction), pending
    with ``users`` (their copies markers with ``marker``) when there are any, with its
    ``message_seq`` (the caller checked it is not in the chat log yet)."""
    [(head,)] = conn.execute(SQL_STREAM_HEAD, (log,)).fetchall()
    pending = orjson.dumps(list(users)).decode() if users else None
    conn.execute(
        SQL_INSERT_CHAT_LOG_ENTRY,
        (log, head + 1, payload, to_millis(utcnow()), pending, int(bool(pending) and marker),
         message_seq),
    )
    return head + 1


def _message_event(conn: sqlite3.Connection, log: str, message_seq: int | None) -> int | None:
    """The chat offset of the chat log's entry of ``message_seq`` (None: none, or no seq)."""
    if message_seq is None:
        return None
    row = conn.execute(SQL_MESSAGE_EVENT_OFFSET, (log, message_seq)).fetchone()
    return None if row is None else int(row[0])


def _fan_out(
    conn: sqlite3.Connection, chat_id: str, chat_offset: int, payload: bytes,
    users: dict[str, str], marker: bool,
) -> dict[str, int]:
    """One entry per user with source ``(chat_id, chat_offset)`` (a marker copy with
    ``marker``), or the offset its source already took in that user's stream."""
    now_ms = to_millis(utcnow())
    offsets: dict[str, int] = {}
    for user_id, stream in users.items():
        taken = conn.execute(SQL_SOURCE_OFFSET, (stream, chat_id, chat_offset)).fetchone()
        if taken is not None:
            offsets[user_id] = taken[0]
            continue
        [(head,)] = conn.execute(SQL_STREAM_HEAD, (stream,)).fetchall()
        conn.execute(
            SQL_INSERT_FANOUT_ENTRY,
            (stream, head + 1, payload, now_ms, chat_id, chat_offset, int(marker)),
        )
        offsets[user_id] = head + 1
    return offsets


def _complete_pending(
    conn: sqlite3.Connection, log: str, through: int
) -> dict[int, dict[str, int]]:
    """Complete the chat's incomplete entries up to chat offset ``through``, in order; each
    one's copies (every recipient's offset), by chat offset."""
    chat_id = log[2:]
    pending = conn.execute(SQL_PENDING_FANOUTS, (log, through)).fetchall()
    completed: dict[int, dict[str, int]] = {}
    for chat_offset, payload, recipients, marker in pending:
        users = recipient_keys(orjson.loads(recipients))
        completed[chat_offset] = _fan_out(conn, chat_id, chat_offset, bytes(payload), users,
                                          bool(marker))
        conn.execute(SQL_MARK_FANNED, (log, chat_offset))
    return completed


def _entry(row: Row) -> StreamEntry:
    stream, offset, payload, created_ms, source_chat, source_offset, marker = row
    if payload is None:  # a copy whose chat-log entry is gone: trim_streams never does that
        raise StoreError(f"sqlite: {stream} offset {offset}: its chat-log entry is missing")
    source = None if source_chat is None else (source_chat, source_offset)
    return StreamEntry(
        stream, offset, bytes(payload), from_millis(created_ms), source, bool(marker)
    )
