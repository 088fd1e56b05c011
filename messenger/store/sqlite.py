"""Embedded SQLite adapter (stdlib ``sqlite3``).

Two connections. Writes (and every call that writes) run on one connection used only from one
dedicated worker thread: they hop onto it with ``loop.run_in_executor``, so one store object's
writes run one at a time in submission order, and a write waiting for another process's lock
never blocks the event loop. Reads run on the event loop's own thread, on a second connection
that is ``query_only``: a history page or a chat list costs tens of microseconds in SQLite's C
code, far less than the hop to a thread and back (measured: the hop, and the two threads taking
turns at the GIL, halved the REST read rate). A read sees every write whose call has returned
(each read is its own transaction on the WAL's latest commit); it does not wait for a write
still in flight, so a caller that needs one must await it first, as every caller does. That
read connection never waits for a lock (``busy_timeout`` 0): in the rare case SQLite answers
``SQLITE_BUSY`` to a WAL reader (another connection recovering the WAL index), the read is run
again on the worker thread, which waits as writes do. Until the worker has opened the file (and
switched it to WAL), reads go to the worker too. A read yields to the event loop once before
it runs, as a hop to the worker would, so a caller reading in a loop starves nobody.

Several processes may share one file (``make cluster``: N servers on one machine); nothing a
call relies on is remembered between calls except the stream epoch, which never changes once
made. Against the other processes:

* Every call that writes more than one statement, or reads before it writes, runs in one
  ``BEGIN IMMEDIATE`` transaction (``sqlite_parts.write_transaction``): it holds the file's
  write lock from its first read to its commit, so what it read (a chat's ``last_seq``, a
  stream's head, a ``client_msg_id``, membership) is still true when it writes. Unique indexes
  are the backstop.
* Every call that reads with more than one statement runs in one deferred read transaction
  (``sqlite_parts.read_transaction``): all its statements see one snapshot (WAL), e.g. a chat
  row and its members, however other processes commit meanwhile. It blocks no writer.
* A lock another process holds is waited for up to ``BUSY_TIMEOUT_MS`` (SQLite's busy
  handler); only then does the call fail, with ``StoreUnavailable`` (an HTTP 503, never a
  500). Switching a new file to WAL is the one step SQLite does not wait for by itself (it
  answers ``SQLITE_BUSY`` at once while another process holds the file): the connection retries
  it with backoff for the same time.
* Schema steps (``migrate``) each run in a write transaction that first re-reads
  ``user_version``, so processes starting together on a new file apply each step once.
* No transaction is kept open between calls, so WAL checkpoints (automatic, every ~1,000
  pages) are never held back by this adapter's readers; ``journal_size_limit`` truncates the
  WAL file back to ``JOURNAL_SIZE_LIMIT_BYTES`` after a large transaction grew it.

The database runs in WAL mode. How a commit reaches the disk is the ``SQLITE_SYNCHRONOUS``
setting (``synchronous``), ``full`` by default:

* ``full`` (default): every commit fsyncs the WAL before it returns, so an acknowledged write
  survives a power cut or an OS crash, not only a killed process. Sends are stored in batches
  (one transaction per ``ChatActor`` batch), so their messages cost one fsync per batch, not
  per message; each stream write (``append_stream``, ``append_chat_event``: one event with its
  fan-out) is one transaction, so one fsync, of its own.
* ``normal``: a commit does not wait for fsync (the WAL is synced at checkpoints). Faster on
  slow disks; a killed process loses nothing, but a power cut or OS crash can lose the last
  acknowledged transactions (the file is never corrupted).
* ``extra``: ``full`` plus an fsync of the directory when the WAL is reset.

The schema lives in ``sqlite_schema.py``, the email methods in ``sqlite_email.py``, the stream
methods (gap-free offsets) in ``sqlite_streams.py``, what these modules share (the write
transaction, the users row) in ``sqlite_parts.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import orjson

from messenger.clock import from_millis, to_millis, utcnow
from messenger.ids import new_id
from messenger.models import (
    AppendResult,
    Attachment,
    Chat,
    ChatEvent,
    ChatEventWrite,
    ChatType,
    ChatView,
    Message,
    MessageDraft,
    RefreshSpend,
    RefreshToken,
    SenderNotMember,
    SpendResult,
    Upload,
    UploadStatus,
    User,
)
from messenger.names import name_key, prefix_bounds
from messenger.store.base import Store, check_seq_range
from messenger.store.errors import EmailTaken, StoreError, StoreUnavailable
from messenger.store.recent_messages import RecentMessages
from messenger.store.sqlite_email import SQLiteEmailMixin
from messenger.store.sqlite_parts import (
    USER_COLUMNS,
    Row,
    chunks,
    marks,
    read_transaction,
    user_from_row,
    write_transaction,
)
from messenger.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from messenger.store.sqlite_streams import SQLiteStreamsMixin, write_message_events

BUSY_TIMEOUT_MS = 5_000
PURGE_INTERVAL_SECONDS = 3600.0
CACHE_KIB = 32 * 1024
MMAP_BYTES = 256 * 1024 * 1024
#: The read connection's page cache: small, since it reads through the memory map (the OS page
#: cache) anyway; a 32 MiB one filled with the whole file's pages as 5,000 sessions opened
#: (3.7 KiB of RSS per session in scripts/bench_memory), for no measurable read speed.
READER_CACHE_KIB = 2 * 1024
#: What a reset WAL file is truncated to (``PRAGMA journal_size_limit``).
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
#: ``PRAGMA synchronous`` modes the store accepts (``SQLITE_SYNCHRONOUS``), by name and number.
SYNCHRONOUS_MODES = {"normal": 1, "full": 2, "extra": 3}

# -- queries (module constants so scripts/bench_store can EXPLAIN QUERY PLAN them) ------------
CHAT_COLUMNS = "id, type, title, created_at, last_seq, last_activity_at, streamed"
MESSAGE_COLUMNS = "id, chat_id, seq, sender_id, text, client_msg_id, created_at, attachments"
UPLOAD_COLUMNS = (
    "id, owner_id, object_key, filename, content_type, size, status, created_at, attached"
)

SQL_MESSAGE_BY_CLIENT_ID = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?
"""
SQL_MESSAGE_BY_ID = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND chat_id = ?"
SQL_NEWEST_MESSAGES = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY seq DESC LIMIT ?
"""
SQL_MESSAGES_BEFORE = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq < ?
    ORDER BY seq DESC LIMIT ?
"""
#: A message row as its API JSON, encoded by SQLite itself (``Message.to_json()``'s fields in
#: its order; ``created_at`` from the stored milliseconds with integer arithmetic only).
MESSAGE_JSON = """json_object(
    'id', id, 'chat_id', chat_id, 'seq', seq, 'sender_id', sender_id, 'text', text,
    'client_msg_id', client_msg_id,
    'created_at', strftime('%Y-%m-%dT%H:%M:%S', created_at / 1000, 'unixepoch')
                  || printf('.%03dZ', created_at % 1000),
    'attachments', json(coalesce(attachments, '[]')))"""
