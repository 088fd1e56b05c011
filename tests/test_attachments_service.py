"""AttachmentService and local-disk storage in process: declared-type and size rules, the
completion checks (size, type, magic bytes), the claim a send makes, download grants, signed
local URLs, and the clean-up of expired uploads (with an injected clock, nothing sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from actors.uploads import Sweep, UploadCleaner
from messenger import errors
from messenger.attachments import (
    CLEANUP_GRACE,
    AttachmentService,
    signature_matches,
    upload_key,
)
from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.models import ChatType, MessageDraft, Upload, UploadStatus, User
from messenger.storage.base import content_disposition
from messenger.storage.local import BadGrant, LocalStorage
from messenger.store.sqlite import SQLiteStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 12
GIF = b"GIF89a" + b"\x00" * 10
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 "
PDF = b"%PDF-1.7\n%\xe2\xe3"
TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain")
ORPHAN_AGE = 3600


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    store: SQLiteStore
    storage: LocalStorage
    service: AttachmentService
    clock: Clock

    async def user(self, name: str = "ann") -> User:
        return await self.store.create_user(f"{name}-{new_id()}@example.com", b"x", name)

    async def put(self, upload: Upload, data: bytes) -> None:
        """What a PUT to the upload's URL does (its key is the upload key)."""
        incoming = self.storage.open_incoming(upload_key(upload.id))
        incoming.write(data)
        incoming.commit()

    def checked_copies(self) -> list[str]:
        """The keys of every object under ``attachments/``."""
        folder = self.storage.root / "attachments"
        return sorted(f"attachments/{path.name}" for path in folder.glob("*"))

    def read(self, key: str) -> bytes:
        return self.storage.path(key).read_bytes()

    async def ready(
        self, owner: User, data: bytes = PNG, content_type: str = "image/png"
    ) -> Upload:
        upload, _ = await self.service.create_upload(owner.id, "f", content_type, len(data))
        await self.put(upload, data)
        return await self.service.complete(owner.id, upload.id)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.migrate()
    storage = LocalStorage(tmp_path / "objects", "secret-for-tests")
    await storage.start()
    clock = Clock()
    service = AttachmentService(
        store,
        storage,
        max_bytes=1000,
        allowed_types=TYPES,
        url_ttl=60,
        orphan_age=ORPHAN_AGE,
        max_per_message=3,
        clock=clock,
    )
    yield World(store, storage, service, clock)
    await storage.close()
    await store.close()


# -- signatures and dispositions -------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "good"),
    [("image/png", PNG), ("image/jpeg", JPEG), ("image/gif", GIF), ("image/webp", WEBP),
     ("application/pdf", PDF), ("image/gif", b"GIF87a....")],
)
def test_signatures(content_type: str, good: bytes) -> None:
    assert signature_matches(content_type, good)
    assert not signature_matches(content_type, b"hello world, not a file of that type")
    assert not signature_matches(content_type, b"")


def test_types_without_signature_pass() -> None:
    assert signature_matches("text/plain", b"\x89PNG anything")


def test_content_disposition_is_safe() -> None:
    value = content_disposition('na"me\\ü\n✓.png', inline=True)
    assert value.startswith('inline; filename="na_me_u_')
    assert "filename*=UTF-8''na%22me%5C%C3%BC%0A%E2%9C%93.png" in value
    assert "\n" not in value
    assert content_disposition("a.pdf", inline=False).startswith('attachment; filename="a.pdf"')


# -- local signed URLs ---------------------------------------------------------------------
async def test_local_tokens_bind_method_key_and_expiry(world: World) -> None:
    storage = world.storage
    put = await storage.presign_upload("attachments/x", content_type="image/png", size=9,
                                       expires_in=60)
    assert put.method == "PUT" and put.url.startswith("/api/storage/")
    assert put.headers == {"Content-Type": "image/png"}
    token = put.url.rsplit("/", 1)[1]
    grant = storage.verify(token, "PUT")
    assert (grant.key, grant.size, grant.content_type) == ("attachments/x", 9, "image/png")
    with pytest.raises(BadGrant, match="for PUT"):
        storage.verify(token, "GET")
    with pytest.raises(BadGrant, match="expired"):
        storage.verify(token, "PUT", now=time.time() + 120)
    payload, mac = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    for bad in (forged, token + "x", "garbage", "a.b", "", token.replace(".", "..")):
        with pytest.raises(BadGrant):
            storage.verify(bad, "PUT")
    other = LocalStorage(world.storage.root, "another-secret")
    with pytest.raises(BadGrant, match="signature"):
        other.verify(token, "PUT")


