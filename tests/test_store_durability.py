"""How SQLite commits reach the disk: ``SQLITE_SYNCHRONOUS`` (full by default), read back.

``PRAGMA synchronous`` is a property of a connection, so each check reads it back from the
store's own connection (``SQLiteStore.synchronous_mode``), after the store was opened the way
the server opens it (``open_store(load_settings(env))``).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from messenger.store import open_store
from messenger.store.sqlite import SQLiteStore
from tests.conftest import TEST_SECRET
from tests.support.processes import MessengerServer


def settings_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ENV": "test", "JWT_SECRET": TEST_SECRET, "MESSENGER_DATA_DIR": str(tmp_path),
            **extra}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "full"),
    ({"SQLITE_SYNCHRONOUS": "full"}, "full"),
    ({"SQLITE_SYNCHRONOUS": "normal"}, "normal"),
    ({"SQLITE_SYNCHRONOUS": "EXTRA"}, "extra"),
])
async def test_the_store_runs_in_the_configured_mode(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    settings = load_settings(settings_env(tmp_path, **env))
    assert settings.sqlite_synchronous == expected
    store = open_store(settings)
    assert isinstance(store, SQLiteStore)
    try:
        await store.migrate()
        assert await store.synchronous_mode() == expected
        await store.create_user("ann@example.com", b"hash", "Ann")  # writes work in every mode
    finally:
        await store.close()
    with closing(sqlite3.connect(settings.sqlite_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_an_unknown_mode_is_refused_by_the_settings_and_by_the_store(tmp_path: Path) -> None:
    for bad in ("off", "0", "fsync", "normal; DROP TABLE users"):
        with pytest.raises(ConfigError, match="SQLITE_SYNCHRONOUS"):
            load_settings(settings_env(tmp_path, SQLITE_SYNCHRONOUS=bad))
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "db.sqlite3", synchronous="off")


def test_the_server_refuses_to_start_with_an_unknown_mode(tmp_path: Path) -> None:
    server = MessengerServer(settings_env(tmp_path, SQLITE_SYNCHRONOUS="off"))
    with pytest.raises(RuntimeError) as err:
        server.start()
    message = str(err.value)
    assert "exited with 2" in message and "SQLITE_SYNCHRONOUS" in message, message
    assert not (tmp_path / "messenger.sqlite3").exists()