#: A page's message ids, newest first, of a member only: the page and the membership check are
#: one statement (one snapshot). Each id's JSON comes from the recent ones the store encoded
#: (``RecentMessages``), else from ``SQL_MESSAGES_JSON``.
SQL_IS_MEMBER = "EXISTS (SELECT 1 FROM chat_members WHERE chat_id = :chat AND user_id = :member)"
SQL_NEWEST_MESSAGE_IDS = f"""
    SELECT id FROM messages WHERE chat_id = :chat AND {SQL_IS_MEMBER}
    ORDER BY seq DESC LIMIT :limit
"""
SQL_MESSAGE_IDS_BEFORE = f"""
    SELECT id FROM messages WHERE chat_id = :chat AND seq < :before AND {SQL_IS_MEMBER}
    ORDER BY seq DESC LIMIT :limit
"""
SQL_MESSAGES_JSON = f"SELECT id, {MESSAGE_JSON} FROM messages WHERE id IN ({{marks}})"
SQL_MESSAGES_IN_SEQ_RANGE = f"""
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq >= ? AND seq <= ?
    ORDER BY seq LIMIT ?
"""
SQL_INSERT_MESSAGE = """
    INSERT INTO messages (id, chat_id, seq, sender_id, text, client_msg_id, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_INSERT_MESSAGE_WITH_ATTACHMENTS = f"""
    INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