async def test_local_storage_refuses_unsafe_keys(world: World) -> None:
    for key in ("../etc/passwd", "/abs", "a/../../b", ".incoming/x", ""):
        with pytest.raises(ValueError):
            world.storage.path(key)


# -- create --------------------------------------------------------------------------------
async def test_create_upload(world: World) -> None:
    ann = await world.user()
    upload, request = await world.service.create_upload(ann.id, "cat.png", "Image/PNG", 10)
    assert upload.status is UploadStatus.PENDING and upload.content_type == "image/png"
    assert upload.object_key == f"uploads/{upload.id}"
    assert request.method == "PUT" and request.expires_at > world.clock.now
    assert await world.store.get_uploads([upload.id]) == [upload]


@pytest.mark.parametrize("content_type", ["image/svg+xml", "text/html", "text/plain; x=y", ""])
async def test_create_refuses_types(world: World, content_type: str) -> None:
    ann = await world.user()
    with pytest.raises(errors.ContentTypeNotAllowed) as caught:
        await world.service.create_upload(ann.id, "x", content_type, 10)
    assert caught.value.details["field"] == "content_type"


async def test_create_refuses_too_large(world: World) -> None:
    ann = await world.user()
    with pytest.raises(errors.UploadTooLarge):
        await world.service.create_upload(ann.id, "x", "text/plain", 1001)
    await world.service.create_upload(ann.id, "x", "text/plain", 1000)


# -- complete ------------------------------------------------------------------------------
async def test_complete_checks_what_arrived(world: World) -> None:
    ann, bob = await world.user("ann"), await world.user("bob")
    upload, _ = await world.service.create_upload(ann.id, "cat.png", "image/png", len(PNG))
    with pytest.raises(errors.UploadMissing):
        await world.service.complete(ann.id, upload.id)
    await world.put(upload, PNG + b"!")
    with pytest.raises(errors.UploadSizeMismatch):
        await world.service.complete(ann.id, upload.id)
    assert await world.storage.head(upload.object_key) is None  # refused: deleted
    assert world.checked_copies() == []  # and so is the copy it checked
    await world.put(upload, b"GIF89a" + b"\x00" * (len(PNG) - 6))
    with pytest.raises(errors.UploadTypeMismatch, match="not image/png"):
        await world.service.complete(ann.id, upload.id)
    assert await world.storage.head(upload.object_key) is None
    assert world.checked_copies() == []
    await world.put(upload, PNG)
    with pytest.raises(errors.UploadNotFound):
        await world.service.complete(bob.id, upload.id)  # someone else's
    ready = await world.service.complete(ann.id, upload.id)
    assert ready.status is UploadStatus.READY
    # The checked copy is the object now; the upload's own key is done with.
    assert world.checked_copies() == [ready.object_key]
    assert ready.object_key.startswith(f"attachments/{upload.id}-")
    assert await world.storage.head(upload.object_key) is None
    assert await world.service.complete(ann.id, upload.id) == ready  # again: the same
    for bad in ("nope", new_id()):
        with pytest.raises(errors.UploadNotFound):
            await world.service.complete(ann.id, bad)


async def test_complete_takes_any_bytes_for_unchecked_types(world: World) -> None:
    ann = await world.user()
    ready = await world.ready(ann, b"\x89PNG but text", "text/plain")
    assert ready.status is UploadStatus.READY


