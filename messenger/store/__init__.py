"""Storage: one ``Store`` interface, two adapters (MongoDB via Motor, embedded SQLite)."""

from __future__ import annotations

from config import Settings
from messenger.store.base import Store
from messenger.store.errors import EmailTaken, StoreError, StoreUnavailable

__all__ = ["EmailTaken", "Store", "StoreError", "StoreUnavailable", "open_store"]


def open_store(settings: Settings) -> Store:
    """The adapter the settings ask for: MongoDB when ``MONGO_URL`` is set, else SQLite."""
    if settings.mongo_url:
        from messenger.store.mongo import MongoStore

        return MongoStore(
            settings.mongo_url,
            settings.mongo_db,
            write_concern=settings.mongo_write_concern,
            timeout_ms=settings.mongo_timeout_ms,
        )
    from messenger.store.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path, synchronous=settings.sqlite_synchronous)
