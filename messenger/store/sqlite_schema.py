"""The SQLite schema as a list of migration steps, versioned with ``PRAGMA user_version``.

Step *n* (0-based) takes the database from ``user_version`` *n* to *n + 1*. Steps are only ever
appended, never edited once released. Timestamps are integer UTC milliseconds; ids are the
24-hex-digit strings of ``messenger.ids``.

Every hot query has an index (checked by ``scripts/bench_store`` with EXPLAIN QUERY PLAN):

* ``users``: by id (primary key), by email (unique).
* ``refresh_tokens``: by jti (primary key), by family, by expiry (purging);
  ``token_families``: by id, by user.
* ``chats``: by id, by direct key (partial unique). A user's chats are found through
  ``chat_members`` and sorted by activity there (a user is in few chats).
* ``chat_members``: by (chat, user) and by (user, chat) for listing a user's chats.
* ``read_positions``: by (chat, user).
* ``messages``: by (chat, seq) (unique: history pages, last message), by id, and by
  (chat, sender, client_msg_id) where client_msg_id is set (unique: idempotent sends).
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: initial schema
    (
        """
        CREATE TABLE users (
            id            TEXT PRIMARY KEY,
            email         TEXT NOT NULL,
            display_name  TEXT NOT NULL,
            password_hash BLOB NOT NULL,
            created_at    INTEGER NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX users_email ON users (email)",
        """
        CREATE TABLE token_families (
            id      TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id),
            revoked INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX token_families_user ON token_families (user_id)",
        """
        CREATE TABLE refresh_tokens (
            jti        TEXT PRIMARY KEY,
            family_id  TEXT NOT NULL REFERENCES token_families (id),
            user_id    TEXT NOT NULL REFERENCES users (id),
            expires_at INTEGER NOT NULL,
            spent      INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID
        """,
        "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
        "CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at)",
        """
        CREATE TABLE chats (
            id               TEXT PRIMARY KEY,
            type             TEXT NOT NULL CHECK (type IN ('direct', 'group')),
            title            TEXT,
            direct_key       TEXT,
            created_at       INTEGER NOT NULL,
            last_seq         INTEGER NOT NULL DEFAULT 0,
            last_activity_at INTEGER NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX chats_direct_key ON chats (direct_key) WHERE direct_key IS NOT NULL",
        """
        CREATE TABLE chat_members (
            chat_id  TEXT NOT NULL REFERENCES chats (id),
            user_id  TEXT NOT NULL REFERENCES users (id),
            position INTEGER NOT NULL,
            PRIMARY KEY (chat_id, user_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX chat_members_user ON chat_members (user_id, chat_id)",
        """
        CREATE TABLE read_positions (
            chat_id TEXT NOT NULL REFERENCES chats (id),
            user_id TEXT NOT NULL,
            seq     INTEGER NOT NULL,
            PRIMARY KEY (chat_id, user_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE messages (
            pk            INTEGER PRIMARY KEY,
            id            TEXT NOT NULL,
            chat_id       TEXT NOT NULL REFERENCES chats (id),
            seq           INTEGER NOT NULL,
            sender_id     TEXT NOT NULL,
            text          TEXT NOT NULL,
            client_msg_id TEXT,
            created_at    INTEGER NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX messages_chat_seq ON messages (chat_id, seq)",
        "CREATE UNIQUE INDEX messages_id ON messages (id)",
        """
        CREATE UNIQUE INDEX messages_client_msg_id ON messages (chat_id, sender_id, client_msg_id)
        WHERE client_msg_id IS NOT NULL
        """,
    ),
)

#: The ``user_version`` of a fully migrated database.
SCHEMA_VERSION = len(MIGRATIONS)