async def test_an_expired_upload_cannot_be_completed(world: World) -> None:
    ann = await world.user()
    upload, _ = await world.service.create_upload(ann.id, "x", "text/plain", 2)
    await world.put(upload, b"hi")
    world.clock.now += timedelta(seconds=ORPHAN_AGE)
    with pytest.raises(errors.UploadNotFound):
        await world.service.complete(ann.id, upload.id)


# -- the checked bytes are the downloaded bytes ---------------------------------------------
async def test_bytes_put_after_completion_never_reach_a_download(world: World) -> None:
    ann = await world.user()
    chat, _ = await world.store.create_chat(ChatType.GROUP, [ann.id], None, None)
    upload, _ = await world.service.create_upload(ann.id, "cat.png", "image/png", len(PNG))
    assert await world.service.accepts_upload(upload.object_key)
    await world.put(upload, PNG)
    ready = await world.service.complete(ann.id, upload.id)
    attachments = await world.service.claim(ann.id, [upload.id])
    await world.store.append_messages(chat.id, [MessageDraft(ann.id, "", None, attachments)])
    # The upload URL is still valid: other bytes of the same length arrive at its key.
    assert not await world.service.accepts_upload(upload.object_key)
    await world.put(upload, b"not a png at all".ljust(len(PNG), b"!"))
    again = await world.service.complete(ann.id, upload.id)  # not checked again
    assert (again.status, again.object_key) == (UploadStatus.READY, ready.object_key)
    request = await world.service.download(ann.id, upload.id)
    grant = world.storage.verify(request.url.rsplit("/", 1)[1], "GET")
    assert grant.key == ready.object_key != upload.object_key
    assert world.read(grant.key) == PNG


async def test_concurrent_completions_keep_one_checked_copy(world: World) -> None:
    ann = await world.user()
    upload, _ = await world.service.create_upload(ann.id, "cat.png", "image/png", len(PNG))
    await world.put(upload, PNG)
    results = await asyncio.gather(
        *(world.service.complete(ann.id, upload.id) for _ in range(6)), return_exceptions=True
    )
    ready = [result for result in results if isinstance(result, Upload)]
    # Each one either saw the winner's record or came after the winner took the upload.
    others = [result for result in results if not isinstance(result, Upload)]
    assert all(isinstance(other, errors.UploadMissing) for other in others), others
    assert ready and all(result == ready[0] for result in ready)
    assert world.checked_copies() == [ready[0].object_key]
    assert world.read(ready[0].object_key) == PNG
    assert await world.service.complete(ann.id, upload.id) == ready[0]


async def test_uploads_stored_under_the_old_single_key(world: World) -> None:
    """Before checked copies, ``attachments/<id>`` was both the upload URL's key and what was
    downloaded: such ready uploads are served from it, pending ones complete as any other."""
    ann = await world.user()
    chat, _ = await world.store.create_chat(ChatType.GROUP, [ann.id], None, None)

    async def legacy(status: UploadStatus) -> Upload:
        upload_id = new_id()
        upload = Upload(upload_id, ann.id, f"attachments/{upload_id}", "old.png", "image/png",
                        len(PNG), status, world.clock.now)
        await world.store.add_upload(upload)
        incoming = world.storage.open_incoming(upload.object_key)
        incoming.write(PNG)
        incoming.commit()
        return upload

    ready = await legacy(UploadStatus.READY)
    assert await world.service.complete(ann.id, ready.id) == ready
    attachments = await world.service.claim(ann.id, [ready.id])
    await world.store.append_messages(chat.id, [MessageDraft(ann.id, "", None, attachments)])
    request = await world.service.download(ann.id, ready.id)
    assert world.storage.verify(request.url.rsplit("/", 1)[1], "GET").key == ready.object_key
    assert not await world.service.accepts_upload(ready.object_key)

    pending = await legacy(UploadStatus.PENDING)
    assert await world.service.accepts_upload(pending.object_key)
    completed = await world.service.complete(ann.id, pending.id)
    assert completed.object_key.startswith(f"attachments/{pending.id}-")
    assert await world.storage.head(pending.object_key) is None
    assert not await world.service.accepts_upload(pending.object_key)
    world.clock.now += timedelta(seconds=ORPHAN_AGE) + CLEANUP_GRACE + timedelta(seconds=1)
    assert await world.service.clean_orphans() == 1  # the completed one, never attached
    assert world.checked_copies() == [ready.object_key]


