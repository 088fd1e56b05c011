"""The MongoDB adapter's schema: collections and their indexes, ids, documents <-> records,
and the translation of driver errors (``guarded``) that every part of the adapter uses.

Ids are ObjectIds in the database (``_id`` and references) and 24-hex strings everywhere else;
``oid`` converts at the boundary and turns a malformed string into ``None``. Refresh-token jtis
and family ids are opaque strings and are stored as they are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    InvalidOperation,
    PyMongoError,
    WriteConcernError,
)

from messenger.clock import to_millis
from messenger.ids import is_valid_id
from messenger.models import (
    Attachment,
    Chat,
    ChatType,
    Message,
    RefreshToken,
    StreamEntry,
    Upload,
    UploadStatus,
    User,
)
from messenger.store.errors import StoreError, StoreUnavailable

Doc = dict[str, Any]

DUPLICATE_KEY = 11000  # server error code of a unique-index violation
#: The index on ``stream_entries`` that keeps a message's event once per chat log.
MESSAGE_EVENT_INDEX = "chat_log_message_seq"

#: Every index ``MongoStore.migrate`` makes, by collection. Named, so a rerun is a no-op.
INDEXES: dict[str, list[IndexModel]] = {
    # {_id: ObjectId, email, display_name, name_key (messenger.names; absent in a document
    #  stored before keys existed, until migrate fills it), password_hash: bytes, created_at,
    #  email_verified?}
    # name_key: a name search may walk its prefix range in order (the planner's pick when that
    # beats reading the caller's contacts by _id), and migrate finds the keys still missing.
    "users": [
        IndexModel([("email", ASCENDING)], unique=True, name="email_unique"),
        IndexModel([("name_key", ASCENDING), ("_id", ASCENDING)], name="name_key"),
    ],
    # {_id: jti, family_id, user_id: ObjectId, spent: bool, expires_at}
    "refresh_tokens": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
    ],
    # {_id: family id, user_id: ObjectId, revoked: bool, expires_at: latest token expiry}
    # (purged once its last token has expired and been purged: nothing can refer to it then)
    "token_families": [
        IndexModel([("user_id", ASCENDING)], name="user_id"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
    ],
    # {_id: ObjectId, type, title, member_ids: [ObjectId], direct_key?: str, created_at,
    #  last_seq (a hint: it may lag the chat's largest stored seq; mongo.py), last_activity_at,
    #  streamed?: true (a large chat with its own stream; set once, never unset)}
    # member_activity also finds a user's streamed chats (member_ids, then streamed filters).
    "chats": [
        IndexModel(
            [("direct_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"direct_key": {"$type": "string"}},
            name="direct_key_unique",
        ),
        IndexModel(
            [("member_ids", ASCENDING), ("last_activity_at", DESCENDING), ("_id", DESCENDING)],
            name="member_activity",
        ),
        # chats active since a time: the digest worker's scan for new messages
        IndexModel([("last_activity_at", ASCENDING)], name="last_activity"),
    ],
    # {_id: "<chat_id>:<user_id>", chat_id: ObjectId, user_id: ObjectId, seq}
    "read_positions": [IndexModel([("user_id", ASCENDING)], name="user_id")],
    # {_id: ObjectId, owner_id: ObjectId, key, filename, content_type, size, status, created_at,
    #  attached: bool (a stored message carries it)}
    "uploads": [
        IndexModel([("attached", ASCENDING), ("created_at", ASCENDING)], name="unattached_age"),
    ],
    # {_id: ObjectId, chat_id: ObjectId, seq, sender_id: ObjectId, text, client_msg_id, created_at,
    #  attachments?: [{id: ObjectId, filename, content_type, size}] (only when there are some)}
    "messages": [
        IndexModel([("chat_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="chat_seq"),
        IndexModel([("attachments.id", ASCENDING)], sparse=True, name="attachment_id"),
        IndexModel(
            [("chat_id", ASCENDING), ("sender_id", ASCENDING), ("client_msg_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"client_msg_id": {"$type": "string"}},
            name="chat_sender_client_msg_id",
        ),
    ],
    # -- streams (docs/REALTIME_STREAMS.md; the adapter's part is mongo_streams.py) --
    # {_id: ObjectId, s: stream key, o: offset, p: payload bytes, t: created_at,
    #  sc, so: a fan-out copy's source (chat id, chat offset), in a user stream; m: true — that
    #  copy is a marker; r: recipients, pend: true — a chat-log entry whose fan-out is incomplete
    #  (both unset after), rm: true — its copies are markers (kept after); ms: a chat-log
    #  entry's message seq (the event of that message), absent for every other entry}
    # (s, o), unique: an offset is taken by the insert of its entry, never before; a stream's
    # entries after an offset; its head as the largest key. t: each stream's newest old entry.
    # (s, sc, so), unique where sc is set: a repeated fan-out is a no-op; a user's newest
    # marker of a chat (descending so). (pend, s, o) where pend: a chat's incomplete fan-outs in
    # chat-offset order, and the sweep's. (s, ms), unique where ms exists: a message's event is
    # in a chat log once; the chat log's largest message seq (descending ms), which trims keep.
    "stream_entries": [
        IndexModel([("s", ASCENDING), ("o", ASCENDING)], unique=True, name="stream_offset"),
        IndexModel([("t", ASCENDING)], name="created_at"),
        IndexModel(
            [("s", ASCENDING), ("sc", ASCENDING), ("so", ASCENDING)],
            unique=True,
            name="fanout_source",
            partialFilterExpression={"sc": {"$type": "string"}},
        ),
        IndexModel(
            [("pend", ASCENDING), ("s", ASCENDING), ("o", ASCENDING)],
            name="fanout_pending",
            partialFilterExpression={"pend": True},
        ),
        IndexModel(
            [("s", ASCENDING), ("ms", ASCENDING)],
            unique=True,
            name=MESSAGE_EVENT_INDEX,
            partialFilterExpression={"ms": {"$exists": True}},
        ),
    ],
    # -- email (API_CONTRACT.md §10; the adapter's part is mongo_email.py) --
    # {_id: hex SHA-256 of the token, user_id: ObjectId, purpose: "verify"|"reset", expires_at}
    "email_tokens": [
        IndexModel([("user_id", ASCENDING), ("purpose", ASCENDING)], name="user_purpose"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
    ],
    # {_id: rate-limit key, at: when the last slot was taken, expires_at: when it no longer counts}
    "send_slots": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
    ],
    # {_id: ObjectId, kind, recipient, message: bytes, status, attempts, next_attempt_at,
    #  created_at, lease_id, last_error, finished_at (sent or failed; then purged a week later)}
    "outbox": [
        IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="status_due"),
        IndexModel([("recipient", ASCENDING), ("created_at", DESCENDING)], name="recipient"),
        IndexModel([("finished_at", ASCENDING)], expireAfterSeconds=7 * 86_400,
                   name="finished_at_ttl"),
    ],
    # {_id: user ObjectId, online: bool, changed_at, last_digest_at?, check_at?}
    "presence": [
        IndexModel([("online", ASCENDING), ("check_at", ASCENDING)], name="online_check_at"),
    ],
    # Collection "stream_floors" (only _id lookups): {_id: stream key, floor: every offset of
    # the stream above it is stored}; none for a stream never trimmed (floor 0).
    # Collection "store_meta" (only _id lookups): {_id: "stream_epoch", value: the epoch}.
    # Unused: the collections "events" and "counters" (the former global event log and its
    # counter document {_id: "events"}, replaced by the streams). Nothing reads or writes them
    # and migrate neither creates nor drops anything there; on a database that has them an
    # operator may drop both (with their indexes "recipient_id" and "created_at" on "events").
}


# -- ids -------------------------------------------------------------------------------------
def oid(value: object) -> ObjectId | None:
    """The ObjectId of a 24-hex id string; ``None`` for anything else (never raises)."""
    return ObjectId(value) if is_valid_id(value) else None  # type: ignore[arg-type]


def ref(value: str, what: str) -> ObjectId:
    """The ObjectId of an id a write is about to store; a malformed one is a caller's bug."""
    found = oid(value)
    if found is None:
        raise StoreError(f"malformed {what}: {value!r}")
    return found


