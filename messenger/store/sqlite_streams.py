"""The streams part of the SQLite adapter (``Store.append_stream`` and friends; the design is in
docs/REALTIME_STREAMS.md). Mixed into ``SQLiteStore``; every method runs on the store's one
worker thread through ``_run``.

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
  stored offset, so the next append continues at head + 1.
* ``stream_bounds`` is one statement for the whole list (``json_each``), each stream's head and
  floor a lookup of one index entry.
* ``append_chat_event`` is one transaction: the chat-log entry (with its recipients, marking
  its fan-out incomplete), the earlier incomplete entries of the chat completed first (there are
  none unless the steps below were run alone), one entry per recipient at the head of their
  user stream (or the offset its source already took there: the unique index
  ``stream_entries_source``), then the recipients cleared (complete). Its steps,
  ``append_chat_log`` and ``fan_out_entry``, are each a transaction of their own too, so a test
  can stop between them like a writer that died; ``complete_fanouts`` finishes such entries.
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
from messenger.models import ChatEventWrite, StreamEntry
from messenger.store.errors import StoreError
from messenger.store.sqlite_parts import Row, write_transaction
from messenger.store.streams import (
    EPOCH_KEY,
    chat_log_key,
    check_stream,
    check_streams,
    recipient_keys,
)

# -- queries (module constants so tests can EXPLAIN QUERY PLAN them) -----------------------------
SQL_STREAM_HEAD = "SELECT COALESCE(max(offset), 0) FROM stream_entries WHERE stream = ?"
SQL_INSERT_STREAM_ENTRY = """
    INSERT INTO stream_entries (stream, offset, payload, created_at) VALUES (?, ?, ?, ?)
"""
SQL_READ_STREAM = """
    SELECT stream, offset, payload, created_at, source_chat, source_offset FROM stream_entries
    WHERE stream = ? AND offset > ? ORDER BY offset LIMIT ?
"""
SQL_INSERT_CHAT_LOG_ENTRY = """
    INSERT INTO stream_entries (stream, offset, payload, created_at, recipients)
    VALUES (?, ?, ?, ?, ?)
