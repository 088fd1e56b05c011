"""Uploads and attachments (API_CONTRACT.md §9): tickets, completion checks, the claim a send
makes, download grants, and the clean-up of expired uploads.

The bytes never pass through here: clients PUT them with a signed request the storage hands out
and GET them through a short-lived signed URL. This service decides who may do what:

* ``create_upload`` checks the declared type and size against the settings and records a
  pending upload owned by the caller; its upload URL writes to ``uploads/<upload id>``.
* ``complete`` copies what arrived to a key of its own, ``attachments/<upload id>-<nonce>``,
  that no upload URL ever points at, and checks that copy — it exists, has the declared size
  and type, and for images and PDF starts with that format's signature. Only a checked copy is
  marked ready (the first completion to finish wins; a concurrent one drops its copy), and
  downloads are served from it: bytes PUT to the upload URL afterwards (it may still be valid)
  reach nobody. A refused object is deleted, copy and upload both. Uploads completed before
  this scheme kept their bytes at ``attachments/<upload id>``, the key their record names, and
  are served from there.
* ``claim`` is the one check a send makes (``ChatService.send``, the chat actor): each id is a
  ready, unexpired upload of the sender's that no other message carries; it returns the
  ``Attachment`` records the message will carry. It reserves nothing: the store marks uploads
  attached when it stores the message. Two different sends racing with the same upload can both
  pass, and then both messages carry it — harmless, since access follows the messages (below).
* ``download`` grants a member of any chat where a message carrying the attachment was posted
  (membership as it is now); everyone else gets 404, as for an unknown id.
* ``clean_orphans`` deletes uploads never attached within ``UPLOAD_ORPHAN_AGE_SECONDS`` (plus a
  grace period, so a send that passed ``claim`` just before the deadline is never undercut):
  the objects first (the checked copy and whatever is at the upload key), then the record, so a
  failure leaves a record to retry from.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from messenger.clock import utcnow
from messenger.errors import (
    AttachmentInUse,
    AttachmentNotFound,
    AttachmentNotReady,
    ContentTypeNotAllowed,
    StorageUnavailable,
    UnknownAttachments,
    UploadMissing,
    UploadNotFound,
    UploadSizeMismatch,
    UploadTooLarge,
    UploadTypeMismatch,
    ValidationFailed,
)
from messenger.ids import is_valid_id, new_id
from messenger.models import Attachment, Upload, UploadStatus
from messenger.storage import ObjectStorage, SignedRequest, StorageError
from messenger.store import Store

log = logging.getLogger("messenger.attachments")

#: Where upload URLs write: ``uploads/<upload id>``.
UPLOAD_PREFIX = "uploads/"
#: Where checked copies live: ``attachments/<upload id>-<nonce>`` (before the copies,
#: ``attachments/<upload id>`` was both).
ATTACHMENT_PREFIX = "attachments/"
#: Uploads are deleted this long after they stopped being attachable.
CLEANUP_GRACE = timedelta(minutes=5)
CLEANUP_BATCH = 200

#: Declared types whose first bytes are checked at completion, and how.
_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/png": lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda head: head.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda head: head.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
    "application/pdf": lambda head: head.startswith(b"%PDF-"),
}
SIGNATURE_BYTES = 16
#: Shown in place (``Content-Disposition: inline``); everything else downloads as a file.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def signature_matches(content_type: str, head: bytes) -> bool:
    """Whether ``head`` starts like ``content_type`` (True for types without a signature)."""
    check = _SIGNATURES.get(content_type)
    return check is None or check(head)


def normalise_type(value: str) -> str:
    """``Image/PNG; charset=x`` -> ``image/png``."""
    return value.split(";", 1)[0].strip().lower()


def upload_key(upload_id: str) -> str:
    """The key the upload URL of ``upload_id`` writes to."""
    return UPLOAD_PREFIX + upload_id


def checked_key(upload_id: str) -> str:
    """A new key for the copy one completion checks; no upload URL ever points at it."""
    return f"{ATTACHMENT_PREFIX}{upload_id}-{secrets.token_hex(8)}"


class AttachmentService:
    def __init__(
        self,
        store: Store,
        storage: ObjectStorage,
        *,
        max_bytes: int,
        allowed_types: Sequence[str],
        url_ttl: int,
        orphan_age: int,
        max_per_message: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self.storage = storage
        self.max_bytes = max_bytes
        self.allowed_types = tuple(allowed_types)
        self.url_ttl = url_ttl
        self.orphan_age = timedelta(seconds=orphan_age)
        self.max_per_message = max_per_message
        self._clock = clock

    # -- uploads -----------------------------------------------------------------------------
    async def create_upload(
        self, owner_id: str, filename: str, content_type: str, size: int
    ) -> tuple[Upload, SignedRequest]:
        declared = normalise_type(content_type)
        if declared != content_type.strip().lower() or declared not in self.allowed_types:
            raise ContentTypeNotAllowed(
                f"content_type must be one of: {', '.join(self.allowed_types)}",
                field="content_type",
            )
        if size > self.max_bytes:
            raise UploadTooLarge(f"size must be at most {self.max_bytes} bytes", field="size")
        upload_id = new_id()
        upload = Upload(
            upload_id,
            owner_id,
            upload_key(upload_id),
            filename,
            declared,
            size,
            UploadStatus.PENDING,
            self._clock(),
        )
        request = await self._storage(
            self.storage.presign_upload(
                upload.object_key, content_type=declared, size=size, expires_in=self.url_ttl
            )
        )
        await self._store.add_upload(upload)
        return upload, request

    async def complete(self, owner_id: str, upload_id: str) -> Upload:
        upload = await self._own_upload(owner_id, upload_id)
        if upload.status is UploadStatus.READY:
            return upload
        # What is checked is a copy no upload URL can reach, and that copy is what recipients
        # download: a PUT after the check cannot change it.
        key = checked_key(upload.id)
        if not await self._storage(self.storage.copy(upload.object_key, key)):
            raise UploadMissing("nothing has been uploaded yet: PUT the file to upload_request")
        try:
            await self._check(upload, key)
            ready = await self._store.mark_upload_ready(upload.id, key)
        except (UploadSizeMismatch, UploadTypeMismatch):
            await self._discard(key)
            await self._discard(upload.object_key)  # refused: the client uploads it again
            raise
        except Exception:
            await self._discard(key)
            raise
        if ready is None or ready.object_key != key:
            # Cleaned up meanwhile, or a concurrent completion was marked first (its copy
            # stands and it deletes the upload): this copy is not needed.
            await self._discard(key)
            if ready is None:
                raise UploadNotFound("upload not found")
            return ready
        await self._discard(upload.object_key)  # checked and copied: the upload is done with
        return ready

    async def _check(self, upload: Upload, key: str) -> None:
        """Raise unless the object at ``key`` has the size and type ``upload`` declares."""
        info = await self._storage(self.storage.head(key))
        if info is None:  # gone between the copy and now
            raise UploadMissing("nothing has been uploaded yet: PUT the file to upload_request")
        if info.size != upload.size:
            raise UploadSizeMismatch(
                f"the uploaded file has {info.size} bytes, not the declared {upload.size}; "
                "upload it again"
            )
        if info.content_type is not None and normalise_type(info.content_type) != (
            upload.content_type
        ):
            raise UploadTypeMismatch(
                f"the file was uploaded as {normalise_type(info.content_type)!r}, not the "
                f"declared {upload.content_type!r}; upload it again"
            )
        if upload.content_type in _SIGNATURES:
            head = await self._storage(self.storage.read_start(key, SIGNATURE_BYTES))
            if not signature_matches(upload.content_type, head):
                raise UploadTypeMismatch(
                    f"the file's content is not {upload.content_type}; upload a real one"
                )

    async def accepts_upload(self, key: str) -> bool:
        """Whether bytes written to ``key`` (an upload URL's) can still become an attachment:
        only while it is the key of a pending upload. Once the upload is complete, what is at
        its upload key reaches nobody."""
        upload_id = key.rsplit("/", 1)[-1]
        found = await self._store.get_uploads([upload_id]) if is_valid_id(upload_id) else []
        return bool(found) and found[0].status is UploadStatus.PENDING and (
            found[0].object_key == key
        )

    async def _own_upload(self, owner_id: str, upload_id: str) -> Upload:
        found = await self._store.get_uploads([upload_id]) if is_valid_id(upload_id) else []
        if not found or found[0].owner_id != owner_id or self._expired(found[0]):
            raise UploadNotFound("upload not found")
        return found[0]

    def _expired(self, upload: Upload) -> bool:
        return not upload.attached and upload.created_at <= self._clock() - self.orphan_age

    async def _discard(self, key: str) -> None:
        try:
            await self.storage.delete(key)
        except StorageError as exc:  # the clean-up gets it later
            log.warning("could not delete refused upload %s: %s", key, exc)

    # -- sending -----------------------------------------------------------------------------
    async def claim(
        self,
        sender_id: str,
        attachment_ids: Sequence[str],
        *,
        chat_id: str | None = None,
        client_msg_id: str | None = None,
    ) -> tuple[Attachment, ...]:
        """The attachments a new message of ``sender_id`` may carry, in the order given.

        Raises ``ValidationFailed`` (malformed, repeated or too many ids),
        ``UnknownAttachments`` (not an upload of the sender's, or expired),
        ``AttachmentNotReady`` (not completed) or ``AttachmentInUse`` (another message carries
        it). Give ``chat_id`` and ``client_msg_id`` of the send so a retried send (same
        ``client_msg_id``) is not refused for the attachments its first attempt stored; the
        store then answers with the original message.
        """
        ids = list(attachment_ids)
        if not ids:
            return ()
        if len(ids) > self.max_per_message:
            raise ValidationFailed(
                "attachment_ids", f"attachment_ids must have at most {self.max_per_message} ids"
            )
        for attachment_id in ids:
            if not is_valid_id(attachment_id):
                raise ValidationFailed(
                    "attachment_ids", "attachment_ids must be 24-character hex ids"
                )
        if len(set(ids)) != len(ids):
            raise ValidationFailed("attachment_ids", "attachment_ids must not repeat an id")

        uploads = {upload.id: upload for upload in await self._store.get_uploads(ids)}
        for attachment_id in ids:
            upload = uploads.get(attachment_id)
            if upload is None or upload.owner_id != sender_id or self._expired(upload):
                raise UnknownAttachments(
                    f"{attachment_id} is not an upload of yours (unknown, expired, or "
                    "someone else's)",
                    field="attachment_ids",
                    attachment_id=attachment_id,
                )
            if upload.status is not UploadStatus.READY:
                raise AttachmentNotReady(
                    f"upload {attachment_id} is not complete: "
                    "POST /api/uploads/{id}/complete first",
                    field="attachment_ids",
                    attachment_id=attachment_id,
                )
        attached = [attachment_id for attachment_id in ids if uploads[attachment_id].attached]
        if attached:
            for message in await self._store.messages_with_attachments(attached):
                retry = (
                    client_msg_id is not None
                    and message.chat_id == chat_id
                    and message.sender_id == sender_id
                    and message.client_msg_id == client_msg_id
                )
                if not retry:
                    taken = next(a.id for a in message.attachments if a.id in set(attached))
                    raise AttachmentInUse(
                        f"upload {taken} is attached to another message already",
                        field="attachment_ids",
                        attachment_id=taken,
                    )
        return tuple(uploads[attachment_id].attachment for attachment_id in ids)

    # -- downloads ---------------------------------------------------------------------------
    async def download(self, caller_id: str, attachment_id: str) -> SignedRequest:
        """A short-lived download for a member of a chat where the attachment was posted."""
        if not is_valid_id(attachment_id):
            raise AttachmentNotFound("attachment not found")
        messages = await self._store.messages_with_attachments([attachment_id])
        attachment = None
        for chat_id in dict.fromkeys(message.chat_id for message in messages):
            chat = await self._store.get_chat(chat_id)
            if chat is not None and chat.is_member(caller_id):
                message = next(m for m in messages if m.chat_id == chat_id)
                attachment = next(a for a in message.attachments if a.id == attachment_id)
                break
        uploads = await self._store.get_uploads([attachment_id]) if attachment else []
        if attachment is None or not uploads:
            raise AttachmentNotFound("attachment not found")
        return await self._storage(
            self.storage.presign_download(
                uploads[0].object_key,
                content_type=attachment.content_type,
                filename=attachment.filename,
                inline=attachment.content_type in INLINE_TYPES,
                expires_in=self.url_ttl,
            )
        )

    # -- clean-up ----------------------------------------------------------------------------
    async def clean_orphans(self, now: datetime | None = None) -> int:
        """Delete every upload not attached within the orphan age (and grace); how many."""
        cutoff = (now or self._clock()) - self.orphan_age - CLEANUP_GRACE
        deleted = 0
        while True:
            batch = await self._store.list_unattached_uploads(cutoff, CLEANUP_BATCH)
            progress = 0
            for upload in batch:
                # Its bytes, and whatever a late PUT left at its upload key once it was ready.
                for key in dict.fromkeys((upload.object_key, upload_key(upload.id))):
                    await self.storage.delete(key)
                if await self._store.delete_upload(upload.id):
                    progress += 1
            deleted += progress
            if len(batch) < CLEANUP_BATCH or not progress:
                return deleted

    # -- plumbing ----------------------------------------------------------------------------
    @staticmethod
    async def _storage[T](call: Awaitable[T]) -> T:
        try:
            return await call
        except StorageError as exc:
            log.warning("object storage failed: %s", exc)
            raise StorageUnavailable(
                "the file storage is not answering; try again shortly"
            ) from exc