async def test_accepts_upload_only_for_a_pending_uploads_key(world: World) -> None:
    ann = await world.user()
    upload, _ = await world.service.create_upload(ann.id, "a.txt", "text/plain", 2)
    assert await world.service.accepts_upload(f"uploads/{upload.id}")
    for key in (f"attachments/{upload.id}", f"uploads/{new_id()}", "uploads/x", "elsewhere",
                f"attachments/{upload.id}-0123456789abcdef"):
        assert not await world.service.accepts_upload(key), key


async def test_local_copy_is_independent_of_its_source(world: World) -> None:
    storage = world.storage
    assert not await storage.copy("uploads/none", "attachments/none")
    incoming = storage.open_incoming("uploads/a")
    incoming.write(b"first")
    incoming.commit()
    assert await storage.copy("uploads/a", "attachments/a-1")
    incoming = storage.open_incoming("uploads/a")  # a second PUT replaces the source
    incoming.write(b"other")
    incoming.commit()
    assert world.read("attachments/a-1") == b"first"
    assert await storage.copy("uploads/a", "attachments/a-1")  # replaces the destination
    assert world.read("attachments/a-1") == b"other"
    await storage.delete("uploads/a")
    assert world.read("attachments/a-1") == b"other"
    assert list((storage.root / ".incoming").iterdir()) == []


# -- claim ---------------------------------------------------------------------------------
async def test_claim(world: World) -> None:
    ann, bob = await world.user("ann"), await world.user("bob")
    one, two = await world.ready(ann), await world.ready(ann, PDF, "application/pdf")
    claimed = await world.service.claim(ann.id, [two.id, one.id])
    assert claimed == (two.attachment, one.attachment)
    assert await world.service.claim(ann.id, []) == ()
    with pytest.raises(errors.UnknownAttachments) as caught:
        await world.service.claim(bob.id, [one.id])  # someone else's
    assert caught.value.details == {"field": "attachment_ids", "attachment_id": one.id}
    with pytest.raises(errors.UnknownAttachments):
        await world.service.claim(ann.id, [one.id, new_id()])
    pending, _ = await world.service.create_upload(ann.id, "x", "text/plain", 1)
    with pytest.raises(errors.AttachmentNotReady):
        await world.service.claim(ann.id, [pending.id])
    for bad in ([one.id, one.id], [one.id, "x"], [new_id() for _ in range(4)]):
        with pytest.raises(errors.ValidationFailed):
            await world.service.claim(ann.id, bad)


async def test_claim_refuses_an_attached_upload_except_for_a_retry(world: World) -> None:
    ann = await world.user()
    chat, _ = await world.store.create_chat(ChatType.GROUP, [ann.id], None, None)
    upload = await world.ready(ann)
    attachments = await world.service.claim(ann.id, [upload.id])
    await world.store.append_messages(chat.id, [MessageDraft(ann.id, "", "c-1", attachments)])
    with pytest.raises(errors.AttachmentInUse):
        await world.service.claim(ann.id, [upload.id])
    with pytest.raises(errors.AttachmentInUse):
        await world.service.claim(ann.id, [upload.id], chat_id=chat.id, client_msg_id="c-2")
    retry = await world.service.claim(ann.id, [upload.id], chat_id=chat.id, client_msg_id="c-1")
    assert retry == attachments


async def test_claim_refuses_an_expired_upload(world: World) -> None:
    ann = await world.user()
    upload = await world.ready(ann)
    world.clock.now += timedelta(seconds=ORPHAN_AGE - 1)
    await world.service.claim(ann.id, [upload.id])
    world.clock.now += timedelta(seconds=1)
    with pytest.raises(errors.UnknownAttachments):
        await world.service.claim(ann.id, [upload.id])


