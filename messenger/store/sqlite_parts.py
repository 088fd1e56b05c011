"""What the SQLite adapter's modules share (``sqlite.py``, ``sqlite_email.py``,
``sqlite_streams.py``): the write and read transactions, the row type and the users row. They
all import this module and it imports none of them, so the adapter has no import cycle.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from messenger.clock import from_millis
from messenger.models import User

Row = tuple[Any, ...]

USER_COLUMNS = "id, email, display_name, password_hash, created_at, email_verified"
#: Values per ``IN (...)`` list, well under SQLite's bound-variable limit.
IN_CHUNK = 500


def chunks[T](items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``IN_CHUNK``, one ``IN (...)`` list each."""
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def marks(items: Sequence[object]) -> str:
    """The ``?, ?, …`` of an ``IN (...)`` list of ``items``."""
    return ", ".join("?" * len(items))


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One deferred transaction for a call that reads with several statements: in WAL mode its
    first read fixes a snapshot and every statement in it sees that one, whatever other
    processes commit meanwhile. It takes no write lock and blocks no writer; it must not write
    (an upgrade to a write could meet another writer's newer commit: ``SQLITE_BUSY``)."""
    conn.execute("BEGIN DEFERRED")
    try:
        yield
        conn.execute("COMMIT")  # read-only: ends the snapshot, writes nothing
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_from_row(row: Row) -> User:
    """A ``User`` from a row of ``USER_COLUMNS``."""
    user_id, email, display_name, password_hash, created_ms, verified = row
    return User(user_id, email, display_name, bytes(password_hash), from_millis(created_ms),
                bool(verified))
