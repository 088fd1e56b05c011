"""``python -m messenger migrate [--dry-run]`` (and ``scripts/migrate``): the store's schema.

Creates or upgrades the configured store's schema and indexes, then exits. MongoDB
(``MONGO_URL`` set): creates every collection's indexes (``mongo_docs.INDEXES``). SQLite (the
default): brings the file's schema up to ``SCHEMA_VERSION`` (``PRAGMA user_version``), creating
the file if there is none, and purges expired refresh tokens. Idempotent, and safe while
servers run; the server also runs it on start.

``--dry-run`` changes nothing and says what migrating would do: for SQLite the file's schema
version now (read through a read-only connection; no file is created) and this code's; for
MongoDB each index, whether it exists (read with ``listIndexes``) or would be created. It still
needs the database to answer.

Prints one line per fact on stdout; exit 0 done, 1 the store cannot be migrated (or read, for a
dry run), 2 a configuration error. The database's URL is never printed (it may hold
credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path

from config import Settings
from messenger.commands.base import (
    EXIT_OK,
    Command,
    CommandError,
    load_config,
    run_command,
)
from messenger.store import StoreError, open_store
from messenger.store.sqlite_schema import SCHEMA_VERSION

DRY_RUN = "dry run: nothing was changed"


def describe(settings: Settings) -> str:
    """Which database, without the URL."""
    if settings.uses_mongo:
        return f"mongodb database {settings.mongo_db!r}"
    return f"sqlite database {settings.sqlite_path}"


async def migrate(settings: Settings) -> str:
    store = open_store(settings)
    try:
        await store.migrate()
    finally:
        await store.close()
    return describe(settings)


def sqlite_version(path: Path) -> int | None:
    """The ``user_version`` of the SQLite file at ``path``, read only; None when there is no
    file. ``CommandError`` when it cannot be read."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CommandError(f"storage error: cannot read {path}: {exc}") from None


def sqlite_plan(path: Path) -> list[str]:
    version = sqlite_version(path)
    if version is None:
        return [f"schema: no database file yet; migrating creates it at v{SCHEMA_VERSION}"]
    if version > SCHEMA_VERSION:
        raise CommandError(
            f"storage error: {path} has schema v{version}; this code knows v{SCHEMA_VERSION}")
    lines = [f"schema: v{version} now, v{SCHEMA_VERSION} after migrating"]
    if version < SCHEMA_VERSION:
        steps = " -> ".join(f"v{number}" for number in range(version, SCHEMA_VERSION + 1))
        lines.append(f"would apply {SCHEMA_VERSION - version} step(s): {steps}")
    else:
        lines.append("no schema change")
    lines.append("would purge expired refresh tokens")
    return lines


def mongo_plan(settings: Settings) -> list[str]:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    from messenger.store.mongo_docs import INDEXES

    assert settings.mongo_url is not None
    client: MongoClient = MongoClient(settings.mongo_url,
                                      serverSelectionTimeoutMS=settings.mongo_timeout_ms)
    lines: list[str] = []
    missing = total = 0
    try:
        db = client[settings.mongo_db]
        for collection, indexes in INDEXES.items():
            existing = db[collection].index_information()
            for index in indexes:
                name = index.document["name"]
                total += 1
                if name in existing:
                    state = "exists"
                else:
                    state = "would be created"
                    missing += 1
                lines.append(f"index {collection}.{name}: {state}")
    except PyMongoError as exc:
        raise CommandError(f"storage error: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    lines.append(f"{missing} of {total} indexes would be created")
    return lines


def dry_run(settings: Settings) -> list[str]:
    plan = mongo_plan(settings) if settings.uses_mongo else sqlite_plan(settings.sqlite_path)
    return [DRY_RUN, f"store: {describe(settings)}", *plan]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what migrating would do, and change nothing")


def run(args: argparse.Namespace) -> int:
    settings = load_config()
    if args.dry_run:
        print("\n".join(dry_run(settings)))
        return EXIT_OK
    try:
        migrated = asyncio.run(migrate(settings))
    except StoreError as exc:
        raise CommandError(f"storage error: {exc}") from None
    print(f"migrated {migrated}")
    return EXIT_OK


COMMAND = Command(
    name="migrate",
    help="create or upgrade the store's schema and indexes",
    description="Create or upgrade the configured store's schema and indexes, then exit. "
    "MongoDB (MONGO_URL set): every collection's indexes. SQLite (the default): the file's "
    "schema version (PRAGMA user_version), the file created if there is none. Idempotent and "
    "safe while servers run (the server also migrates on start). --dry-run changes nothing and "
    "says what migrating would do.",
    configure=configure,
    run=run,
)


def main(argv: list[str] | None = None, prog: str = "migrate") -> int:
    """``scripts/migrate``: this command on its own."""
    parser = argparse.ArgumentParser(
        prog=prog, description=COMMAND.description,
        epilog="Settings come from the environment and ./.env (.env.example lists them).")
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(prog, run, args)