def read_key(chat_id: str, user_id: str) -> str:
    """``_id`` of a read position."""
    return f"{chat_id}:{user_id}"


# -- errors ----------------------------------------------------------------------------------
def guarded[**P, T](fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Translate driver errors into ``StoreUnavailable`` / ``StoreError``."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except StoreError:
            raise
        except (ConnectionFailure, ExecutionTimeout, WriteConcernError) as exc:
            # ConnectionFailure covers AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError.
            raise StoreUnavailable(f"mongodb: {exc}") from exc
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise StoreUnavailable(f"mongodb: {exc}") from exc
            raise StoreError(f"mongodb: {exc}") from exc
        except InvalidOperation as exc:
            if "close" in str(exc).lower():  # "Cannot use MongoClient after close"
                raise StoreUnavailable("the mongodb store is closed") from exc
            raise StoreError(f"mongodb: {exc}") from exc
        except PyMongoError as exc:
            raise StoreError(f"mongodb: {exc}") from exc

    return wrapper


_DUP_KEY = re.compile(r"index: (?P<index>\S+) dup key: (?P<key>\{.*\})", re.DOTALL)
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_KEY_FIELD = re.compile(r"[{,]\s*([A-Za-z_][\w.]*)\s*:")


def duplicate_on(details: Any, field: str, index: str | None = None) -> bool:
    """Whether a duplicate-key error (its ``details``, or one ``writeErrors`` entry) is a clash
    on an index that includes ``field`` (or, with ``index``, on the index of that name).

    The error's ``keyPattern`` / ``keyValue`` answer (MongoDB 4.2 and later, and mongoeco);
    without them, the message's ``index: <name> dup key: { <field>: ... }``: the index's name,
    then the key's field names (quoted values left out); a message of another shape is searched
    for ``field``."""
    details = details or {}
    pattern = details.get("keyPattern") or details.get("keyValue")
    if pattern:
        return field in pattern
    message = str(details.get("errmsg", ""))
    found = _DUP_KEY.search(message)
    if found is None:
        return field in message
    if index is not None and found["index"] == index:
        return True
    return field in _KEY_FIELD.findall(_QUOTED.sub('""', found["key"]))



# -- updates ---------------------------------------------------------------------------------
def read_position_update(chat_oid: ObjectId, user_oid: ObjectId, seq: int) -> Doc:
    """Move a read position up to ``seq`` (never down), creating it if needed."""
    return {"$max": {"seq": seq}, "$setOnInsert": {"chat_id": chat_oid, "user_id": user_oid}}


def read_position_upsert(chat_oid: ObjectId, user_oid: ObjectId, seq: int) -> UpdateOne:
    return UpdateOne(
        {"_id": read_key(str(chat_oid), str(user_oid))},
        read_position_update(chat_oid, user_oid, seq),
        upsert=True,
    )


# -- documents -> records --------------------------------------------------------------------
def to_user(doc: Doc) -> User:
    return User(
        str(doc["_id"]),
        doc["email"],
        doc["display_name"],
        bytes(doc["password_hash"]),
        utc(doc["created_at"]),
        bool(doc.get("email_verified", False)),
    )


def to_token(doc: Doc) -> RefreshToken:
    return RefreshToken(doc["_id"], doc["family_id"], str(doc["user_id"]), utc(doc["expires_at"]))


def to_chat(doc: Doc) -> Chat:
    return Chat(
        str(doc["_id"]),
        ChatType(doc["type"]),
        doc.get("title"),
        tuple(str(member) for member in doc["member_ids"]),
        utc(doc["created_at"]),
        doc["last_seq"],
        utc(doc["last_activity_at"]),
        bool(doc.get("streamed", False)),
    )


def to_message(doc: Doc) -> Message:
    return Message(
        str(doc["_id"]),
        str(doc["chat_id"]),
        doc["seq"],
        str(doc["sender_id"]),
        doc["text"],
        doc.get("client_msg_id"),
        to_millis(utc(doc["created_at"])),
        tuple(
            Attachment(str(item["id"]), item["filename"], item["content_type"], item["size"])
            for item in doc.get("attachments") or ()
        ),
    )


def attachment_docs(attachments: tuple[Attachment, ...]) -> list[Doc]:
    """A message's ``attachments`` field (ids as ObjectIds, so the index finds them)."""
    return [
        {
            "id": ref(item.id, "attachment id"),
            "filename": item.filename,
            "content_type": item.content_type,
            "size": item.size,
        }
        for item in attachments
    ]


def upload_doc(upload: Upload) -> Doc:
    return {
        "_id": ref(upload.id, "upload id"),
        "owner_id": ref(upload.owner_id, "owner_id"),
        "key": upload.object_key,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": upload.size,
        "status": str(upload.status),
        "created_at": upload.created_at,
        "attached": upload.attached,
    }


def to_upload(doc: Doc) -> Upload:
    return Upload(
        str(doc["_id"]),
        str(doc["owner_id"]),
        doc["key"],
        doc["filename"],
        doc["content_type"],
        doc["size"],
        UploadStatus(doc["status"]),
        utc(doc["created_at"]),
        bool(doc.get("attached")),
    )


def to_stream_entry(doc: Doc) -> StreamEntry:
    source = (doc["sc"], doc["so"]) if "sc" in doc else None
    return StreamEntry(
        doc["s"], doc["o"], bytes(doc["p"]), utc(doc["t"]), source, bool(doc.get("m", False))
    )


def utc(value: datetime) -> datetime:
    """A stored datetime as aware UTC (the client decodes them so already; this is a guard)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


async def bulk_upsert_max(collection: Any, updates: list[UpdateOne]) -> None:
    """``bulk_write`` of upserted ``$max`` updates, retried once when two first upserts of one
    ``_id`` clash (older servers report that as a duplicate key)."""
    for attempt in (1, 2):
        try:
            await collection.bulk_write(updates, ordered=False)
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            clash = errors and all(e.get("code") == DUPLICATE_KEY for e in errors)
            if attempt == 2 or not clash or exc.details.get("writeConcernErrors"):
                raise

