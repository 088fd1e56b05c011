"""The SQLite schema as a list of migration steps, versioned with ``PRAGMA user_version``.

Step *n* (0-based) takes the database from ``user_version`` *n* to *n + 1*. Steps are only ever
appended, never edited once released. Timestamps are integer UTC milliseconds; ids are the
24-hex-digit strings of ``messenger.ids``.

Every hot query has an index (checked by ``scripts/bench_store`` with EXPLAIN QUERY PLAN):

* ``users``: by id (primary key), by email (unique). A name search (``SQL_SEARCH_CONTACTS``)
  starts from the caller's memberships (``chat_members``) and reads each contact by id, so
  it needs no index of its own; ``name_key`` (``messenger.names``) is compared as a range.
* ``refresh_tokens``: by jti (primary key), by family, by expiry (purging);
  ``token_families``: by id, by user.
* ``chats``: by id, by direct key (partial unique). A user's chats are found through
  ``chat_members`` and sorted by activity there (a user is in few chats).
* ``chat_members``: by (chat, user) and by (user, chat) for listing a user's chats; ``position``
  is the join order (``add_members`` appends after the largest). A user's contacts are one
  self-join: (user, chat) then (chat, user).
* ``read_positions``: by (chat, user).
* ``messages``: by (chat, seq) (unique: history pages, last message), by id, and by
  (chat, sender, client_msg_id) where client_msg_id is set (unique: idempotent sends).
* ``uploads``: by id; never-attached ones by creation time (the orphan clean-up).
  ``message_attachments``: by (attachment, message) — which messages carry an attachment.
* Email (``sqlite_email.py``): ``email_tokens`` by hash, by (user, purpose), by expiry;
  ``send_slots`` by key; ``outbox`` by id, pending ones by due time (the claim), finished ones by
  finish time (purging), by (recipient, created); ``presence`` by user, offline users by
  ``check_at`` (due digest checks); ``chats`` also by ``last_activity_at`` (the digest scan).
* Streams (``sqlite_streams.py``): ``stream_entries`` by (stream, offset) (``WITHOUT ROWID``
  primary key: the unique index that gives offsets, a stream's page after an offset, its head
  as the largest key), by creation time (trimming), by (stream, source) where a fan-out copy
  has one (unique: a repeated fan-out is a no-op), incomplete fan-outs by (stream, offset)
  (partial: only those); ``stream_floors`` by stream; ``store_meta`` by key (the stream epoch).
  A user's newest marker copy of a chat is the last of the (stream, source) index's entries for
  that chat; a user's streamed chats are found through ``chat_members`` (``streamed`` filters).
  A chat log's entry of a message seq, and its largest message seq, by (stream, message_seq)
  (partial unique: only entries with a message seq).

The former global event log (``events``, ``event_recipients``, ``event_log``: the third step)
is dropped again by the ninth step; real-time events live only in the streams.
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
    # uploads and message attachments (API_CONTRACT.md §9)
    (
        # JSON array of {"id", "filename", "content_type", "size"}; NULL for none
        "ALTER TABLE messages ADD COLUMN attachments TEXT",
        """
        CREATE TABLE uploads (
            id           TEXT PRIMARY KEY,
            owner_id     TEXT NOT NULL REFERENCES users (id),
            object_key   TEXT NOT NULL,
            filename     TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size         INTEGER NOT NULL,
            status       TEXT NOT NULL CHECK (status IN ('pending', 'ready')),
            created_at   INTEGER NOT NULL,
            attached     INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX uploads_unattached ON uploads (created_at) WHERE attached = 0",
        """
        CREATE TABLE message_attachments (
            attachment_id TEXT NOT NULL,
            message_id    TEXT NOT NULL,
            chat_id       TEXT NOT NULL REFERENCES chats (id),
            PRIMARY KEY (attachment_id, message_id)
        ) WITHOUT ROWID
        """,
    ),
    # the event log of the real-time layer (API_CONTRACT.md §8): one row per event, plus one
    # (user, event) row per recipient for the per-user query
    (
        # AUTOINCREMENT: ids are never reused, also after the newest rows were purged.
        # recipients: the user ids, space-separated, in the order given.
        """
        CREATE TABLE events (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            recipients TEXT NOT NULL,
            payload    BLOB NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX events_created_at ON events (created_at)",
        """
        CREATE TABLE event_recipients (
            user_id  TEXT NOT NULL,
            event_id INTEGER NOT NULL,
            PRIMARY KEY (user_id, event_id)
        ) WITHOUT ROWID
        """,
        # One row: every event with id > floor is still stored.
        """
        CREATE TABLE event_log (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            floor     INTEGER NOT NULL
        )
        """,
        "INSERT INTO event_log (singleton, floor) VALUES (1, 0)",
    ),
    # email: verification, password reset, the outbox, presence for digests (API_CONTRACT.md §10)
    (
        "ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0",
        # token_hash: hex SHA-256 of the emailed token
        """
        CREATE TABLE email_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id    TEXT NOT NULL REFERENCES users (id),
            purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose)",
        "CREATE INDEX email_tokens_expires ON email_tokens (expires_at)",
        # per-key rate limits: when the last slot was taken
        """
        CREATE TABLE send_slots (
            key TEXT PRIMARY KEY,
            at  INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        # message: the whole RFC 5322 email; next_attempt_at: due time, or the lease's end
        """
        CREATE TABLE outbox (
            id              TEXT PRIMARY KEY,
            kind            TEXT NOT NULL,
            recipient       TEXT NOT NULL,
            message         BLOB NOT NULL,
            status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            created_at      INTEGER NOT NULL,
            lease_id        TEXT,
            last_error      TEXT,
            finished_at     INTEGER
        )
        """,
        "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending'",
        "CREATE INDEX outbox_finished ON outbox (finished_at) WHERE status != 'pending'",
        "CREATE INDEX outbox_recipient ON outbox (recipient, created_at)",
        """
        CREATE TABLE presence (
            user_id        TEXT PRIMARY KEY REFERENCES users (id),
            online         INTEGER NOT NULL,
            changed_at     INTEGER NOT NULL,
            last_digest_at INTEGER,
            check_at       INTEGER
        ) WITHOUT ROWID
        """,
        "CREATE INDEX presence_digest_due ON presence (check_at) WHERE online = 0",
        # chats active since a time: the digest worker's scan for new messages
        "CREATE INDEX chats_activity ON chats (last_activity_at)",
    ),
    # streams with gap-free offsets (docs/REALTIME_STREAMS.md): one row per entry, the offset
    # taken by its insert under the primary key; floors after trims; the store's epoch
    (
        """
        CREATE TABLE stream_entries (
            stream     TEXT NOT NULL,
            offset     INTEGER NOT NULL,
            payload    BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (stream, offset)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX stream_entries_created_at ON stream_entries (created_at)",
        # every offset of the stream above floor is stored (no row: 0, never trimmed)
        """
        CREATE TABLE stream_floors (
            stream TEXT PRIMARY KEY,
            floor  INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE store_meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        # made once, here: this step runs in one write transaction, for one process only
        "INSERT INTO store_meta (key, value) VALUES ('stream_epoch', lower(hex(randomblob(8))))",
    ),
    # fan-out of small chats' events to user streams (docs/REALTIME_STREAMS.md): a user entry's
    # source (chat id, chat offset), unique per user stream; a chat-log entry's recipients, set
    # while its fan-out is incomplete (NULL once complete, and for every other entry)
    (
        "ALTER TABLE stream_entries ADD COLUMN source_chat TEXT",
        "ALTER TABLE stream_entries ADD COLUMN source_offset INTEGER",
        "ALTER TABLE stream_entries ADD COLUMN recipients TEXT",
        """
        CREATE UNIQUE INDEX stream_entries_source
        ON stream_entries (stream, source_chat, source_offset) WHERE source_chat IS NOT NULL
        """,
        """
        CREATE INDEX stream_entries_fanout_pending
        ON stream_entries (stream, offset) WHERE recipients IS NOT NULL
        """,
    ),
    # large chats get their own stream (docs/REALTIME_STREAMS.md): a chat's streamed flag; a
    # user entry that is a marker copy; a chat-log entry whose (pending) copies are markers
    (
        "ALTER TABLE chats ADD COLUMN streamed INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE stream_entries ADD COLUMN marker INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE stream_entries ADD COLUMN marker_fan_out INTEGER NOT NULL DEFAULT 0",
    ),
    # a message's event once per chat log (docs/REALTIME_STREAMS.md): a chat-log entry's
    # message seq (NULL for other events and entries), unique per chat log
    (
        "ALTER TABLE stream_entries ADD COLUMN message_seq INTEGER",
        """
        CREATE UNIQUE INDEX stream_entries_message_seq
        ON stream_entries (stream, message_seq) WHERE message_seq IS NOT NULL
        """,
    ),
    # the global event log is replaced by the streams: its tables go, with its index
    # (events_created_at) and its sqlite_sequence row (both dropped with the table)
    (
        "DROP TABLE IF EXISTS event_recipients",
        "DROP TABLE IF EXISTS events",
        "DROP TABLE IF EXISTS event_log",
    ),
    # name search (API_CONTRACT.md §4): each user's display-name search key, written with the
    # name; existing users get theirs here. messenger_name_key is messenger.names.name_key,
    # registered on the adapter's connection (SQLite's lower() folds ASCII only).
    (
        "ALTER TABLE users ADD COLUMN name_key TEXT NOT NULL DEFAULT ''",
        "UPDATE users SET name_key = messenger_name_key(display_name)",
    ),
)

#: The ``user_version`` of a fully migrated database.
SCHEMA_VERSION = len(MIGRATIONS)