# -- download ------------------------------------------------------------------------------
async def test_download_only_for_members_of_a_chat_where_it_was_posted(world: World) -> None:
    ann, bob, eve = await world.user("ann"), await world.user("bob"), await world.user("eve")
    chat, _ = await world.store.create_chat(ChatType.GROUP, [ann.id, bob.id], None, None)
    upload = await world.ready(ann)
    with pytest.raises(errors.AttachmentNotFound):
        await world.service.download(ann.id, upload.id)  # not posted yet: nobody
    attachments = await world.service.claim(ann.id, [upload.id])
    await world.store.append_messages(chat.id, [MessageDraft(ann.id, "", None, attachments)])
    for member in (ann, bob):
        request = await world.service.download(member.id, upload.id)
        grant = world.storage.verify(request.url.rsplit("/", 1)[1], "GET")
        assert grant.key == upload.object_key and grant.content_type == "image/png"
        assert grant.disposition is not None and grant.disposition.startswith("inline;")
    for caller, attachment_id in ((eve.id, upload.id), (ann.id, new_id()), (ann.id, "x")):
        with pytest.raises(errors.AttachmentNotFound):
            await world.service.download(caller, attachment_id)


# -- clean-up ------------------------------------------------------------------------------
async def test_clean_orphans_deletes_only_expired_unattached_uploads(world: World) -> None:
    ann = await world.user()
    chat, _ = await world.store.create_chat(ChatType.GROUP, [ann.id], None, None)
    never_uploaded, _ = await world.service.create_upload(ann.id, "a", "text/plain", 1)
    never_completed, _ = await world.service.create_upload(ann.id, "b", "text/plain", 1)
    await world.put(never_completed, b"b")
    never_attached = await world.ready(ann)
    await world.put(never_attached, PNG)  # a PUT after completion leaves an object behind
    attached = await world.ready(ann)
    await world.store.append_messages(
        chat.id, [MessageDraft(ann.id, "", None, (attached.attachment,))]
    )
    old = [never_uploaded, never_completed, never_attached]
    world.clock.now += timedelta(seconds=ORPHAN_AGE) + CLEANUP_GRACE - timedelta(seconds=1)
    recent = await world.ready(ann)
    assert await world.service.clean_orphans() == 0  # within the grace period still
    world.clock.now += timedelta(seconds=2)
    assert await world.service.clean_orphans() == 3
    assert await world.store.get_uploads([u.id for u in old]) == []
    for upload in old:
        assert await world.storage.head(upload.object_key) is None
        assert await world.storage.head(upload_key(upload.id)) is None
    assert world.checked_copies() == sorted([attached.object_key, recent.object_key])
    kept = await world.store.get_uploads([attached.id, recent.id])
    assert {u.id for u in kept} == {attached.id, recent.id}
    assert await world.storage.head(attached.object_key) is not None
    assert await world.service.clean_orphans() == 0


async def test_cleaner_actor_sweeps_at_start_and_on_demand(world: World) -> None:
    ann = await world.user()
    await world.ready(ann)
    world.clock.now += timedelta(seconds=ORPHAN_AGE) + CLEANUP_GRACE + timedelta(seconds=1)
    cleaner = UploadCleaner(world.service, interval=3600).start()
    try:
        for _ in range(500):  # the sweep it runs at start, unasked
            if not await world.store.list_unattached_uploads(world.clock.now, 10):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no sweep at start")
        await world.ready(ann)
        world.clock.now += timedelta(seconds=ORPHAN_AGE) + CLEANUP_GRACE + timedelta(seconds=1)
        assert await cleaner.ask(Sweep(), timeout=10) == 1
    finally:
        await cleaner.stop()


async def test_cleaner_survives_a_failing_sweep(world: World) -> None:
    await world.store.close()  # every sweep now fails with StoreUnavailable
    cleaner = UploadCleaner(world.service, interval=3600).start()
    try:
        assert await cleaner.ask(Sweep(), timeout=10) == 0
        assert cleaner.alive
    finally:
        await cleaner.stop()
