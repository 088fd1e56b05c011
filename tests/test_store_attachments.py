"""The Store contract for uploads and message attachments, on both adapters (embedded SQLite
and MongoDB through the mongoeco wire server): ``messenger/store/base.py``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.models import Attachment, MessageDraft, Upload, UploadStatus, User
from messenger.store import Store
from tests.support.stores import open_adapter
from tests.test_store_contract import new_group, new_user


def make_upload(
    owner: User,
    *,
    name: str = "cat.png",
    content_type: str = "image/png",
    size: int = 1234,
    status: UploadStatus = UploadStatus.PENDING,
    created_at: datetime | None = None,
) -> Upload:
    upload_id = new_id()
    return Upload(
        upload_id,
        owner.id,
        f"uploads/{upload_id}",
        name,
        content_type,
        size,
        status,
        created_at or utcnow(),
    )


async def ready_upload(store: Store, owner: User, **kw: object) -> Upload:
    upload = make_upload(owner, **kw)  # type: ignore[arg-type]
    await store.add_upload(upload)
    ready = await store.mark_upload_ready(upload.id, f"attachments/{upload.id}-checked")
    assert ready is not None
    return ready


async def test_add_and_get_uploads_round_trip(store: Store) -> None:
    ann = await new_user(store)
    first = make_upload(ann, name="Ünïcode ✓.pdf", content_type="application/pdf", size=7)
    second = make_upload(ann, size=5_368_709_120)  # 5 GiB fits
    await store.add_upload(first)
    await store.add_upload(second)
    found = await store.get_uploads([second.id, "nope", first.id, first.id, new_id()])
    assert sorted(found, key=lambda u: u.id) == sorted([first, second], key=lambda u: u.id)
    assert not found[0].attached
    assert await store.get_uploads([]) == []
    assert await store.get_uploads(["not-an-id"]) == []


async def test_mark_upload_ready(store: Store) -> None:
    ann = await new_user(store)
    upload = make_upload(ann)
    await store.add_upload(upload)
    checked = f"attachments/{upload.id}-first"
    ready = await store.mark_upload_ready(upload.id, checked)
    assert ready is not None
    assert ready.status is UploadStatus.READY
    assert ready == Upload(
        **{**_fields(upload), "status": UploadStatus.READY, "object_key": checked}
    )
    # Stays ready, with the key of the first completion: a later one does not replace it.
    assert await store.mark_upload_ready(upload.id, f"attachments/{upload.id}-second") == ready
    assert await store.get_uploads([upload.id]) == [ready]
    assert await store.mark_upload_ready(new_id(), "attachments/x") is None
    assert await store.mark_upload_ready("bad", "attachments/x") is None


async def test_concurrent_completions_one_key_wins(store: Store) -> None:
    ann = await new_user(store)
    upload = make_upload(ann)
    await store.add_upload(upload)
    keys = [f"attachments/{upload.id}-{n}" for n in range(8)]
    results = await asyncio.gather(*(store.mark_upload_ready(upload.id, k) for k in keys))
    assert all(result is not None for result in results)
    assert len({result.object_key for result in results if result}) == 1
    assert results[0] is not None and results[0].object_key in keys


def _fields(upload: Upload) -> dict[str, object]:
    return {name: getattr(upload, name) for name in Upload.__slots__}


async def test_messages_carry_attachments_everywhere(store: Store) -> None:
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    chat = await new_group(store, [ann, bob])
    one = await ready_upload(store, ann)
    two = await ready_upload(store, ann, name="notes.txt", content_type="text/plain", size=3)
    attachments = (two.attachment, one.attachment)
    [plain] = await store.append_messages(chat.id, [MessageDraft(ann.id, "plain")])
    [result] = await store.append_messages(
        chat.id, [MessageDraft(ann.id, "", "c-1", attachments)]
    )
    assert plain.message.attachments == ()
    message = result.message
    assert result.created and message.attachments == attachments
    assert message.text == ""
    assert await store.get_message(chat.id, message.id) == message
    page, _ = await store.list_messages(chat.id, None, 10)
    assert page == [plain.message, message]
    view = await store.get_chat_view(chat.id, bob.id)
    assert view is not None and view.last_message == message
    [listed] = await store.list_chat_views(bob.id, 10)
    assert listed.last_message == message
    assert message.to_json()["attachments"] == [
        {"id": two.id, "filename": "notes.txt", "content_type": "text/plain", "size": 3},
        {"id": one.id, "filename": "cat.png", "content_type": "image/png", "size": 1234},
    ]
    assert plain.message.to_json()["attachments"] == []
    # Their uploads are attached now, and the message is found by each attachment.
    assert all(u.attached for u in await store.get_uploads([one.id, two.id]))
    assert await store.messages_with_attachments([one.id]) == [message]
    assert await store.messages_with_attachments([one.id, two.id, new_id()]) == [message]
    assert await store.messages_with_attachments([new_id(), "bad"]) == []
    assert await store.messages_with_attachments([]) == []


async def test_replay_attaches_nothing_new(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    first, second = await ready_upload(store, ann), await ready_upload(store, ann)
    [original] = await store.append_messages(
        chat.id, [MessageDraft(ann.id, "x", "same", (first.attachment,))]
    )
    [replay] = await store.append_messages(
        chat.id, [MessageDraft(ann.id, "x", "same", (second.attachment,))]
    )
    assert not replay.created and replay.message == original.message
    assert replay.message.attachments == (first.attachment,)
    [still_free] = await store.get_uploads([second.id])
    assert not still_free.attached
    assert await store.messages_with_attachments([second.id]) == []


async def test_a_batch_with_attachments(store: Store) -> None:
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    chat = await new_group(store, [ann, bob])
    a, b = await ready_upload(store, ann), await ready_upload(store, bob)
    results = await store.append_messages(
        chat.id,
        [
            MessageDraft(ann.id, "with a", None, (a.attachment,)),
            MessageDraft(bob.id, "plain"),
            MessageDraft(bob.id, "with b", None, (b.attachment,)),
        ],
    )
    assert [r.message.seq for r in results] == [1, 2, 3]
    assert [r.message.attachments for r in results] == [(a.attachment,), (), (b.attachment,)]
    found = await store.messages_with_attachments([a.id, b.id])
    assert sorted(m.seq for m in found) == [1, 3]


async def test_the_same_attachment_in_two_messages_is_found_in_both(store: Store) -> None:
    """The store does not forbid it (``AttachmentService.claim`` does, best effort)."""
    ann, bob = await new_user(store, "ann"), await new_user(store, "bob")
    first_chat, second_chat = await new_group(store, [ann]), await new_group(store, [ann, bob])
    upload = await ready_upload(store, ann)
    [one] = await store.append_messages(
        first_chat.id, [MessageDraft(ann.id, "a", None, (upload.attachment,))]
    )
    [two] = await store.append_messages(
        second_chat.id, [MessageDraft(ann.id, "b", None, (upload.attachment,))]
    )
    found = await store.messages_with_attachments([upload.id])
    assert sorted(m.chat_id for m in found) == sorted([first_chat.id, second_chat.id])
    assert {m.id for m in found} == {one.message.id, two.message.id}


async def test_list_unattached_uploads(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    now = utcnow()
    old = [
        make_upload(ann, created_at=now - timedelta(hours=hours)) for hours in (5, 9, 7)
    ]
    recent = make_upload(ann, created_at=now - timedelta(minutes=1))
    for upload in [*old, recent]:
        await store.add_upload(upload)
    attached_old = await ready_upload(store, ann, created_at=now - timedelta(hours=8))
    await store.append_messages(
        chat.id, [MessageDraft(ann.id, "x", None, (attached_old.attachment,))]
    )
    cutoff = now - timedelta(hours=1)
    listed = await store.list_unattached_uploads(cutoff, 10)
    assert [u.id for u in listed] == [old[1].id, old[2].id, old[0].id]  # oldest first
    assert [u.id for u in await store.list_unattached_uploads(cutoff, 2)] == [
        old[1].id,
        old[2].id,
    ]
    assert await store.list_unattached_uploads(cutoff, 0) == []
    assert await store.list_unattached_uploads(now - timedelta(days=1), 10) == []


async def test_delete_upload_only_when_unattached(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    loose, used = await ready_upload(store, ann), await ready_upload(store, ann)
    await store.append_messages(chat.id, [MessageDraft(ann.id, "x", None, (used.attachment,))])
    assert await store.delete_upload(loose.id)
    assert await store.get_uploads([loose.id]) == []
    assert not await store.delete_upload(loose.id)  # gone already
    assert not await store.delete_upload(used.id)
    assert [u.id for u in await store.get_uploads([used.id])] == [used.id]
    assert not await store.delete_upload("bad")


async def test_mongo_repairs_a_flag_a_crash_left_unset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """MongoDB flags uploads right after inserting the message; if the process died in
    between, the clean-up must still see the upload as attached (and fix the flag)."""
    store = open_adapter("mongo", request, tmp_path)
    await store.migrate()
    try:
        ann = await new_user(store)
        chat = await new_group(store, [ann])
        upload = await ready_upload(store, ann, created_at=utcnow() - timedelta(days=2))
        await store.append_messages(
            chat.id, [MessageDraft(ann.id, "x", None, (upload.attachment,))]
        )
        db = store._db  # type: ignore[attr-defined]
        from bson import ObjectId

        await db.uploads.update_one({"_id": ObjectId(upload.id)}, {"$set": {"attached": False}})
        assert await store.list_unattached_uploads(utcnow(), 10) == []
        [repaired] = await store.get_uploads([upload.id])
        assert repaired.attached
        await db.uploads.update_one({"_id": ObjectId(upload.id)}, {"$set": {"attached": False}})
        assert not await store.delete_upload(upload.id)
        assert (await store.get_uploads([upload.id]))[0].attached
    finally:
        await store.close()


async def test_attachment_fields_survive_any_text(store: Store) -> None:
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    upload = await ready_upload(store, ann, name='we"ird \\ näme\n.png')
    attachment = Attachment(upload.id, upload.filename, upload.content_type, upload.size)
    [result] = await store.append_messages(
        chat.id, [MessageDraft(ann.id, "x", None, (attachment,))]
    )
    stored = await store.get_message(chat.id, result.message.id)
    assert stored is not None and stored.attachments == (attachment,)


async def test_history_json_is_to_json_for_any_message(store: Store) -> None:
    """``list_messages_json`` (the REST page; SQLite encodes it in SQL) gives exactly the JSON
    values ``Message.to_json()`` gives, for any text, ids, times and attachments."""
    ann = await new_user(store)
    chat = await new_group(store, [ann])
    upload = await ready_upload(store, ann, name='we"ird \\ näme\n.png')
    attachment = Attachment(upload.id, upload.filename, upload.content_type, upload.size)
    texts = ['quote " backslash \\ slash /', "new\nline\ttab\r\x01\x1f", "é ü 日本 🙂 \u2028\u2029",
             "<script>&amp;</script>", "", " " * 3, "a" * 4000]
    drafts = [MessageDraft(ann.id, text, f"c-{i}" if i % 2 else None) for i, text in
              enumerate(texts)]
    drafts.append(MessageDraft(ann.id, "with a file", "c-file", (attachment,)))
    await store.append_messages(chat.id, drafts)
    for before, limit in ((None, 50), (None, 3), (5, 2), (1, 10)):
        messages, more = await store.list_messages(chat.id, before, limit)
        encoded, more_json = await store.list_messages_json(chat.id, before, limit, ann.id)
        assert more_json == more
        assert [orjson.loads(item) for item in encoded] == [m.to_json() for m in messages]
    assert len((await store.list_messages_json(chat.id, None, 50, ann.id))[0]) == len(drafts)


async def test_history_json_is_for_members_only(store: Store) -> None:
    ann, bob, eve = await new_user(store), await new_user(store), await new_user(store)
    chat = await new_group(store, [ann, bob])
    await store.append_messages(chat.id, [MessageDraft(ann.id, "hi"), MessageDraft(bob.id, "yo")])
    assert len((await store.list_messages_json(chat.id, None, 50, bob.id))[0]) == 2
    assert await store.list_messages_json(chat.id, None, 50, eve.id) == ([], False)
    assert await store.list_messages_json(chat.id, 2, 50, eve.id) == ([], False)
    await store.remove_member(chat.id, bob.id)
    assert await store.list_messages_json(chat.id, None, 50, bob.id) == ([], False)
    assert len((await store.list_messages_json(chat.id, None, 1, ann.id))[0]) == 1
