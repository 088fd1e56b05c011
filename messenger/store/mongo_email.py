"""The email part of the MongoDB adapter: email tokens, rate-limit slots, the outbox, presence and
digest bookkeeping (API_CONTRACT.md §10). Mixed into ``MongoStore``.

Like the rest of the adapter it uses no multi-document transactions; each guarantee rests on one
atomic single-document operation:

* a token is spent by ``find_one_and_delete`` (of concurrent spends exactly one gets it back);
* a rate-limit slot is taken by a conditional ``find_one_and_update`` (``at <= now - interval``),
  or by the ``insert_one`` of a first slot, where the unique ``_id`` decides a race;
* a mail is claimed by ``find_one_and_update`` on ``status: pending, next_attempt_at <= now``
  that moves ``next_attempt_at`` to the lease's end and sets a fresh ``lease_id``: a second
  mailer no longer matches it. Outcomes are written only with the matching ``lease_id``;
* presence reports are applied only when not older than the stored one, and digest checks are
  compare-and-set on ``check_at``.

Collections and indexes are declared in ``mongo_docs.INDEXES``.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from messenger.clock import utcnow
from messenger.models import DigestCheck, EmailTokenPurpose, MailStatus, OutboxMail, User
from messenger.store.mongo_docs import Doc, oid, ref, to_user, utc

_MEMBER_CHUNK = 1000


def _guarded[**P, T](fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``mongo._guarded`` (driver errors -> ``StoreUnavailable`` / ``StoreError``), bound late:
    that module imports this one."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        guard = sys.modules["messenger.store.mongo"]._guarded
        return await guard(fn)(*args, **kwargs)

    return wrapper


class MongoEmailMixin:
    """Email, outbox and digest methods of ``MongoStore`` (see ``Store`` for the semantics)."""

    _db: Any  # MongoStore's database property
    revoke_user_tokens: Callable[[str], Awaitable[None]]  # MongoStore's

    # -- users -----------------------------------------------------------------------------------
    @_guarded
    async def set_email_verified(self, user_id: str) -> User | None:
        user_oid = oid(user_id)
        if user_oid is None:
            return None
        doc = await self._db.users.find_one_and_update(
            {"_id": user_oid},
            {"$set": {"email_verified": True}},
            return_document=ReturnDocument.AFTER,
        )
        return to_user(doc) if doc else None

    @_guarded
    async def set_password(self, user_id: str, password_hash: bytes) -> bool:
        user_oid = oid(user_id)
        if user_oid is None:
            return False
        # Revoke, set, revoke again: a session that logs in with the old password while this
        # runs is revoked by the second pass; one that logs in after it needs the new password.
        await self.revoke_user_tokens(user_id)
        result = await self._db.users.update_one(
            {"_id": user_oid}, {"$set": {"password_hash": bytes(password_hash)}}
        )
        await self.revoke_user_tokens(user_id)
        return bool(result.matched_count)

    # -- email tokens ----------------------------------------------------------------------------
    @_guarded
    async def add_email_token(
        self, token_hash: str, user_id: str, purpose: EmailTokenPurpose, expires_at: datetime
    ) -> None:
        await self._db.email_tokens.insert_one(
            {
                "_id": token_hash,
                "user_id": ref(user_id, "user_id"),
                "purpose": str(purpose),
                "expires_at": expires_at,
            }
        )

    @_guarded
    async def consume_email_token(self, token_hash: str, purpose: EmailTokenPurpose) -> str | None:
        db = self._db
        doc = await db.email_tokens.find_one_and_delete(
            {"_id": token_hash, "purpose": str(purpose)}
        )
        if doc is None or utc(doc["expires_at"]) <= utcnow():
            return None
        await db.email_tokens.delete_many({"user_id": doc["user_id"], "purpose": str(purpose)})
        return str(doc["user_id"])

    @_guarded
    async def claim_send_slot(self, key: str, now: datetime, interval: float) -> float:
        slots = self._db.send_slots
        span = timedelta(seconds=interval)
        update = {"$set": {"at": now, "expires_at": now + span}}
        for _ in range(3):
            if await slots.find_one_and_update({"_id": key, "at": {"$lte": now - span}}, update):
                return 0.0
            try:
                await slots.insert_one({"_id": key, "at": now, "expires_at": now + span})
                return 0.0
            except DuplicateKeyError:
                pass
            doc = await slots.find_one({"_id": key})
            if doc is not None:
                left = (utc(doc["at"]) + span - now).total_seconds()
                if left > 0:
                    return left
            # it expired (or was purged) meanwhile: try again
        return interval

    # -- the outbox ------------------------------------------------------------------------------
    @_guarded
    async def enqueue_mail(self, mail: OutboxMail) -> None:
        await self._db.outbox.insert_one(_mail_doc(mail))

    @_guarded
    async def claim_mail(self, now: datetime, lease_until: datetime) -> OutboxMail | None:
        doc = await self._db.outbox.find_one_and_update(
            {"status": str(MailStatus.PENDING), "next_attempt_at": {"$lte": now}},
            {
                "$set": {"lease_id": secrets.token_hex(12), "next_attempt_at": lease_until},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return _mail(doc) if doc else None

    async def _finish_attempt(self, mail_id: str, lease_id: str, changes: Doc) -> bool:
        mail_oid = oid(mail_id)
        if mail_oid is None:
            return False
        result = await self._db.outbox.update_one(
            {"_id": mail_oid, "lease_id": lease_id, "status": str(MailStatus.PENDING)},
            {"$set": {**changes, "lease_id": None}},
        )
        return bool(result.modified_count)

    @_guarded
    async def mark_mail_sent(self, mail_id: str, lease_id: str, at: datetime) -> bool:
        return await self._finish_attempt(
            mail_id, lease_id, {"status": str(MailStatus.SENT), "finished_at": at}
        )

    @_guarded
    async def retry_mail(
        self, mail_id: str, lease_id: str, next_attempt_at: datetime, error: str
    ) -> bool:
        return await self._finish_attempt(
            mail_id, lease_id, {"next_attempt_at": next_attempt_at, "last_error": error}
        )

    @_guarded
    async def fail_mail(self, mail_id: str, lease_id: str, at: datetime, error: str) -> bool:
        return await self._finish_attempt(
            mail_id,
            lease_id,
            {"status": str(MailStatus.FAILED), "finished_at": at, "last_error": error},
        )

    @_guarded
    async def get_mail(self, mail_id: str) -> OutboxMail | None:
        mail_oid = oid(mail_id)
        doc = await self._db.outbox.find_one({"_id": mail_oid}) if mail_oid else None
        return _mail(doc) if doc else None

    @_guarded
    async def list_mail(self, recipient: str | None = None, limit: int = 100) -> list[OutboxMail]:
        query = {} if recipient is None else {"recipient": recipient}
        cursor = self._db.outbox.find(query).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]
        ).limit(limit)
        return [_mail(doc) for doc in await cursor.to_list(None)]

    @_guarded
    async def purge_outbox(self, finished_before: datetime) -> int:
        result = await self._db.outbox.delete_many(
            {"status": {"$ne": str(MailStatus.PENDING)}, "finished_at": {"$lt": finished_before}}
        )
        return int(result.deleted_count)

    @_guarded
    async def count_pending_mail(self) -> int:
        return int(await self._db.outbox.count_documents({"status": str(MailStatus.PENDING)}))

    # -- presence and digests --------------------------------------------------------------------
    @_guarded
    async def record_presence(self, user_id: str, online: bool, at: datetime) -> None:
        user_oid = ref(user_id, "user_id")
        changes: Doc = {"online": online, "changed_at": at}
        if not online:
            changes["check_at"] = at  # offline: look at a digest from then on
        # A newer report stored already: the filter misses it and the upsert's insert clashes.
        with contextlib.suppress(DuplicateKeyError):
            await self._db.presence.update_one(
                {"_id": user_oid, "changed_at": {"$lte": at}}, {"$set": changes}, upsert=True
            )

    @_guarded
    async def flag_digest_checks(self, active_since: datetime, at: datetime) -> None:
        db = self._db
        members: set[ObjectId] = set()
        async for chat in db.chats.find(
            {"last_activity_at": {"$gt": active_since}}, {"member_ids": 1}
        ):
            members.update(chat.get("member_ids", ()))
        ordered = sorted(members)
        for start in range(0, len(ordered), _MEMBER_CHUNK):
            await db.presence.update_many(
                {"_id": {"$in": ordered[start : start + _MEMBER_CHUNK]}, "online": False,
                 "check_at": None},
                {"$set": {"check_at": at}},
            )

    @_guarded
    async def digest_checks(self, due: datetime, limit: int) -> list[DigestCheck]:
        cursor = self._db.presence.find(
            # ($ne: null is implied by $lte on MongoDB; said outright for other servers)
            {"online": False, "check_at": {"$ne": None, "$lte": due}}
        ).sort([("check_at", ASCENDING)]).limit(limit)
        return [
            DigestCheck(
                str(doc["_id"]),
                utc(doc["changed_at"]),
                utc(doc["last_digest_at"]) if doc.get("last_digest_at") else None,
                utc(doc["check_at"]),
            )
            for doc in await cursor.to_list(None)
        ]

    @_guarded
    async def set_digest_check(
        self,
        user_id: str,
        expected: datetime,
        check_at: datetime | None,
        digest_sent_at: datetime | None = None,
    ) -> bool:
        user_oid = oid(user_id)
        if user_oid is None:
            return False
        query: Doc = {"_id": user_oid, "check_at": expected}
        changes: Doc = {"check_at": check_at}
        if digest_sent_at is not None:
            query["online"] = False
            changes["last_digest_at"] = digest_sent_at
        result = await self._db.presence.update_one(query, {"$set": changes})
        return bool(result.modified_count)


# -- documents <-> records -------------------------------------------------------------------------
def _mail_doc(mail: OutboxMail) -> Doc:
    return {
        "_id": ref(mail.id, "mail id"),
        "kind": mail.kind,
        "recipient": mail.recipient,
        "message": bytes(mail.message),
        "status": str(mail.status),
        "attempts": mail.attempts,
        "next_attempt_at": mail.next_attempt_at,
        "created_at": mail.created_at,
        "lease_id": mail.lease_id,
        "last_error": mail.last_error,
        "finished_at": mail.finished_at,
    }


def _mail(doc: Doc) -> OutboxMail:
    finished = doc.get("finished_at")
    return OutboxMail(
        str(doc["_id"]),
        doc["kind"],
        doc["recipient"],
        bytes(doc["message"]),
        MailStatus(doc["status"]),
        doc["attempts"],
        utc(doc["next_attempt_at"]),
        utc(doc["created_at"]),
        doc.get("lease_id"),
        doc.get("last_error"),
        utc(finished) if finished is not None else None,
    )