SQL_ATTACH = """
    INSERT OR IGNORE INTO message_attachments (attachment_id, message_id, chat_id) VALUES (?, ?, ?)
"""
SQL_MARK_ATTACHED = "UPDATE uploads SET attached = 1 WHERE id = ? AND attached = 0"
SQL_MESSAGES_WITH_ATTACHMENT = f"""
    SELECT {", ".join("m." + column for column in MESSAGE_COLUMNS.split(", "))}
    FROM message_attachments AS a JOIN messages AS m ON m.id = a.message_id
    WHERE a.attachment_id IN ({{marks}})
"""
SQL_UNATTACHED_UPLOADS = f"""
    SELECT {UPLOAD_COLUMNS} FROM uploads WHERE attached = 0 AND created_at < ?
    ORDER BY created_at LIMIT ?
"""
SQL_BUMP_CHAT = """
    UPDATE chats SET last_seq = ?, last_activity_at = max(last_activity_at, ?) WHERE id = ?
"""
SQL_RAISE_READ = """
    INSERT INTO read_positions (chat_id, user_id, seq) VALUES (?, ?, ?)
    ON CONFLICT (chat_id, user_id) DO UPDATE SET seq = max(seq, excluded.seq)
    RETURNING seq
"""
SQL_MEMBERS_AMONG = """
    SELECT user_id FROM chat_members WHERE chat_id = ? AND user_id IN ({marks})
"""
SQL_CHAT_MEMBERS = """
    SELECT chat_id, user_id FROM chat_members WHERE chat_id IN ({marks})
    ORDER BY chat_id, position
"""
_VIEW_TAIL = """
    COALESCE(r.seq, 0), m.id, m.chat_id, m.seq, m.sender_id, m.text, m.client_msg_id,
    m.created_at, m.attachments
"""
SQL_CHAT_VIEW = f"""
    SELECT c.id, c.type, c.title, c.created_at, c.last_seq, c.last_activity_at, c.streamed,
           {_VIEW_TAIL}
    FROM chats AS c
    LEFT JOIN read_positions AS r ON r.chat_id = c.id AND r.user_id = ?
    LEFT JOIN messages AS m ON m.chat_id = c.id AND m.seq = c.last_seq
    WHERE c.id = ?
"""
# The member's chats are picked first (membership index, then a sort of that user's chats
# only), and only the page that survives LIMIT is joined with read positions and last messages.
SQL_CHAT_VIEWS = f"""
    WITH top AS MATERIALIZED (
        SELECT c.id, c.type, c.title, c.created_at, c.last_seq, c.last_activity_at, c.streamed
        FROM chat_members AS cm CROSS JOIN chats AS c ON c.id = cm.chat_id
        WHERE cm.user_id = ?
        ORDER BY c.last_activity_at DESC, c.id DESC
        LIMIT ?
    )
    SELECT top.*, {_VIEW_TAIL}
    FROM top
    LEFT JOIN read_positions AS r ON r.chat_id = top.id AND r.user_id = ?
    LEFT JOIN messages AS m ON m.chat_id = top.id AND m.seq = top.last_seq
    ORDER BY top.last_activity_at DESC, top.id DESC
"""
# A user's chats through the membership index, the flagged ones kept.
SQL_STREAMED_CHATS = """
    SELECT c.id FROM chat_members AS cm CROSS JOIN chats AS c ON c.id = cm.chat_id
    WHERE cm.user_id = ? AND c.streamed = 1
"""
SQL_SET_CHAT_STREAMED = "UPDATE chats SET streamed = 1 WHERE id = ? AND streamed = 0"
SQL_TOKEN_STATE = """
    SELECT t.family_id, t.user_id, t.expires_at, f.revoked
    FROM refresh_tokens AS t JOIN token_families AS f ON f.id = t.family_id
    WHERE t.jti = ?
"""
# A name search among a user's contacts (API_CONTRACT.md §4): the contacts come from the
# user's memberships (chat_members_user, then each chat's members by primary key), each is read
# by id, its key compared as a range [low, high) (high NULL: none); only the matches are sorted.
# So the cost is the user's contacts, whatever the number of users.
SQL_SEARCH_CONTACTS = f"""
    WITH contacts AS MATERIALIZED (
        SELECT DISTINCT other.user_id AS id
        FROM chat_members AS mine CROSS JOIN chat_members AS other ON other.chat_id = mine.chat_id
        WHERE mine.user_id = :user AND other.user_id != :user
    )
    SELECT {", ".join("u." + column for column in USER_COLUMNS.split(", "))}
    FROM contacts CROSS JOIN users AS u ON u.id = contacts.id
    WHERE u.name_key >= :low AND (:high IS NULL OR u.name_key < :high)
    ORDER BY u.name_key, u.id
    LIMIT :limit
"""
# A user's contacts (real-time layer: presence).
SQL_CONTACTS = """
    WITH small AS MATERIALIZED (
        SELECT mine.chat_id FROM chat_members AS mine
        WHERE mine.user_id = ?
          AND (SELECT COUNT(*) FROM (SELECT 1 FROM chat_members AS c
                                     WHERE c.chat_id = mine.chat_id LIMIT ? + 1)) <= ?
    )
    SELECT DISTINCT other.user_id
    FROM small CROSS JOIN chat_members AS other ON other.chat_id = small.chat_id
    WHERE other.user_id != ?
"""