"""
SQL_INSERT_FANOUT_ENTRY = """
    INSERT INTO stream_entries (stream, offset, payload, created_at, source_chat, source_offset)
    VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_SOURCE_OFFSET = """
    SELECT offset FROM stream_entries
    WHERE stream = ? AND source_chat = ? AND source_offset = ? AND source_chat IS NOT NULL
"""
# INDEXED BY: only the incomplete entries, never the chat's whole log.
SQL_PENDING_FANOUTS = """
    SELECT offset, payload, recipients FROM stream_entries INDEXED BY stream_entries_fanout_pending
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
SQL_TRIM_STREAM = "DELETE FROM stream_entries WHERE stream = ? AND offset <= ?"
SQL_STREAM_EPOCH = "SELECT value FROM store_meta WHERE key = ?"


class SQLiteStreamsMixin:
    """Stream methods of ``SQLiteStore`` (see ``Store`` for the semantics)."""

    _run: Callable[..., Any]
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
        rows = await self._run(
            lambda conn: conn.execute(SQL_READ_STREAM, (stream, after, limit)).fetchall()
        )
        return [_entry(row) for row in rows]

    async def stream_bounds(self, streams: Sequence[str]) -> dict[str, tuple[int, int]]:
        wanted = check_streams(streams)
        if not wanted:
            return {}
        keys = orjson.dumps(wanted).decode()
        rows = await self._run(lambda conn: conn.execute(SQL_STREAM_BOUNDS, (keys,)).fetchall())
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
                    # The newest entry stays: the head is read from the entries.
                    deleted += conn.execute(
                        SQL_TRIM_STREAM, (stream, min(floor, head - 1))
                    ).rowcount
            return deleted

        return await self._run(op)


    # -- fan-out of a chat's events (docs/REALTIME_STREAMS.md) ---------------------------------
    async def append_chat_event(
        self, chat_id: str, payload: bytes, recipients: Sequence[str] | None
    ) -> ChatEventWrite:
        """See ``Store.append_chat_event`` and the module docstring: one transaction."""
        log = chat_log_key(chat_id)
        users = None if recipients is None else recipient_keys(recipients)
        body = bytes(payload)

        def op(conn: sqlite3.Connection) -> ChatEventWrite:
            with write_transaction(conn):
                chat_offset = _log_entry(conn, log, body, users)
                if users is None:
                    return ChatEventWrite(chat_offset, {})
                _complete_pending(conn, log, chat_offset - 1)
                user_offsets = _fan_out(conn, chat_id, chat_offset, body, users)
                conn.execute(SQL_MARK_FANNED, (log, chat_offset))
            return ChatEventWrite(chat_offset, user_offsets)

        return await self._run(op)

    async def append_chat_log(
        self, chat_id: str, payload: bytes, recipients: Sequence[str] | None
    ) -> int:
        """The first step of ``append_chat_event`` alone: the chat-log entry (its fan-out
        incomplete when there are recipients); its chat offset."""
        log = chat_log_key(chat_id)
        users = None if recipients is None else recipient_keys(recipients)

        def op(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                return _log_entry(conn, log, bytes(payload), users)

        return await self._run(op)

    async def fan_out_entry(
        self, chat_id: str, chat_offset: int, payload: bytes, recipients: Sequence[str]
    ) -> dict[str, int]:
        """The fan-out step of ``append_chat_event`` alone, to the given recipients, without
        marking the chat-log entry complete: each recipient's offset (idempotent)."""
        users = recipient_keys(recipients)
        chat_log_key(chat_id)

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            with write_transaction(conn):
                return _fan_out(conn, chat_id, chat_offset, bytes(payload), users)

        return await self._run(op)

    async def complete_fanouts(self, created_before: datetime) -> int:
        """See ``Store.complete_fanouts``: one transaction, oldest chat first."""
        cutoff_ms = to_millis(created_before)

        def op(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                chats = conn.execute(SQL_OLD_PENDING_FANOUTS, (cutoff_ms,)).fetchall()
                return sum(_complete_pending(conn, log, newest) for log, newest, _ in chats)

        return await self._run(op)


def _log_entry(
    conn: sqlite3.Connection, log: str, payload: bytes, users: dict[str, str] | None
) -> int:
    """Insert the chat-log entry at the head + 1 (inside the caller's transaction)."""
    [(head,)] = conn.execute(SQL_STREAM_HEAD, (log,)).fetchall()
    pending = orjson.dumps(list(users)).decode() if users else None
    conn.execute(SQL_INSERT_CHAT_LOG_ENTRY, (log, head + 1, payload, to_millis(utcnow()), pending))
    return head + 1


def _fan_out(
    conn: sqlite3.Connection, chat_id: str, chat_offset: int, payload: bytes,
    users: dict[str, str],
) -> dict[str, int]:
    """One entry per user with source ``(chat_id, chat_offset)``, or the offset its source
    already took in that user's stream."""
    now_ms = to_millis(utcnow())
    offsets: dict[str, int] = {}
    for user_id, stream in users.items():
        taken = conn.execute(SQL_SOURCE_OFFSET, (stream, chat_id, chat_offset)).fetchone()
        if taken is not None:
            offsets[user_id] = taken[0]
            continue
        [(head,)] = conn.execute(SQL_STREAM_HEAD, (stream,)).fetchall()
        conn.execute(
            SQL_INSERT_FANOUT_ENTRY, (stream, head + 1, payload, now_ms, chat_id, chat_offset)
        )
        offsets[user_id] = head + 1
    return offsets


def _complete_pending(conn: sqlite3.Connection, log: str, through: int) -> int:
    """Complete the chat's incomplete entries up to chat offset ``through``, in order."""
    chat_id = log[2:]
    pending = conn.execute(SQL_PENDING_FANOUTS, (log, through)).fetchall()
    for chat_offset, payload, recipients in pending:
        users = recipient_keys(orjson.loads(recipients))
        _fan_out(conn, chat_id, chat_offset, bytes(payload), users)
        conn.execute(SQL_MARK_FANNED, (log, chat_offset))
    return len(pending)


def _entry(row: Row) -> StreamEntry:
    stream, offset, payload, created_ms, source_chat, source_offset = row
    source = None if source_chat is None else (source_chat, source_offset)
    return StreamEntry(stream, offset, bytes(payload), from_millis(created_ms), source)
