"""MongoDB adapter on Motor (``AsyncIOMotorClient``).

Consistency design — no multi-document transactions, no change streams: every guarantee of
``Store`` rests on single-document atomic updates, unique indexes and idempotent retries.

* Ids are ObjectIds in ``_id`` (and in references: ``member_ids``, ``chat_id``, ``sender_id``,
  ``user_id``), turned into 24-hex strings at the boundary. A malformed id string given to a read
  finds nothing (``None``, ``[]``, ``0``); a write that must store a malformed reference raises
  ``StoreError``.
* Every write uses the database's write concern (``WriteConcern(w=write_concern)``, ``majority``
  by default, with ``wtimeout`` so a degraded replica set answers instead of hanging).
  Connection failures, timeouts, write-concern failures and use of a closed store
  raise ``StoreUnavailable``; other driver errors raise ``StoreError``.
* Users: a unique index on ``email`` turns a duplicate insert into ``EmailTaken``. A user's
  ``name_key`` is written in the same document write as its ``display_name``;
  ``search_contacts`` is two queries: the caller's contacts (one ``distinct``, as
  ``contact_ids``), then those of them in the key range, sorted and limited by the server.
* Refresh tokens: ``refresh_tokens`` (``_id`` = jti, TTL index on ``expires_at``) and
  ``token_families`` (``_id`` = family id, ``revoked``, and the latest ``expires_at`` of its
  tokens with a TTL index, so neither collection grows without bound). A spend checks the family,
  then spends with one atomic ``find_one_and_update({_id, spent: False, expires_at > now})``, so of
  any number of concurrent spends exactly one wins; the others read the token back and report
  ``REUSED``.
* Direct chats: a unique partial index on ``direct_key`` (strings only). ``create_chat`` looks the
  key up, inserts, and on a duplicate-key race returns the chat that won.
* Messages: a message's seq is taken by the insert of its document under the unique index
  ``chat_seq`` on ``(chat_id, seq)``, and nothing is reserved beforehand (as stream offsets are,
  ``mongo_streams.py``). ``append_messages`` (1) looks up the batch's ``(sender_id,
  client_msg_id)`` pairs that are already stored, with one query, and collapses repeats inside
  the batch; (2) checks membership with one ``find_one_and_update`` of the chat that matches
  only while every sender is a member (``member_ids: {$all: senders}``; it ``$max``-es
  ``last_activity_at``), which also reads the chat's ``last_seq``: a removal committed before
  it refuses those senders' drafts (``SenderNotMember``), one after it is ordered after the
  send; (3) inserts the members' drafts in batch order at ``last_seq + 1``, ``+ 2``, ... with
  one ``insert_many(ordered=True)``. A duplicate key at index *j* stops the run there; the
  first *j* are in and kept. On ``seq`` another writer took that seq first: the rest goes on
  right after it, and after a second run in a row that stored nothing, after the chat's
  largest stored seq, read from the index (``StoreError`` after ``streams.APPEND_ATTEMPTS``
  such runs in a row). On ``client_msg_id`` (index ``chat_sender_client_msg_id``, partial:
  string ids only) another writer stored that draft first: it answers with the stored original
  (``created=False``) and takes no seq, and the rest of the batch goes on at the seq it was
  given. (4) ``$max``-es the chat's ``last_seq`` (and ``last_activity_at``) to the largest seq
  stored, then (after the lock) flags the attachments and moves each sender's read position up
  with an upserted ``$max``. Steps 1-4 run under an in-process asyncio lock per chat, so one
  process never races itself and a retried ``client_msg_id`` is always seen by step 1 there.
  The work runs in a task shielded from the caller's cancellation, so it completes once begun.
  **Guaranteed, also across processes, outages and crashes:** a chat's seqs are exactly 1..N,
  each held by one stored message (a seq exists if and only if its message does, so none is
  skipped and none is duplicated); a ``(sender_id, client_msg_id)`` is stored once; a batch's
  messages have increasing seqs in batch order (consecutive unless another writer's messages
  land in between); a process that dies part-way leaves what it inserted, with no hole.
  **``last_seq`` is only a hint** that may lag the messages for a moment: between step 3 and
  4, or until the chat's next append after a crash between them. It never runs ahead of them,
  and it has caught up before ``append_messages`` returns, so before any event or response
  tells of the message. Where exactness matters the index answers instead: ``mark_read``
  clamps to the newest stored seq when asked past the hint, and the chat views take the newest
  message at or above the hint (``Chat.last_seq`` raised to it). ``get_chat`` returns the
  hint as it is.
* Read positions: ``read_positions`` documents with ``_id`` ``"<chat_id>:<user_id>"`` moved only by
  upserted ``$max``; ``mark_read`` clamps to the chat's newest message first (above).
* Membership: ``add_members`` reads the chat and then ``$push``-es the new ids with
  ``{member_ids: {$nin: new}}`` in the filter, so the push happens only if none of them joined
  meanwhile (else it reads again and retries): order is kept and nobody is added twice.
  ``remove_member`` is one ``$pull``. ``contact_ids`` is one ``distinct("member_ids")`` over the
  user's chats (index ``member_activity``).
* ``list_chat_views`` is three queries whatever the page size: the chats (index
  ``member_ids, last_activity_at desc, _id desc``), their last messages (one ``$or`` of
  ``(chat_id, seq >= last_seq)`` ranges, one message each unless a hint lags) and the caller's
  read positions (one ``$in`` on ``_id``).
* Streams (gap-free offsets, no reservation: an offset is taken by the insert of its entry
  under a unique index) are in ``mongo_streams.py``, the email methods in ``mongo_email.py``.
  Real-time events live only there: the former global event log (collection ``events`` and
  its counter ``{_id: "events"}`` in ``counters``) is no longer read or written, and
  ``migrate`` leaves a database's old copy alone (see ``mongo_docs.INDEXES``).

Collections, indexes, the document shapes and the translation of driver errors are in
``mongo_docs.py``. Datetimes are stored as BSON dates (millisecond precision, which
``messenger.clock.utcnow`` already truncates to) and come back tz-aware in UTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, DuplicateKeyError

from messenger.clock import utcnow
from messenger.ids import is_valid_id
from messenger.models import (
    AppendResult,
    Chat,
    ChatEvent,
    ChatEventWrite,
    ChatType,
    ChatView,
    Message,
    MessageDraft,
    RefreshSpend,
    SenderNotMember,
    SpendResult,
    Upload,
    User,
)
from messenger.names import name_key, prefix_bounds
from messenger.store.base import Store, check_seq_range
from messenger.store.errors import EmailTaken, StoreError, StoreUnavailable
from messenger.store.mongo_docs import (
    DUPLICATE_KEY,
    INDEXES,
    Doc,
    attachment_docs,
    bulk_upsert_max,
    duplicate_on,
    oid,
    read_key,
    read_position_update,
    read_position_upsert,
    ref,
    to_chat,
    to_message,
    to_token,
    to_upload,
    to_user,
    upload_doc,
)
from messenger.store.mongo_docs import guarded as _guarded  # mongo_email.py binds it by this name
from messenger.store.mongo_email import MongoEmailMixin
from messenger.store.mongo_streams import MongoStreamsMixin, StreamQueue
from messenger.store.recent_messages import RecentMessages
from messenger.store.streams import APPEND_ATTEMPTS, HeadCache

#: How long a write waits for its write concern before failing (``StoreUnavailable``).
WRITE_TIMEOUT_MS = 10_000
#: ``add_members`` retries its conditional push this often while concurrent changes win.
ADD_MEMBERS_ATTEMPTS = 20
#: Users given their name key per write by ``migrate`` (``_fill_name_keys``).
_FILL_BATCH = 500


class KeyedLocks:
    """One ``asyncio.Lock`` per key, created on demand and dropped as soon as nobody holds or
    waits for it (so the map never grows beyond the keys in use)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                del self._locks[key]


