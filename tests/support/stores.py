"""Store adapters for the contract tests: SQLite on a temporary file, MongoDB on the mongoeco
server (a fresh database each), and a second store object on the same database (another
process, in effect)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from messenger.store import Store


def open_adapter(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "sqlite":
        from messenger.store.sqlite import SQLiteStore

        return SQLiteStore(tmp_path / "db.sqlite3")
    from messenger.store.mongo import MongoStore

    server = request.getfixturevalue("mongoeco")
    return MongoStore(
        server.url, f"contract_{uuid.uuid4().hex}", write_concern="majority", timeout_ms=3000
    )


def on_the_same_database(store: Store) -> Store:
    """Another store object on ``store``'s database: another process, in effect."""
    from messenger.store.mongo import MongoStore
    from messenger.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, MongoStore)
    return MongoStore(store.url, store.db_name, timeout_ms=store.timeout_ms)
