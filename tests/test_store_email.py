"""The email part of the Store contract (``messenger/store/base.py``), on both adapters: the
verified flag and password reset, single-use email tokens, rate-limit slots, the outbox with
leases, and the presence/digest bookkeeping.

Times are explicit (``now`` plus offsets) wherever the interface takes them, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.models import (
    ChatType,
    EmailTokenPurpose,
    MailStatus,
    MessageDraft,
    OutboxMail,
    RefreshSpend,
    User,
)
from messenger.store import Store
from tests.test_store_contract import next_millisecond

VERIFY, RESET = EmailTokenPurpose.VERIFY, EmailTokenPurpose.RESET


async def new_user(store: Store, name: str = "ann") -> User:
    email = f"{name}.{uuid.uuid4().hex[:10]}@example.com"
    return await store.create_user(email, f"hash-of-{name}".encode(), name.title())


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def mail(recipient: str = "ann@example.com", *, due: datetime | None = None,
         created: datetime | None = None, kind: str = "verify") -> OutboxMail:
    now = utcnow()
    return OutboxMail(
        id=new_id(),
        kind=kind,
        recipient=recipient,
        message=b"Subject: hi\r\n\r\nhello\r\n",
        status=MailStatus.PENDING,
        attempts=0,
        next_attempt_at=due or now,
        created_at=created or now,
    )


# -- users: verified flag, password -------------------------------------------------------------
async def test_new_users_are_unverified_until_set(store: Store) -> None:
    user = await new_user(store)
    assert user.email_verified is False
    assert (await store.get_user(user.id)).email_verified is False  # type: ignore[union-attr]
    verified = await store.set_email_verified(user.id)
    assert verified is not None and verified.email_verified and verified.id == user.id
    for found in (await store.get_user(user.id), await store.get_user_by_email(user.email),
                  *(await store.get_users([user.id]))):
        assert found is not None and found.email_verified
    assert await store.set_email_verified(new_id()) is None
    assert await store.set_email_verified("not-an-id") is None


async def test_set_password_replaces_the_hash_and_revokes_every_family(store: Store) -> None:
    user = await new_user(store)
    other = await new_user(store, "bob")
    expires = utcnow() + seconds(3600)
    await store.add_refresh_token("jti-a", "family-a", user.id, expires)
    await store.add_refresh_token("jti-b", "family-b", user.id, expires)
    await store.add_refresh_token("jti-c", "family-c", other.id, expires)

    assert await store.set_password(user.id, b"new-hash") is True
    assert (await store.get_user(user.id)).password_hash == b"new-hash"  # type: ignore[union-attr]
    assert (await store.spend_refresh_token("jti-a")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("jti-b")).outcome is RefreshSpend.REVOKED
    assert (await store.spend_refresh_token("jti-c")).outcome is RefreshSpend.SPENT
    # a family started after the change works
    await store.add_refresh_token("jti-d", "family-d", user.id, expires)
    assert (await store.spend_refresh_token("jti-d")).outcome is RefreshSpend.SPENT
    assert await store.set_password(new_id(), b"x") is False


# -- email tokens ---------------------------------------------------------------------------------
async def test_email_tokens_are_single_use_per_purpose(store: Store) -> None:
    user = await new_user(store)
    later = utcnow() + seconds(3600)
    await store.add_email_token("hash-v1", user.id, VERIFY, later)
    await store.add_email_token("hash-v2", user.id, VERIFY, later)
    await store.add_email_token("hash-r1", user.id, RESET, later)

    assert await store.consume_email_token("hash-v1", RESET) is None  # other purpose
    assert await store.consume_email_token("hash-v1", VERIFY) == user.id
    assert await store.consume_email_token("hash-v1", VERIFY) is None  # spent
    assert await store.consume_email_token("hash-v2", VERIFY) is None  # spent with the first
    assert await store.consume_email_token("hash-r1", RESET) == user.id  # other purpose kept
    assert await store.consume_email_token("unknown", VERIFY) is None


async def test_expired_email_tokens_are_refused(store: Store) -> None:
    user = await new_user(store)
    await store.add_email_token("hash-old", user.id, RESET, utcnow() - seconds(1))
    assert await store.consume_email_token("hash-old", RESET) is None


async def test_concurrent_spends_of_one_token_have_one_winner(store: Store) -> None:
    user = await new_user(store)
    await store.add_email_token("hash-race", user.id, RESET, utcnow() + seconds(60))
    results = await asyncio.gather(
        *(store.consume_email_token("hash-race", RESET) for _ in range(10))
    )
    assert results.count(user.id) == 1 and results.count(None) == 9


# -- rate-limit slots ----------------------------------------------------------------------------
async def test_send_slots_allow_one_per_interval(store: Store) -> None:
    now = utcnow()
    assert await store.claim_send_slot("verify:u1", now, 60) == 0
    left = await store.claim_send_slot("verify:u1", now + seconds(20), 60)
    assert left == pytest.approx(40, abs=0.01)
    assert await store.claim_send_slot("verify:u2", now + seconds(20), 60) == 0  # another key
    assert await store.claim_send_slot("verify:u1", now + seconds(60), 60) == 0  # next slot
    assert await store.claim_send_slot("verify:u1", now + seconds(61), 60) > 0
    assert await store.claim_send_slot("zero", now, 0) == 0
    assert await store.claim_send_slot("zero", now, 0) == 0


async def test_concurrent_slot_claims_have_one_winner(store: Store) -> None:
    now = utcnow()
    results = await asyncio.gather(*(store.claim_send_slot("race", now, 60) for _ in range(10)))
    assert results.count(0) == 1


# -- the outbox -----------------------------------------------------------------------------------
async def test_claim_leases_a_due_mail_to_one_mailer(store: Store) -> None:
    now = utcnow()
    queued = mail(due=now)
    await store.enqueue_mail(queued)
    assert await store.get_mail(queued.id) == queued

    assert await store.claim_mail(now - seconds(1), now + seconds(30)) is None  # not due yet
    first = await store.claim_mail(now, now + seconds(30))
    assert first is not None and first.id == queued.id
    assert first.attempts == 1 and first.lease_id and first.status is MailStatus.PENDING
    assert first.next_attempt_at == now + seconds(30)
    assert first.message == queued.message and first.recipient == queued.recipient
    assert await store.claim_mail(now + seconds(29), now + seconds(60)) is None  # leased

    # the lease ran out (a crashed mailer): another claims it, the first can no longer report
    second = await store.claim_mail(now + seconds(30), now + seconds(90))
    assert second is not None and second.id == queued.id and second.attempts == 2
    assert second.lease_id != first.lease_id
    assert first.lease_id is not None and second.lease_id is not None
    assert await store.mark_mail_sent(queued.id, first.lease_id, now) is False
    assert await store.mark_mail_sent(queued.id, second.lease_id, now + seconds(31)) is True
    sent = await store.get_mail(queued.id)
    assert sent is not None and sent.status is MailStatus.SENT
    assert sent.finished_at == now + seconds(31) and sent.lease_id is None
    assert await store.claim_mail(now + seconds(3600), now + seconds(3700)) is None
    assert await store.mark_mail_sent(queued.id, second.lease_id, now) is False  # once only


async def test_retry_and_fail_record_the_outcome(store: Store) -> None:
    now = utcnow()
    retried, failed = mail(due=now), mail(due=now + seconds(1))
    await store.enqueue_mail(retried)
    await store.enqueue_mail(failed)

    claim = await store.claim_mail(now + seconds(5), now + seconds(60))
    assert claim is not None and claim.id == retried.id and claim.lease_id  # oldest due first
    assert await store.retry_mail(claim.id, claim.lease_id, now + seconds(100), "421 busy")
    again = await store.get_mail(claim.id)
    assert again is not None and again.status is MailStatus.PENDING
    assert again.next_attempt_at == now + seconds(100) and again.last_error == "421 busy"
    assert again.attempts == 1 and again.lease_id is None

    claim = await store.claim_mail(now + seconds(5), now + seconds(60))
    assert claim is not None and claim.id == failed.id and claim.lease_id
    assert await store.fail_mail(claim.id, claim.lease_id, now + seconds(6), "550 no such user")
    gone = await store.get_mail(claim.id)
    assert gone is not None and gone.status is MailStatus.FAILED
    assert gone.last_error == "550 no such user" and gone.finished_at == now + seconds(6)
    assert await store.retry_mail(claim.id, claim.lease_id, now, "x") is False

    # the retried one is due again at its time
    assert await store.claim_mail(now + seconds(99), now + seconds(200)) is None
    claim = await store.claim_mail(now + seconds(100), now + seconds(200))
    assert claim is not None and claim.id == retried.id and claim.attempts == 2


async def test_pending_mail_is_counted_until_sent_or_failed(store: Store) -> None:
    now = utcnow()
    assert await store.count_pending_mail() == 0
    later, sent, failed = mail(due=now + seconds(3600)), mail(due=now), mail(due=now)
    for item in (later, sent, failed):
        await store.enqueue_mail(item)
    assert await store.count_pending_mail() == 3  # due later counts too
    claim = await store.claim_mail(now, now + seconds(60))
    assert claim is not None
    assert await store.count_pending_mail() == 3  # being sent is still waiting
    assert await store.mark_mail_sent(claim.id, claim.lease_id, now)
    claim = await store.claim_mail(now, now + seconds(60))
    assert claim is not None
    assert await store.fail_mail(claim.id, claim.lease_id, now, "550")
    assert await store.count_pending_mail() == 1


async def test_concurrent_claims_hand_each_mail_out_once(store: Store) -> None:
    now = utcnow()
    queued = [mail(due=now - seconds(i)) for i in range(5)]
    for item in queued:
        await store.enqueue_mail(item)
    claims = await asyncio.gather(
        *(store.claim_mail(now, now + seconds(60)) for _ in range(12))
    )
    got = [claim.id for claim in claims if claim is not None]
    assert sorted(got) == sorted(item.id for item in queued)


async def test_list_and_purge_the_outbox(store: Store) -> None:
    now = utcnow()
    # due=now: mail() would otherwise be due at its own, slightly later, clock reading
    to_ann = [mail("ann@example.com", created=now + seconds(i), due=now) for i in range(3)]
    to_bob = mail("bob@example.com", created=now + seconds(5), due=now)
    for item in [*to_ann, to_bob]:
        await store.enqueue_mail(item)
    assert [m.id for m in await store.list_mail("ann@example.com")] == [
        m.id for m in reversed(to_ann)
    ]
    assert [m.id for m in await store.list_mail(limit=2)] == [to_bob.id, to_ann[2].id]

    claim = await store.claim_mail(now, now + seconds(60))
    assert claim is not None and claim.lease_id
    await store.mark_mail_sent(claim.id, claim.lease_id, now + seconds(10))
    assert await store.purge_outbox(now + seconds(10)) == 0
    assert await store.purge_outbox(now + seconds(11)) == 1
    assert await store.get_mail(claim.id) is None
    assert len(await store.list_mail()) == 3  # pending mail is never purged


# -- presence and digest checks ------------------------------------------------------------------
async def test_going_offline_asks_for_a_digest_check(store: Store) -> None:
    ann, bob = await new_user(store), await new_user(store, "bob")
    now = utcnow()
    await store.record_presence(ann.id, True, now)
    await store.record_presence(bob.id, True, now)
    assert await store.digest_checks(now + seconds(3600), 10) == []

    await store.record_presence(ann.id, False, now + seconds(10))
    [check] = await store.digest_checks(now + seconds(10), 10)
    assert check.user_id == ann.id and check.offline_since == now + seconds(10)
    assert check.check_at == now + seconds(10) and check.last_digest_at is None
    assert await store.digest_checks(now + seconds(9), 10) == []

    # back online: not checked; a stale offline report (older than the online one) is ignored
    await store.record_presence(ann.id, True, now + seconds(20))
    await store.record_presence(ann.id, False, now + seconds(15))
    assert await store.digest_checks(now + seconds(3600), 10) == []


async def test_digest_checks_come_oldest_first(store: Store) -> None:
    users = [await new_user(store, f"u{i}") for i in range(3)]
    now = utcnow()
    for i, user in enumerate(reversed(users)):
        await store.record_presence(user.id, False, now + seconds(i))
    checks = await store.digest_checks(now + seconds(10), 10)
    assert [c.user_id for c in checks] == [u.id for u in reversed(users)]
    assert len(await store.digest_checks(now + seconds(10), 2)) == 2


async def test_set_digest_check_is_compare_and_set(store: Store) -> None:
    ann = await new_user(store)
    now = utcnow()
    await store.record_presence(ann.id, False, now)
    assert not await store.set_digest_check(ann.id, now + seconds(1), now + seconds(50))
    assert await store.set_digest_check(ann.id, now, now + seconds(50))
    [check] = await store.digest_checks(now + seconds(50), 10)
    assert check.check_at == now + seconds(50)

    # recording a digest: only while still offline
    assert await store.set_digest_check(ann.id, now + seconds(50), now + seconds(500),
                                        digest_sent_at=now + seconds(60))
    [check] = await store.digest_checks(now + seconds(500), 10)
    assert check.last_digest_at == now + seconds(60) and check.check_at == now + seconds(500)
    await store.record_presence(ann.id, True, now + seconds(70))
    assert not await store.set_digest_check(ann.id, now + seconds(500), None,
                                            digest_sent_at=now + seconds(80))

    # cleared: no longer listed
    await store.record_presence(ann.id, False, now + seconds(90))
    assert await store.set_digest_check(ann.id, now + seconds(90), None)
    assert await store.digest_checks(now + seconds(10_000), 10) == []


async def test_activity_flags_offline_members_without_a_check(store: Store) -> None:
    ann, bob, cat, dan = [await new_user(store, n) for n in ("ann", "bob", "cat", "dan")]
    await store.create_chat(ChatType.GROUP, [dan.id, ann.id], "quiet", None)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id, cat.id], "team", None)
    since = utcnow()
    next_millisecond(since)  # both chats were last active at or before `since`
    await store.record_presence(bob.id, False, since)  # offline
    await store.record_presence(cat.id, True, since)  # online
    await store.record_presence(dan.id, False, since)  # offline, but his chat stays quiet
    for user in (bob, dan):  # both were looked at already: no check pending
        assert await store.set_digest_check(user.id, since, None)

    await store.append_messages(chat.id, [MessageDraft(ann.id, "hello")])
    flagged_at = utcnow() + seconds(1)
    await store.flag_digest_checks(since, flagged_at)
    checks = await store.digest_checks(flagged_at, 10)
    assert [(c.user_id, c.check_at) for c in checks] == [(bob.id, flagged_at)]

    # a pending (later) check is left alone by new activity
    assert await store.set_digest_check(bob.id, flagged_at, flagged_at + seconds(600))
    await store.append_messages(chat.id, [MessageDraft(ann.id, "again")])
    await store.flag_digest_checks(since, flagged_at + seconds(2))
    checks = await store.digest_checks(flagged_at + seconds(600), 10)
    assert [(c.user_id, c.check_at) for c in checks] == [(bob.id, flagged_at + seconds(600))]


async def test_activity_before_the_scan_start_flags_nobody(store: Store) -> None:
    ann, bob = await new_user(store), await new_user(store, "bob")
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "team", None)
    await store.append_messages(chat.id, [MessageDraft(ann.id, "hello")])
    after = utcnow() + seconds(1)
    await store.record_presence(bob.id, False, after)
    assert await store.set_digest_check(bob.id, after, None)
    await store.flag_digest_checks(after, after + seconds(1))
    assert await store.digest_checks(after + seconds(3600), 10) == []


async def test_sqlite_email_queries_use_indexes(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    from messenger.store import sqlite_email
    from messenger.store.sqlite import SQLiteStore

    adapter = SQLiteStore(tmp_path / "db.sqlite3")
    await adapter.migrate()
    await adapter.close()
    cases = {
        "due mail": (sqlite_email.SQL_DUE_MAIL, (0,), "outbox_due"),
        "digest checks": (sqlite_email.SQL_DIGEST_CHECKS, (0, 10), "presence_digest_due"),
        "flag digest checks": (sqlite_email.SQL_FLAG_DIGEST_CHECKS, (0, 0), "chats_activity"),
    }
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as conn:
        for name, (sql, params, index) in cases.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            assert any(index in step for step in plan), (name, plan)
            assert not [s for s in plan if s.startswith("SCAN") and "INDEX" not in s], (name, plan)