class SQLiteStore(SQLiteEmailMixin, SQLiteStreamsMixin, Store):
    """``Store`` on one SQLite file; see the module docstring for the threading model."""

    backend = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}"
            )
        self.path = Path(path)
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._reader: sqlite3.Connection | None = None  # touched only on the loop's thread
        # history reads, on the loop's thread only: messages, and pages' JSON by message
        self._recent: RecentMessages[Message] = RecentMessages()
        self._rendered: RecentMessages[bytes] = RecentMessages()
        self._closed = False
        self._last_purge = time.monotonic()  # migrate() purges at start
        self._epoch: str | None = None  # the stream epoch, read once

    # -- plumbing ----------------------------------------------------------------------------
    async def _run[T](self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the worker thread."""
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._call, fn)
        except RuntimeError as exc:  # executor already shut down
            raise StoreUnavailable("the sqlite store is closed") from exc
        return await future

    async def _read[T](self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read-only ``fn(connection)`` here, on the loop's thread (the module
        docstring says when it goes to the worker thread instead)."""
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        if self._conn is None:  # the worker has not opened (nor switched to WAL) the file yet
            return await self._run(fn)
        # Yield once, as a call to the worker would: a caller reading in a loop must not starve
        # the event loop (nor the worker's replies) while it reads.
        await asyncio.sleep(0)
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        try:
            return self._call(fn, self._reader or self._open_reader())
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.OperationalError) and _is_busy(cause):
                return await self._run(fn)
            raise

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in ("query_only = ON", "busy_timeout = 0",
                           f"cache_size = -{READER_CACHE_KIB}", f"mmap_size = {MMAP_BYTES}",
                           "temp_store = MEMORY"):
                conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            conn.close()
            raise
        self._reader = conn
        return conn

    def _call[T](self, fn: Callable[[sqlite3.Connection], T],
                 conn: sqlite3.Connection | None = None) -> T:
        try:
            return fn(conn or self._connection())
        except sqlite3.IntegrityError as exc:  # e.g. a member id that is no user
            raise StoreError(f"sqlite: {exc}") from exc
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in this adapter, not an outage
        except sqlite3.DatabaseError as exc:  # locked, I/O error, corrupt or missing file, ...
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise StoreUnavailable("the sqlite store is closed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            _use_wal(conn, self.path)
            for pragma in (
                f"synchronous = {self.synchronous.upper()}",
                "foreign_keys = ON",
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                f"cache_size = -{CACHE_KIB}",
                f"mmap_size = {MMAP_BYTES}",
                f"journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}",
                "temp_store = MEMORY",
            ):
                conn.execute(f"PRAGMA {pragma}")
            # the users' name keys (sqlite_schema.py), written in SQL by the schema step only
            conn.create_function("messenger_name_key", 1, name_key, deterministic=True)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # best effort: statistics for the next run's query planner
        finally:
            conn.close()

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for number in range(_user_version(conn), SCHEMA_VERSION):
                with write_transaction(conn):
                    if _user_version(conn) > number:  # another process got there first
                        continue
                    for statement in MIGRATIONS[number]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number + 1}")
            if (version := _user_version(conn)) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema v{version}; this code knows v{SCHEMA_VERSION}"
                )
            self._purge_expired_tokens(conn)

        await self._run(op)

    def _purge_expired_tokens(self, conn: sqlite3.Connection) -> None:
        """Delete expired refresh tokens and the families left empty (the SQLite counterpart of
        MongoDB's TTL indexes); runs at migrate and then at most once per ``PURGE_INTERVAL``."""
        self._last_purge = time.monotonic()
        with write_transaction(conn):
            conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (to_millis(utcnow()),))
            conn.execute(
                "DELETE FROM token_families WHERE NOT EXISTS"
                " (SELECT 1 FROM refresh_tokens AS t WHERE t.family_id = token_families.id)"
            )

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())

    async def synchronous_mode(self) -> str:
        """The ``PRAGMA synchronous`` mode the store's connection runs in, read back from SQLite
        (``"normal"``, ``"full"`` or ``"extra"``)."""
        number = await self._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        names = {value: name for name, value in SYNCHRONOUS_MODES.items()}
        return names.get(number, str(number))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_connection)
        finally:
            self._executor.shutdown(wait=False)

    # -- users -------------------------------------------------------------------------------
    async def create_user(self, email: str, password_hash: bytes, display_name: str) -> User:
        user = User(new_id(), email, display_name, bytes(password_hash), utcnow())

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO users ({USER_COLUMNS}, name_key) VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (user.id, email, display_name, user.password_hash, to_millis(user.created_at),
                     name_key(display_name)),
                )
            except sqlite3.IntegrityError as exc:
                if "users.email" in str(exc):
                    raise EmailTaken(email) from None
                raise

        await self._run(op)
        return user

    async def get_user(self, user_id: str) -> User | None:
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        )
        return user_from_row(row) if row else None

    async def get_user_by_email(self, email: str) -> User | None:
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,)
            ).fetchone()
        )
        return user_from_row(row) if row else None

    async def get_users(self, user_ids: Sequence[str]) -> list[User]:
        rows = await self._rows_by_ids(USER_COLUMNS, "users", user_ids)
        return [user_from_row(row) for row in rows]

    async def set_display_name(self, user_id: str, display_name: str) -> User | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"UPDATE users SET display_name = ?, name_key = ? WHERE id = ?"
                f" RETURNING {USER_COLUMNS}",
                (display_name, name_key(display_name), user_id),
            ).fetchone()
        )
        return user_from_row(row) if row else None

    async def search_contacts(self, user_id: str, prefix: str, limit: int) -> list[User]:
        low, high = prefix_bounds(prefix)
        params = {"user": user_id, "low": low, "high": high, "limit": max(limit, 0)}
        rows = await self._run(
            lambda conn: conn.execute(SQL_SEARCH_CONTACTS, params).fetchall()
        )
        return [user_from_row(row) for row in rows]

    async def _rows_by_ids(self, columns: str, table: str, ids: Sequence[str]) -> list[Row]:
        """``columns`` of the rows of ``table`` whose id is among ``ids``."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        def op(conn: sqlite3.Connection) -> list[Row]:
            rows: list[Row] = []
            with read_transaction(conn):
                for chunk in chunks(wanted):
                    rows += conn.execute(
                        f"SELECT {columns} FROM {table} WHERE id IN ({marks(chunk)})", chunk
                    ).fetchall()
            return rows

        return await self._read(op)

    # -- refresh tokens ----------------------------------------------------------------------
    async def add_refresh_token(
        self, jti: str, family_id: str, user_id: str, expires_at: datetime
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if time.monotonic() - self._last_purge > PURGE_INTERVAL_SECONDS:
                self._purge_expired_tokens(conn)
            with write_transaction(conn):
                conn.execute(
                    "INSERT INTO token_families (id, user_id) VALUES (?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    (family_id, user_id),
                )
                conn.execute(
                    "INSERT INTO refresh_tokens (jti, family_id, user_id, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (jti, family_id, user_id, to_millis(expires_at)),
                )

        await self._run(op)

    async def spend_refresh_token(self, jti: str) -> SpendResult:
        def op(conn: sqlite3.Connection) -> SpendResult:
            with write_transaction(conn):
                row = conn.execute(SQL_TOKEN_STATE, (jti,)).fetchone()
                if row is None:
                    return SpendResult(RefreshSpend.UNKNOWN, None)
                family_id, user_id, expires_ms, revoked = row
                token = RefreshToken(jti, family_id, user_id, from_millis(expires_ms))
                if revoked:
                    return SpendResult(RefreshSpend.REVOKED, token)
                if expires_ms <= to_millis(utcnow()):
                    return SpendResult(RefreshSpend.UNKNOWN, None)
                spent = conn.execute(
                    "UPDATE refresh_tokens SET spent = 1 WHERE jti = ? AND spent = 0", (jti,)
                ).rowcount
                return SpendResult(RefreshSpend.SPENT if spent else RefreshSpend.REUSED, token)

        return await self._run(op)

    async def revoke_token_family(self, family_id: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE token_families SET revoked = 1 WHERE id = ?", (family_id,)
            )
        )

    async def revoke_user_tokens(self, user_id: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE token_families SET revoked = 1 WHERE user_id = ?", (user_id,)
            )
        )

    # -- chats -------------------------------------------------------------------------------
    async def create_chat(
        self,
        chat_type: ChatType,
        member_ids: Sequence[str],
        title: str | None,
        direct_key: str | None,
    ) -> tuple[Chat, bool]:
        members = tuple(dict.fromkeys(member_ids))

        def op(conn: sqlite3.Connection) -> tuple[Chat, bool]:
            with write_transaction(conn):
                if direct_key is not None:
                    row = conn.execute(
                        f"SELECT {CHAT_COLUMNS} FROM chats WHERE direct_key = ?", (direct_key,)
                    ).fetchone()
                    if row is not None:
                        return _chat(row, _members(conn, [row[0]])[row[0]]), False
                now = utcnow()
                chat = Chat(new_id(), chat_type, title, members, now, 0, now)
                conn.execute(
                    "INSERT INTO chats (id, type, title, direct_key, created_at, last_seq,"
                    " last_activity_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (chat.id, str(chat_type), title, direct_key, to_millis(now), to_millis(now)),
                )
                conn.executemany(
                    "INSERT INTO chat_members (chat_id, user_id, position) VALUES (?, ?, ?)",
                    [(chat.id, user_id, i) for i, user_id in enumerate(members)],
                )
                return chat, True

        return await self._run(op)

    async def get_chat(self, chat_id: str) -> Chat | None:
        def op(conn: sqlite3.Connection) -> Chat | None:
            with read_transaction(conn):
                row = conn.execute(
                    f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?", (chat_id,)
                ).fetchone()
                return _chat(row, _members(conn, [chat_id])[chat_id]) if row else None

        return await self._read(op)

    async def set_chat_streamed(self, chat_id: str) -> None:
        await self._run(lambda conn: conn.execute(SQL_SET_CHAT_STREAMED, (chat_id,)))

    async def streamed_chats(self, user_id: str) -> list[str]:
        rows = await self._read(
            lambda conn: conn.execute(SQL_STREAMED_CHATS, (user_id,)).fetchall()
        )
        return [chat_id for (chat_id,) in rows]

    async def get_chat_view(self, chat_id: str, user_id: str) -> ChatView | None:
        def op(conn: sqlite3.Connection) -> ChatView | None:
            with read_transaction(conn):
                row = conn.execute(SQL_CHAT_VIEW, (user_id, chat_id)).fetchone()
                return _chat_view(row, _members(conn, [chat_id])[chat_id]) if row else None

        return await self._read(op)

    async def list_chat_views(self, user_id: str, limit: int) -> list[ChatView]:
        def op(conn: sqlite3.Connection) -> list[ChatView]:
            with read_transaction(conn):
                rows = conn.execute(SQL_CHAT_VIEWS, (user_id, max(limit, 0), user_id)).fetchall()
                members = _members(conn, [row[0] for row in rows])
            return [_chat_view(row, members[row[0]]) for row in rows]

        return await self._read(op)

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int:
        """See ``Store.mark_read``. For a chat that does not exist: 0, and nothing stored."""

        def op(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                row = conn.execute("SELECT last_seq FROM chats WHERE id = ?", (chat_id,)).fetchone()
                if row is None:
                    return 0
                target = max(0, min(seq, row[0]))
                [(position,)] = conn.execute(SQL_RAISE_READ, (chat_id, user_id, target)).fetchall()
                return position

        return await self._run(op)

    async def add_members(self, chat_id: str, user_ids: Sequence[str]) -> Chat:
        """See ``Store.add_members``. A user id of no user raises ``StoreError`` (foreign key)."""
        wanted = list(dict.fromkeys(user_ids))

        def op(conn: sqlite3.Connection) -> Chat:
            with write_transaction(conn):
                row = conn.execute(
                    f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?", (chat_id,)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no chat {chat_id}")
                current = _members(conn, [chat_id])[chat_id]
                new = [user_id for user_id in wanted if user_id not in set(current)]
                if new:
                    [(top,)] = conn.execute(
                        "SELECT COALESCE(max(position), -1) FROM chat_members WHERE chat_id = ?",
                        (chat_id,),
                    ).fetchall()
                    conn.executemany(
                        "INSERT INTO chat_members (chat_id, user_id, position) VALUES (?, ?, ?)",
                        [(chat_id, user_id, top + 1 + i) for i, user_id in enumerate(new)],
                    )
                return _chat(row, (*current, *new))

        return await self._run(op)

    async def remove_member(self, chat_id: str, user_id: str) -> Chat:
        def op(conn: sqlite3.Connection) -> Chat:
            with write_transaction(conn):
                row = conn.execute(
                    f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?", (chat_id,)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no chat {chat_id}")
                conn.execute(
                    "DELETE FROM chat_members WHERE chat_id = ? AND user_id = ?", (chat_id, user_id)
                )
                return _chat(row, _members(conn, [chat_id])[chat_id])

        return await self._run(op)

    async def contact_ids(self, user_id: str, max_chat_size: int | None = None) -> set[str]:
        limit = max_chat_size if max_chat_size is not None else 2**31
        rows = await self._read(
            lambda conn: conn.execute(SQL_CONTACTS, (user_id, limit, limit, user_id)).fetchall()
        )
        return {row[0] for row in rows}

    # -- messages ----------------------------------------------------------------------------
    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]:
        """See ``Store.append_messages``. Raises ``StoreError`` if the chat does not exist."""
        if not drafts:
            return []

        senders = sorted({draft.sender_id for draft in drafts})

        def op(conn: sqlite3.Connection) -> list[AppendResult | SenderNotMember]:
            with write_transaction(conn):
                return _append_in_transaction(conn, chat_id, drafts, senders)

        return await self._run(op)

    async def append_messages_with_events(
        self, chat_id: str, drafts: Sequence[MessageDraft],
        event_of: Callable[[Message], ChatEvent],
    ) -> tuple[list[AppendResult | SenderNotMember], list[tuple[ChatEvent, ChatEventWrite]] | None]:
        """See ``Store.append_messages_with_events``: ``append_messages`` and the events in one
        transaction (the events' part: ``sqlite_streams.write_message_events``)."""
        if not drafts:
            return [], []
        senders = sorted({draft.sender_id for draft in drafts})

        def op(conn: sqlite3.Connection) -> tuple[
            list[AppendResult | SenderNotMember], list[tuple[ChatEvent, ChatEventWrite]] | None
        ]:
            with write_transaction(conn):
                results = _append_in_transaction(conn, chat_id, drafts, senders)
                if any(type(r) is SenderNotMember for r in results):
                    return results, None  # the caller's member list is stale: it reloads
                created = [r.message for r in results if type(r) is AppendResult and r.created]
                return results, write_message_events(conn, chat_id, created, event_of)

        return await self._run(op)

    async def get_message(self, chat_id: str, message_id: str) -> Message | None:
        row = await self._read(
            lambda conn: conn.execute(SQL_MESSAGE_BY_ID, (message_id, chat_id)).fetchone()
        )
        return _message(row) if row else None

    async def list_messages(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        limit = max(limit, 0)

        def op(conn: sqlite3.Connection) -> list[Row]:
            if before_seq is None:
                return conn.execute(SQL_NEWEST_MESSAGES, (chat_id, limit + 1)).fetchall()
            return conn.execute(SQL_MESSAGES_BEFORE, (chat_id, before_seq, limit + 1)).fetchall()

        rows = await self._read(op)
        recent = self._recent
        page = [recent.of(row[0], row, _message) for row in reversed(rows[:limit])]
        return page, len(rows) > limit

    async def list_messages_json(
        self, chat_id: str, before_seq: int | None, limit: int, member_id: str
    ) -> tuple[list[bytes], bool]:
        """See ``Store.list_messages_json``: one statement reads the page's ids and checks
        membership; each message's JSON was encoded by SQLite's ``json_object`` straight from
        its columns (no Python object per column, no ``Message``, no dict), once while it is
        among the recent ones (``RecentMessages``: a stored message never changes)."""
        limit = max(limit, 0)
        params = {"chat": chat_id, "member": member_id, "limit": limit + 1, "before": before_seq}

        def page(conn: sqlite3.Connection) -> list[Row]:
            sql = SQL_NEWEST_MESSAGE_IDS if before_seq is None else SQL_MESSAGE_IDS_BEFORE
            return conn.execute(sql, params).fetchall()

        rows = await self._read(page)
        ids = [row[0] for row in reversed(rows[:limit])]
        rendered = self._rendered
        cached = [rendered.get(message_id) for message_id in ids]  # before any await
        missing = [message_id for message_id, json in zip(ids, cached, strict=True) if not json]
        found = dict(await self._read(lambda conn: [
            row for chunk in chunks(missing) for row in conn.execute(
                SQL_MESSAGES_JSON.format(marks=marks(chunk)), chunk)
        ])) if missing else {}
        page = [json or rendered.of(message_id, found[message_id], _encoded)
                for message_id, json in zip(ids, cached, strict=True)]
        return page, len(rows) > limit

    async def messages_in_seq_range(
        self, chat_id: str, first_seq: int, last_seq: int
    ) -> list[Message]:
        """See ``Store.messages_in_seq_range``: one range of ``messages_chat_seq``."""
        span = check_seq_range(first_seq, last_seq)
        if span == 0:
            return []
        rows = await self._read(lambda conn: conn.execute(
            SQL_MESSAGES_IN_SEQ_RANGE, (chat_id, first_seq, last_seq, span)
        ).fetchall())
        return [_message(row) for row in rows]

    # -- uploads and attachments -------------------------------------------------------------
    async def add_upload(self, upload: Upload) -> None:
        await self._run(
            lambda conn: conn.execute(
                f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    upload.id,
                    upload.owner_id,
                    upload.object_key,
                    upload.filename,
                    upload.content_type,
                    upload.size,
                    str(upload.status),
                    to_millis(upload.created_at),
                    int(upload.attached),
                ),
            )
        )

    async def get_uploads(self, upload_ids: Sequence[str]) -> list[Upload]:
        rows = await self._rows_by_ids(UPLOAD_COLUMNS, "uploads", upload_ids)
        return [_upload(row) for row in rows]

    async def mark_upload_ready(self, upload_id: str, object_key: str) -> Upload | None:
        def op(conn: sqlite3.Connection) -> Row | None:
            with write_transaction(conn):
                marked = conn.execute(
                    "UPDATE uploads SET status = 'ready', object_key = ? "
                    f"WHERE id = ? AND status = 'pending' RETURNING {UPLOAD_COLUMNS}",
                    (object_key, upload_id),
                ).fetchone()
                if marked is not None:
                    return marked
                return conn.execute(
                    f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?", (upload_id,)
                ).fetchone()

        row = await self._run(op)
        return _upload(row) if row else None

    async def messages_with_attachments(self, attachment_ids: Sequence[str]) -> list[Message]:
        ids = list(dict.fromkeys(attachment_ids))
        if not ids:
            return []

        def op(conn: sqlite3.Connection) -> list[Row]:
            rows: dict[str, Row] = {}
            with read_transaction(conn):
                for chunk in chunks(ids):
                    sql = SQL_MESSAGES_WITH_ATTACHMENT.format(marks=marks(chunk))
                    for row in conn.execute(sql, chunk):
                        rows[row[0]] = row
            return list(rows.values())

        return [_message(row) for row in await self._read(op)]

    async def list_unattached_uploads(self, created_before: datetime, limit: int) -> list[Upload]:
        rows = await self._read(
            lambda conn: conn.execute(
                SQL_UNATTACHED_UPLOADS, (to_millis(created_before), max(limit, 0))
            ).fetchall()
        )
        return [_upload(row) for row in rows]

    async def delete_upload(self, upload_id: str) -> bool:
        deleted = await self._run(
            lambda conn: conn.execute(
                "DELETE FROM uploads WHERE id = ? AND attached = 0", (upload_id,)
            ).rowcount
        )
        return deleted > 0


def _encoded(json: str) -> bytes:
    """A message's JSON as SQLite encoded it (``SQL_MESSAGES_JSON``), as bytes."""
    return json.encode()


# -- helpers (worker thread) -----------------------------------------------------------------
def _append_in_transaction(
    conn: sqlite3.Connection, chat_id: str, drafts: Sequence[MessageDraft], senders: list[str]
) -> list[AppendResult | SenderNotMember]:
    """``append_messages`` inside the caller's write transaction."""
    row = conn.execute("SELECT last_seq FROM chats WHERE id = ?", (chat_id,)).fetchone()
    if row is None:
        raise StoreError(f"no chat {chat_id}")
    # Membership is read in the write transaction itself: the last word.
    members = {
        user_id for chunk in chunks(senders) for (user_id,) in conn.execute(
            SQL_MEMBERS_AMONG.format(marks=marks(chunk)), (chat_id, *chunk))
    }
    return _append(conn, chat_id, row[0], drafts, members)


def _append(
    conn: sqlite3.Connection,
    chat_id: str,
    last_seq: int,
    drafts: Sequence[MessageDraft],
    members: set[str],
) -> list[AppendResult | SenderNotMember]:
    """The body of ``append_messages``, inside its transaction; ``members`` are the senders
    who are members of the chat now."""
    now = utcnow()
    now_ms = to_millis(now)
    results: list[AppendResult | SenderNotMember] = []
    by_client_id: dict[tuple[str, str], Message] = {}
    new_rows: list[Row] = []
    rows_with_attachments: list[Row] = []
    attached: list[tuple[str, str, str]] = []  # (attachment id, message id, chat id)
    read_up: dict[str, int] = {}
    for draft in drafts:
        key = None
        if draft.client_msg_id is not None:
            key = (draft.sender_id, draft.client_msg_id)
            earlier = by_client_id.get(key)
            if earlier is None:
                found = conn.execute(SQL_MESSAGE_BY_CLIENT_ID, (chat_id, *key)).fetchone()
                earlier = _message(found) if found else None
            if earlier is not None:
                by_client_id[key] = earlier
                results.append(AppendResult(earlier, False))
                continue
        if draft.sender_id not in members:
            results.append(SenderNotMember(draft.sender_id))
            continue
        last_seq += 1
        message = Message(
            new_id(),
            chat_id,
            last_seq,
            draft.sender_id,
            draft.text,
            draft.client_msg_id,
            now_ms,
            tuple(draft.attachments),
        )
        if key is not None:
            by_client_id[key] = message
        row = (
            message.id,
            chat_id,
            last_seq,
            draft.sender_id,
            draft.text,
            draft.client_msg_id,
            now_ms,
        )
        if draft.attachments:
            rows_with_attachments.append((*row, _attachments_json(draft.attachments)))
            attached += [(a.id, message.id, chat_id) for a in draft.attachments]
        else:
            new_rows.append(row)
        read_up[draft.sender_id] = last_seq
        results.append(AppendResult(message, True))
    if new_rows or rows_with_attachments:
        conn.executemany(SQL_INSERT_MESSAGE, new_rows)
        if rows_with_attachments:
            conn.executemany(SQL_INSERT_MESSAGE_WITH_ATTACHMENTS, rows_with_attachments)
            conn.executemany(SQL_ATTACH, attached)
            conn.executemany(SQL_MARK_ATTACHED, [(row[0],) for row in attached])
        conn.execute(SQL_BUMP_CHAT, (last_seq, now_ms, chat_id))
        for sender_id, seq in read_up.items():
            conn.execute(SQL_RAISE_READ, (chat_id, sender_id, seq)).fetchall()
    return results


def _members(conn: sqlite3.Connection, chat_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Member ids of each chat, in the order they were given at creation."""
    found: dict[str, list[str]] = {chat_id: [] for chat_id in chat_ids}
    for chunk in chunks(list(found)):
        sql = SQL_CHAT_MEMBERS.format(marks=marks(chunk))
        for chat_id, user_id in conn.execute(sql, chunk):
            found[chat_id].append(user_id)
    return {chat_id: tuple(ids) for chat_id, ids in found.items()}


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Put the file in WAL mode (a property of the file: the first connection to a new file
    switches it, later ones find it so). The switch needs the file to itself, and SQLite
    answers ``SQLITE_BUSY`` at once, without its busy handler, while another process holds a
    lock on it (N processes starting on a new file): retried with backoff until
    ``BUSY_TIMEOUT_MS``. A file that cannot be in WAL mode raises ``StoreError``."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            [(mode,)] = conn.execute("PRAGMA journal_mode = WAL").fetchall()
            break
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    if str(mode).lower() != "wal":
        raise StoreError(f"sqlite: {path} cannot use WAL mode (journal mode {mode!r})")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _chat(row: Row, member_ids: tuple[str, ...]) -> Chat:
    """The chat of a row that starts with ``CHAT_COLUMNS``."""
    chat_id, chat_type, title, created_ms, last_seq, activity_ms, streamed = row[:7]
    return Chat(
        chat_id,
        ChatType(chat_type),
        title,
        member_ids,
        from_millis(created_ms),
        last_seq,
        from_millis(activity_ms),
        bool(streamed),
    )


def _message(row: Row) -> Message:
    message_id, chat_id, seq, sender_id, text, client_msg_id, created_ms, attached = row
    attachments = _attachments(attached) if attached else ()
    return Message(
        message_id, chat_id, seq, sender_id, text, client_msg_id, created_ms, attachments
    )


def _attachments(raw: str) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(item["id"], item["filename"], item["content_type"], item["size"])
        for item in orjson.loads(raw)
    )


def _attachments_json(attachments: Sequence[Attachment]) -> str:
    return orjson.dumps([attachment.to_json() for attachment in attachments]).decode()


def _upload(row: Row) -> Upload:
    upload_id, owner_id, key, filename, content_type, size, status, created_ms, attached = row
    return Upload(
        upload_id,
        owner_id,
        key,
        filename,
        content_type,
        size,
        UploadStatus(status),
        from_millis(created_ms),
        bool(attached),
    )


def _chat_view(row: Row, member_ids: tuple[str, ...]) -> ChatView:
    """A row of ``SQL_CHAT_VIEW(S)``: chat columns, read seq, then the last message or NULLs."""
    last = _message(row[8:16]) if row[8] is not None else None
    return ChatView(_chat(row, member_ids), last, row[7])