class MongoStore(MongoEmailMixin, MongoStreamsMixin, Store):
    """``Store`` on a MongoDB database; see the module docstring for the consistency design."""

    backend = "mongodb"

    def __init__(
        self,
        url: str,
        db_name: str,
        *,
        write_concern: str | int = "majority",
        timeout_ms: int = 5000,
    ) -> None:
        self.url = url
        self.db_name = db_name
        self.write_concern = write_concern
        self.timeout_ms = timeout_ms
        self._client: AsyncIOMotorClient | None = None
        self._database: AsyncIOMotorDatabase | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._chat_locks = KeyedLocks()
        self._stream_queues: dict[str, StreamQueue] = {}  # append_stream, per stream
        self._stream_heads = HeadCache()
        self._epoch: str | None = None
        self._appends: set[asyncio.Task[Any]] = set()
        self._recent: RecentMessages[Message] = RecentMessages()  # history reads

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def _db(self) -> AsyncIOMotorDatabase:
        """The database, with a client made on first use in the running event loop."""
        if self._closed:
            raise StoreUnavailable("the mongodb store is closed")
        loop = asyncio.get_running_loop()
        if self._database is None or self._loop is not loop:
            if self._client is not None:  # first used in another (finished) loop
                self._client.close()
            self._client = AsyncIOMotorClient(
                self.url,
                tz_aware=True,
                tzinfo=UTC,
                serverSelectionTimeoutMS=self.timeout_ms,
                connectTimeoutMS=self.timeout_ms,
                appname="messenger",
            )
            self._database = self._client.get_database(
                self.db_name,
                write_concern=WriteConcern(w=self.write_concern, wtimeout=WRITE_TIMEOUT_MS),
            )
            self._loop = loop
            self._chat_locks = KeyedLocks()
            self._stream_queues = {}
        return self._database

    # -- lifecycle ---------------------------------------------------------------------------
    @_guarded
    async def migrate(self) -> None:
        db = self._db
        for name, indexes in INDEXES.items():
            await db[name].create_indexes(indexes)
        await self._fill_name_keys()
        await self.stream_epoch()  # made now if this database has none

    async def _fill_name_keys(self) -> None:
        """Give the users stored before name keys existed theirs (index ``name_key`` finds
        them), each only while its name is still the one read: a rename meanwhile wrote its own
        key. Idempotent, so processes migrating together agree."""
        users = self._db.users
        batch: list[UpdateOne] = []
        async for doc in users.find({"name_key": {"$exists": False}}, {"display_name": 1}):
            name = doc["display_name"]
            batch.append(UpdateOne(
                {"_id": doc["_id"], "display_name": name, "name_key": {"$exists": False}},
                {"$set": {"name_key": name_key(name)}},
            ))
            if len(batch) == _FILL_BATCH:
                await users.bulk_write(batch, ordered=False)
                batch = []
        if batch:
            await users.bulk_write(batch, ordered=False)

    @_guarded
    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        if self._closed:
            return
        if self._appends:  # let appends that lost their caller finish their writes
            await asyncio.gather(*self._appends, return_exceptions=True)
        self._closed = True
        client, self._client, self._database = self._client, None, None
        if client is not None:
            client.close()

    # -- users -------------------------------------------------------------------------------
    @_guarded
    async def create_user(self, email: str, password_hash: bytes, display_name: str) -> User:
        user_oid = ObjectId()
        doc = {
            "_id": user_oid,
            "email": email,
            "display_name": display_name,
            "name_key": name_key(display_name),
            "password_hash": bytes(password_hash),
            "created_at": utcnow(),
        }
        try:
            await self._db.users.insert_one(doc)
        except DuplicateKeyError as exc:
            if duplicate_on(exc.details, "email"):
                raise EmailTaken(email) from None
            raise
        return to_user(doc)

    @_guarded
    async def get_user(self, user_id: str) -> User | None:
        user_oid = oid(user_id)
        if user_oid is None:
            return None
        doc = await self._db.users.find_one({"_id": user_oid})
        return to_user(doc) if doc else None

    @_guarded
    async def get_user_by_email(self, email: str) -> User | None:
        doc = await self._db.users.find_one({"email": email})
        return to_user(doc) if doc else None

    @_guarded
    async def get_users(self, user_ids: Sequence[str]) -> list[User]:
        return [to_user(doc) for doc in await self._docs_by_ids(self._db.users, user_ids)]

    @_guarded
    async def set_display_name(self, user_id: str, display_name: str) -> User | None:
        user_oid = oid(user_id)
        if user_oid is None:
            return None
        doc = await self._db.users.find_one_and_update(
            {"_id": user_oid},
            {"$set": {"display_name": display_name, "name_key": name_key(display_name)}},
            return_document=ReturnDocument.AFTER,
        )
        return to_user(doc) if doc else None

    @_guarded
    async def search_contacts(self, user_id: str, prefix: str, limit: int) -> list[User]:
        user_oid = oid(user_id)
        if user_oid is None or limit <= 0:
            return []
        db = self._db
        # The caller's contacts (index member_activity, as contact_ids), then those of them in
        # the key range: by _id, or along index name_key in order, whichever the planner finds
        # cheaper; both read only contacts' documents.
        members = await db.chats.distinct("member_ids", {"member_ids": user_oid})
        contacts = [member for member in members if member != user_oid]
        if not contacts:
            return []
        low, high = prefix_bounds(prefix)
        key_range: Doc = {"$gte": low} if high is None else {"$gte": low, "$lt": high}
        cursor = (
            db.users.find({"_id": {"$in": contacts}, "name_key": key_range})
            .sort([("name_key", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [to_user(doc) for doc in await cursor.to_list(None)]

    async def _docs_by_ids(self, collection: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The documents of ``collection`` among ``ids`` (malformed ids find nothing)."""
        oids = list(dict.fromkeys(found for found in map(oid, ids) if found is not None))
        if not oids:
            return []
        docs: list[dict[str, Any]] = await collection.find({"_id": {"$in": oids}}).to_list(None)
        return docs

    # -- refresh tokens ----------------------------------------------------------------------
    @_guarded
    async def add_refresh_token(
        self, jti: str, family_id: str, user_id: str, expires_at: datetime
    ) -> None:
        db = self._db
        user_oid = ref(user_id, "user_id")
        await db.token_families.update_one(
            {"_id": family_id},
            {
                "$setOnInsert": {"user_id": user_oid, "revoked": False},
                "$max": {"expires_at": expires_at},  # kept until its last token expires
            },
            upsert=True,
        )
        await db.refresh_tokens.insert_one(
            {
                "_id": jti,
                "family_id": family_id,
                "user_id": user_oid,
                "spent": False,
                "expires_at": expires_at,
            }
        )

    @_guarded
    async def spend_refresh_token(self, jti: str) -> SpendResult:
        db = self._db
        doc = await db.refresh_tokens.find_one({"_id": jti})
        if doc is None:
            return SpendResult(RefreshSpend.UNKNOWN, None)
        token = to_token(doc)
        family = await db.token_families.find_one({"_id": token.family_id}, {"revoked": 1})
        if family is None:  # orphaned token: nothing to rotate from
            return SpendResult(RefreshSpend.UNKNOWN, None)
        if family.get("revoked"):
            return SpendResult(RefreshSpend.REVOKED, token)
        now = utcnow()
        if token.expires_at <= now:
            return SpendResult(RefreshSpend.UNKNOWN, None)
        spent = await db.refresh_tokens.find_one_and_update(
            {"_id": jti, "spent": False, "expires_at": {"$gt": now}},
            {"$set": {"spent": True}},
            projection={"_id": 1},
        )
        if spent is not None:
            return SpendResult(RefreshSpend.SPENT, token)
        # Lost the race (or it was spent before): tell a reuse from a token that just vanished.
        again = await db.refresh_tokens.find_one({"_id": jti}, {"spent": 1, "expires_at": 1})
        if again is None or (not again["spent"] and again["expires_at"] <= now):
            return SpendResult(RefreshSpend.UNKNOWN, None)
        return SpendResult(RefreshSpend.REUSED, token)

    @_guarded
    async def revoke_token_family(self, family_id: str) -> None:
        await self._db.token_families.update_one({"_id": family_id}, {"$set": {"revoked": True}})

    @_guarded
    async def revoke_user_tokens(self, user_id: str) -> None:
        user_oid = oid(user_id)
        if user_oid is None:
            return
        await self._db.token_families.update_many(
            {"user_id": user_oid, "revoked": False}, {"$set": {"revoked": True}}
        )

    # -- chats -------------------------------------------------------------------------------
    @_guarded
    async def create_chat(
        self,
        chat_type: ChatType,
        member_ids: Sequence[str],
        title: str | None,
        direct_key: str | None,
    ) -> tuple[Chat, bool]:
        db = self._db
        members = [ref(user_id, "member id") for user_id in dict.fromkeys(member_ids)]
        if direct_key is not None:
            found = await db.chats.find_one({"direct_key": direct_key})
            if found is not None:
                return to_chat(found), False
        now = utcnow()
        doc: Doc = {
            "_id": ObjectId(),
            "type": str(chat_type),
            "title": title,
            "member_ids": members,
            "created_at": now,
            "last_seq": 0,
            "last_activity_at": now,
        }
        if direct_key is not None:
            doc["direct_key"] = direct_key
        try:
            await db.chats.insert_one(doc)
        except DuplicateKeyError as exc:
            if direct_key is None or not duplicate_on(exc.details, "direct_key"):
                raise
            found = await db.chats.find_one({"direct_key": direct_key})
            if found is None:
                raise StoreError(f"direct chat {direct_key} vanished after a key clash") from exc
            return to_chat(found), False
        return to_chat(doc), True

    @_guarded
    async def get_chat(self, chat_id: str) -> Chat | None:
        chat_oid = oid(chat_id)
        if chat_oid is None:
            return None
        doc = await self._db.chats.find_one({"_id": chat_oid})
        return to_chat(doc) if doc else None

    @_guarded
    async def set_chat_streamed(self, chat_id: str) -> None:
        chat_oid = oid(chat_id)
        if chat_oid is not None:
            await self._db.chats.update_one(
                {"_id": chat_oid, "streamed": {"$ne": True}}, {"$set": {"streamed": True}}
            )

    @_guarded
    async def streamed_chats(self, user_id: str) -> list[str]:
        """See ``Store.streamed_chats``: the user's chats by the index ``member_activity``,
        the flagged ones kept."""
        user_oid = oid(user_id)
        if user_oid is None:
            return []
        docs = await self._db.chats.find(
            {"member_ids": user_oid, "streamed": True}, {"_id": 1}
        ).to_list(None)
        return [str(doc["_id"]) for doc in docs]

    @_guarded
    async def get_chat_view(self, chat_id: str, user_id: str) -> ChatView | None:
        db = self._db
        chat_oid = oid(chat_id)
        if chat_oid is None:
            return None
        doc = await db.chats.find_one({"_id": chat_oid})
        if doc is None:
            return None
        newest, read_seq = await asyncio.gather(
            db.messages.find(_newest_messages(doc)).sort("seq", DESCENDING).limit(1).to_list(None),
            db.read_positions.find_one({"_id": read_key(chat_id, user_id)}, {"seq": 1})
            if is_valid_id(user_id)
            else _none(),
        )
        last_message = to_message(newest[0]) if newest else None
        return ChatView(
            _caught_up(doc, last_message), last_message, read_seq["seq"] if read_seq else 0
        )

    @_guarded
    async def list_chat_views(self, user_id: str, limit: int) -> list[ChatView]:
        db = self._db
        user_oid = oid(user_id)
        if user_oid is None or limit <= 0:
            return []
        chats = (
            await db.chats.find({"member_ids": user_oid})
            .sort([("last_activity_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list(None)
        )
        if not chats:
            return []
        keys = [read_key(str(c["_id"]), user_id) for c in chats]
        last_docs, read_docs = await asyncio.gather(
            db.messages.find({"$or": [_newest_messages(c) for c in chats]}).to_list(None),
            db.read_positions.find({"_id": {"$in": keys}}, {"seq": 1}).to_list(None),
        )
        last_by_chat: dict[ObjectId, Message] = {}
        for doc in last_docs:  # usually one per chat: more only while a hint lags
            found = last_by_chat.get(doc["chat_id"])
            if found is None or doc["seq"] > found.seq:
                last_by_chat[doc["chat_id"]] = to_message(doc)
        read_by_key = {doc["_id"]: doc["seq"] for doc in read_docs}
        return [
            ChatView(
                _caught_up(c, last_by_chat.get(c["_id"])),
                last_by_chat.get(c["_id"]),
                read_by_key.get(key, 0),
            )
            for c, key in zip(chats, keys, strict=True)
        ]

    @_guarded
    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int:
        db = self._db
        chat_oid, user_oid = oid(chat_id), oid(user_id)
        if chat_oid is None or user_oid is None:
            return 0
        chat = await db.chats.find_one({"_id": chat_oid}, {"last_seq": 1})
        if chat is None:
            return 0
        top = chat["last_seq"]
        if seq > top:  # the hint may lag messages just stored (module docstring): the index
            top = max(top, await _newest_seq(db, chat_oid))
        target = max(0, min(seq, top))
        key = read_key(chat_id, user_id)
        if target == 0:  # nothing to move: just report where the reader is
            doc = await db.read_positions.find_one({"_id": key}, {"seq": 1})
            return doc["seq"] if doc else 0
        doc = await _raise_read_position(db, key, read_position_update(chat_oid, user_oid, target))
        return doc["seq"]

    @_guarded
    async def add_members(self, chat_id: str, user_ids: Sequence[str]) -> Chat:
        """See ``Store.add_members``: a conditional ``$push`` (only while none of the new ids is
        a member), retried when a concurrent change got there first."""
        db = self._db
        chat_oid = oid(chat_id)
        if chat_oid is None:
            raise StoreError(f"no chat {chat_id!r}")
        wanted = [ref(user_id, "member id") for user_id in dict.fromkeys(user_ids)]
        for _ in range(ADD_MEMBERS_ATTEMPTS):
            doc = await db.chats.find_one({"_id": chat_oid})
            if doc is None:
                raise StoreError(f"no chat {chat_id}")
            current = set(doc["member_ids"])
            new = [user_oid for user_oid in wanted if user_oid not in current]
            if not new:
                return to_chat(doc)
            updated = await db.chats.find_one_and_update(
                {"_id": chat_oid, "member_ids": {"$nin": new}},
                {"$push": {"member_ids": {"$each": new}}},
                return_document=ReturnDocument.AFTER,
            )
            if updated is not None:
                return to_chat(updated)
        raise StoreError(f"chat {chat_id}: members kept changing while adding")

    @_guarded
    async def remove_member(self, chat_id: str, user_id: str) -> Chat:
        db = self._db
        chat_oid, user_oid = oid(chat_id), oid(user_id)
        if chat_oid is None:
            raise StoreError(f"no chat {chat_id!r}")
        if user_oid is None:  # never a member
            doc = await db.chats.find_one({"_id": chat_oid})
        else:
            doc = await db.chats.find_one_and_update(
                {"_id": chat_oid},
                {"$pull": {"member_ids": user_oid}},
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise StoreError(f"no chat {chat_id}")
        return to_chat(doc)

    @_guarded
    async def contact_ids(self, user_id: str, max_chat_size: int | None = None) -> set[str]:
        user_oid = oid(user_id)
        if user_oid is None:
            return set()
        # One command: the member_ids of the user's chats (index member_activity), deduplicated
        # by the server. A chat has at most N members iff its array has no element N.
        query: dict[str, Any] = {"member_ids": user_oid}
        if max_chat_size is not None:
            query[f"member_ids.{max_chat_size}"] = {"$exists": False}
        members = await self._db.chats.distinct("member_ids", query)
        return {str(member) for member in members if member != user_oid}

    # -- messages ----------------------------------------------------------------------------
    async def append_messages_with_events(
        self, chat_id: str, drafts: Sequence[MessageDraft],
        event_of: Callable[[Message], ChatEvent],
    ) -> tuple[list[AppendResult | SenderNotMember], list[tuple[ChatEvent, ChatEventWrite]] | None]:
        """See ``Store.append_messages_with_events``: without a transaction the events cannot
        be stored with the messages, so this is ``append_messages`` alone (events ``None``)."""
        results = await self.append_messages(chat_id, drafts)
        created = any(type(r) is AppendResult and r.created for r in results)
        return results, (None if created else [])

    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]:
        """See ``Store.append_messages``. Raises ``StoreError`` if the chat does not exist."""
        if not drafts:
            return []
        chat_oid = oid(chat_id)
        if chat_oid is None:
            raise StoreError(f"no chat {chat_id!r}")
        senders = {draft.sender_id: ref(draft.sender_id, "sender_id") for draft in drafts}
        for draft in drafts:
            attachment_docs(draft.attachments)  # a malformed id fails before anything is stored
        # Shielded: once started, the append finishes even if the caller goes away, so what it
        # stored gets its attachments marked, its senders' read positions and the chat's
        # ``last_seq`` hint moved.
        task = asyncio.ensure_future(self._append(chat_id, chat_oid, senders, list(drafts)))
        self._appends.add(task)
        task.add_done_callback(self._appends.discard)
        task.add_done_callback(_retrieve_exception)
        return await asyncio.shield(task)

    @_guarded
    async def _append(
        self,
        chat_id: str,
        chat_oid: ObjectId,
        senders: dict[str, ObjectId],
        drafts: list[MessageDraft],
    ) -> list[AppendResult | SenderNotMember]:
        db = self._db
        async with self._chat_locks.hold(chat_id):
            results, created = await _append_locked(db, chat_id, chat_oid, senders, drafts)
        attached = [ref(a.id, "attachment id") for m in created for a in m.attachments]
        if attached:
            await db.uploads.update_many({"_id": {"$in": attached}}, {"$set": {"attached": True}})
        read_up: dict[str, int] = {}
        for message in created:
            read_up[message.sender_id] = max(read_up.get(message.sender_id, 0), message.seq)
        if read_up:
            await bulk_upsert_max(
                db.read_positions,
                [
                    read_position_upsert(chat_oid, senders[sender], seq)
                    for sender, seq in read_up.items()
                ],
            )
        return results

    @_guarded
    async def get_message(self, chat_id: str, message_id: str) -> Message | None:
        chat_oid, message_oid = oid(chat_id), oid(message_id)
        if chat_oid is None or message_oid is None:
            return None
        doc = await self._db.messages.find_one({"_id": message_oid, "chat_id": chat_oid})
        return to_message(doc) if doc else None

    @_guarded
    async def list_messages(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        chat_oid = oid(chat_id)
        limit = max(limit, 0)
        if chat_oid is None:
            return [], False
        query: Doc = {"chat_id": chat_oid}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        docs = (
            await self._db.messages.find(query)
            .sort("seq", DESCENDING)
            .limit(limit + 1)  # never 0, which would mean "no limit"
            .to_list(None)
        )
        recent = self._recent
        page = [recent.of(str(doc["_id"]), doc, to_message) for doc in reversed(docs[:limit])]
        return page, len(docs) > limit

    async def list_messages_json(
        self, chat_id: str, before_seq: int | None, limit: int, member_id: str
    ) -> tuple[list[bytes], bool]:
        """See ``Store.list_messages_json``: the membership, then the page; each message
        encoded once and kept with it (the recent ones are reused, ``RecentMessages``)."""
        chat_oid, member_oid = oid(chat_id), oid(member_id)
        if chat_oid is None or member_oid is None or await self._db.chats.find_one(
                {"_id": chat_oid, "member_ids": member_oid}, projection={"_id": 1}) is None:
            return [], False
        page, more = await self.list_messages(chat_id, before_seq, limit)
        return [message.json_bytes() for message in page], more

    @_guarded
    async def messages_in_seq_range(
        self, chat_id: str, first_seq: int, last_seq: int
    ) -> list[Message]:
        """See ``Store.messages_in_seq_range``: one range of the index ``chat_seq``."""
        span = check_seq_range(first_seq, last_seq)
        chat_oid = oid(chat_id)
        if span == 0 or chat_oid is None:
            return []
        docs = (
            await self._db.messages.find(
                {"chat_id": chat_oid, "seq": {"$gte": first_seq, "$lte": last_seq}}
            )
            .sort("seq", ASCENDING)
            .limit(span)
            .to_list(None)
        )
        return [to_message(doc) for doc in docs]

    # -- uploads and attachments -------------------------------------------------------------
    @_guarded
    async def add_upload(self, upload: Upload) -> None:
        await self._db.uploads.insert_one(upload_doc(upload))

    @_guarded
    async def get_uploads(self, upload_ids: Sequence[str]) -> list[Upload]:
        return [to_upload(doc) for doc in await self._docs_by_ids(self._db.uploads, upload_ids)]

    @_guarded
    async def mark_upload_ready(self, upload_id: str, object_key: str) -> Upload | None:
        upload_oid = oid(upload_id)
        if upload_oid is None:
            return None
        doc = await self._db.uploads.find_one_and_update(
            {"_id": upload_oid, "status": "pending"},
            {"$set": {"status": "ready", "key": object_key}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # ready already (its key stays), or no such upload
            doc = await self._db.uploads.find_one({"_id": upload_oid})
        return to_upload(doc) if doc else None

    @_guarded
    async def messages_with_attachments(self, attachment_ids: Sequence[str]) -> list[Message]:
        oids = list(dict.fromkeys(found for found in map(oid, attachment_ids) if found))
        if not oids:
            return []
        docs = await self._db.messages.find({"attachments.id": {"$in": oids}}).to_list(None)
        return [to_message(doc) for doc in docs]

    @_guarded
    async def list_unattached_uploads(self, created_before: datetime, limit: int) -> list[Upload]:
        if limit <= 0:
            return []
        db = self._db
        docs = (
            await db.uploads.find({"attached": False, "created_at": {"$lt": created_before}})
            .sort("created_at", ASCENDING)
            .limit(limit)
            .to_list(None)
        )
        if not docs:
            return []
        # A crash between storing a message and flagging its uploads leaves the flag unset:
        # whatever a stored message carries is attached, whatever the flag says.
        carried = {
            str(item["id"])
            for message in await db.messages.find(
                {"attachments.id": {"$in": [doc["_id"] for doc in docs]}}, {"attachments": 1}
            ).to_list(None)
            for item in message["attachments"]
        }
        if carried:
            await db.uploads.update_many(
                {"_id": {"$in": [ObjectId(upload_id) for upload_id in carried]}},
                {"$set": {"attached": True}},
            )
        return [to_upload(doc) for doc in docs if str(doc["_id"]) not in carried]

    @_guarded
    async def delete_upload(self, upload_id: str) -> bool:
        upload_oid = oid(upload_id)
        if upload_oid is None:
            return False
        db = self._db
        if await db.messages.find_one({"attachments.id": upload_oid}, {"_id": 1}) is not None:
            await db.uploads.update_one({"_id": upload_oid}, {"$set": {"attached": True}})
            return False
        result = await db.uploads.delete_one({"_id": upload_oid, "attached": False})
        return result.deleted_count > 0


# -- append_messages, under the chat's lock --------------------------------------------------
async def _append_locked(
    db: AsyncIOMotorDatabase,
    chat_id: str,
    chat_oid: ObjectId,
    senders: dict[str, ObjectId],
    drafts: list[MessageDraft],
) -> tuple[list[AppendResult | SenderNotMember], list[Message]]:
    """Steps 1-4 of the module docstring: look up replays, check membership, insert at the
    next free seqs, raise the chat's ``last_seq`` hint.

    Returns one result per draft and the messages this call actually stored.
    """
    keys = {
        (draft.sender_id, draft.client_msg_id)
        for draft in drafts
        if draft.client_msg_id is not None
    }
    stored: dict[tuple[str, str], Message] = {}
    if keys:
        docs = await db.messages.find(
            {
                "chat_id": chat_oid,
                "client_msg_id": {"$type": "string"},
                "$or": [
                    {"sender_id": senders[sender], "client_msg_id": client_msg_id}
                    for sender, client_msg_id in sorted(keys)
                ],
            }
        ).to_list(None)
        for doc in docs:
            stored[(str(doc["sender_id"]), doc["client_msg_id"])] = to_message(doc)

    # Plan: which drafts are new, and which repeat a stored or an earlier new message.
    fresh: list[MessageDraft] = []
    fresh_index: dict[tuple[str, str], int] = {}
    # Per draft: a stored original, or (index into ``fresh``, whether this draft is the first).
    plan: list[Message | tuple[int, bool]] = []
    for draft in drafts:
        key = None if draft.client_msg_id is None else (draft.sender_id, draft.client_msg_id)
        if key is not None and key in stored:
            plan.append(stored[key])
        elif key is not None and key in fresh_index:
            plan.append((fresh_index[key], False))
        else:
            if key is not None:
                fresh_index[key] = len(fresh)
            plan.append((len(fresh), True))
            fresh.append(draft)
    if not fresh:
        return [AppendResult(item, False) for item in plan if isinstance(item, Message)], []

    now = utcnow()
    live, hint = await _check_members(db, chat_id, chat_oid, senders, fresh, now)
    # Per fresh draft: its message (None: refused, the sender is not a member), and whether
    # this call stored it (False: another writer stored its client_msg_id first).
    messages: list[Message | None] = [None] * len(fresh)
    inserted = [False] * len(fresh)
    if live:
        batch = MessageBatchInsert(chat_oid, senders, fresh, live, now)
        top = await batch.insert(db, hint, messages, inserted)
        if top:  # the hint catches up before this append returns (module docstring)
            await db.chats.update_one(
                {"_id": chat_oid}, {"$max": {"last_seq": top, "last_activity_at": now}}
            )

    results: list[AppendResult | SenderNotMember] = []
    for item in plan:
        if isinstance(item, Message):
            results.append(AppendResult(item, False))
            continue
        message = messages[item[0]]
        if message is None:
            results.append(SenderNotMember(fresh[item[0]].sender_id))
        else:
            results.append(AppendResult(message, inserted[item[0]] and item[1]))
    created = [m for m, ok in zip(messages, inserted, strict=True) if ok and m is not None]
    return results, created


async def _check_members(
    db: AsyncIOMotorDatabase,
    chat_id: str,
    chat_oid: ObjectId,
    senders: dict[str, ObjectId],
    fresh: list[MessageDraft],
    now: datetime,
) -> tuple[list[int], int]:
    """The store's last word on membership, right before the insert: one single-document update
    of the chat that matches only while every sender is a member (and ``$max``-es
    ``last_activity_at``). Returns the indexes into ``fresh`` of the drafts whose senders are
    members, and the chat's ``last_seq`` hint read by that same update.

    When a sender is not a member, the update matches nothing; the chat is read, the
    non-members' drafts are left out, and the update is tried again for the rest.
    """
    live = list(range(len(fresh)))
    for _ in range(ADD_MEMBERS_ATTEMPTS):
        if not live:
            return [], 0
        needed = list(dict.fromkeys(senders[fresh[i].sender_id] for i in live))
        chat = await db.chats.find_one_and_update(
            {"_id": chat_oid, "member_ids": {"$all": needed}},
            {"$max": {"last_activity_at": now}},
            projection={"last_seq": 1},
        )
        if chat is not None:
            return live, chat["last_seq"]
        doc = await db.chats.find_one({"_id": chat_oid}, {"member_ids": 1})
        if doc is None:
            raise StoreError(f"no chat {chat_id}")
        members = set(doc["member_ids"])
        live = [i for i in live if senders[fresh[i].sender_id] in members]
    raise StoreError(f"chat {chat_id}: members kept changing while sending")


class MessageBatchInsert:
    """The insert of a batch's new messages at the chat's next free seqs (the module docstring,
    step 3): a seq is taken by the insert of its message under the unique index ``chat_seq``,
    and nothing is reserved, so a seq exists exactly when its message does."""

    def __init__(
        self,
        chat_oid: ObjectId,
        senders: dict[str, ObjectId],
        fresh: list[MessageDraft],
        live: list[int],
        now: datetime,
    ) -> None:
        self.chat_oid = chat_oid
        self.senders = senders
        self.fresh = fresh
        self.live = live
        self.now = now

    def doc(self, index: int, seq: int) -> Doc:
        draft = self.fresh[index]
        doc: Doc = {
            "_id": ObjectId(),
            "chat_id": self.chat_oid,
            "seq": seq,
            "sender_id": self.senders[draft.sender_id],
            "text": draft.text,
            "client_msg_id": draft.client_msg_id,
            "created_at": self.now,
        }
        if draft.attachments:
            doc["attachments"] = attachment_docs(draft.attachments)
        return doc

    async def insert(
        self,
        db: AsyncIOMotorDatabase,
        head: int,
        messages: list[Message | None],
        inserted: list[bool],
    ) -> int:
        """Insert the live drafts in batch order after ``head`` (a guess: the chat's
        ``last_seq`` hint); fill ``messages`` and ``inserted`` per fresh index. Returns the
        largest seq this call stored (0 for none)."""
        pending = list(self.live)
        top = 0
        lost = 0  # runs in a row that another writer's message stopped at their first seq
        stepped = False  # ``head`` is a seq another writer took, not one read from the index
        while pending:
            docs = [self.doc(i, head + 1 + n) for n, i in enumerate(pending)]
            landed, clash = await _insert_messages(db, docs)
            for doc, i in zip(docs[:landed], pending, strict=False):
                messages[i], inserted[i] = to_message(doc), True
            if landed:
                top, lost = docs[landed - 1]["seq"], 0
            pending = pending[landed:]
            if clash is None:
                break
            if clash == "client_msg_id":
                # Another writer stored this draft's client_msg_id first: answer with its
                # message. The seq it was given is free, and the rest go on from there.
                index = pending.pop(0)
                messages[index] = await self.original(db, index)
                head, stepped = docs[landed]["seq"] - 1, stepped and not landed
                continue
            lost = 0 if landed else lost + 1
            if lost >= APPEND_ATTEMPTS:
                raise StoreError(f"chat {self.chat_oid}: other writers kept taking the next seq")
            if stepped and not landed:  # the other writer is further on: read where it is
                head, stepped = await _newest_seq(db, self.chat_oid), False
            else:  # another writer holds the next seq: go on right after it
                head, stepped = docs[landed]["seq"], True
        return top

    async def original(self, db: AsyncIOMotorDatabase, index: int) -> Message:
        draft = self.fresh[index]
        doc = await db.messages.find_one(
            {
                "chat_id": self.chat_oid,
                "sender_id": self.senders[draft.sender_id],
                "client_msg_id": draft.client_msg_id,
            }
        )
        if doc is None:
            raise StoreError(f"mongodb: duplicate of a vanished message {draft.client_msg_id!r}")
        return to_message(doc)


async def _insert_messages(db: AsyncIOMotorDatabase, docs: list[Doc]) -> tuple[int, str | None]:
    """Insert ``docs`` in order: how many went in, and, if another writer's message stopped
    the rest, on what (``"seq"`` or ``"client_msg_id"``; None if all went in)."""
    try:
        await db.messages.insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise StoreUnavailable(f"mongodb: {exc}") from exc
        [error, *_] = exc.details.get("writeErrors") or [{}]
        if error.get("code") == DUPLICATE_KEY:
            # client_msg_id first: its index's key names no "seq", the seq index's no id
            for field in ("client_msg_id", "seq"):
                if duplicate_on(error, field):
                    return int(error["index"]), field
        raise StoreError(f"mongodb: message insert: {error or exc}") from exc
    return len(docs), None


async def _newest_seq(db: AsyncIOMotorDatabase, chat_oid: ObjectId) -> int:
    """The chat's largest stored seq (0 for none): one entry of the index ``chat_seq``."""
    docs = (
        await db.messages.find({"chat_id": chat_oid}, {"seq": 1, "_id": 0})
        .sort("seq", DESCENDING)
        .limit(1)
        .to_list(None)
    )
    return docs[0]["seq"] if docs else 0


# -- helpers ---------------------------------------------------------------------------------
def _newest_messages(chat: Doc) -> Doc:
    """A query for the chat's messages from its ``last_seq`` hint up (index ``chat_seq``): its
    newest message, and any stored above a hint that has not caught up yet."""
    return {"chat_id": chat["_id"], "seq": {"$gte": max(chat["last_seq"], 1)}}


def _caught_up(chat: Doc, newest: Message | None) -> Chat:
    """The chat, its ``last_seq`` raised to its newest stored message."""
    if newest is not None and newest.seq > chat["last_seq"]:
        chat = {**chat, "last_seq": newest.seq}
    return to_chat(chat)


async def _raise_read_position(db: AsyncIOMotorDatabase, key: str, update: Doc) -> Doc:
    """Upsert-``$max`` one read position and return it; a clash of two first upserts (which
    older servers report as a duplicate key) is retried once."""
    for attempt in (1, 2):
        try:
            return await db.read_positions.find_one_and_update(
                {"_id": key},
                update,
                projection={"seq": 1},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _none() -> None:
    return None


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    """Mark an orphaned append's failure as seen (its caller was cancelled and is gone)."""
    if not task.cancelled():
        task.exception()
