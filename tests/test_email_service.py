"""Email below HTTP, on both stores, against a real SMTP server (aiosmtpd on loopback):
composing, the mailer (delivery, outage and retries, permanent failures, two mailers on one
outbox, log mode), the verification and reset flows, and missed-message digests.

Digest tests drive time with a controllable clock (``messenger.clock``), so "offline for 15
minutes" and "one per 6 hours" are checked exactly, without sleeping. Mailer tests use real
time with tiny backoffs and poll for the outcome with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

import messenger.clock
from actors.mail import MailerActor, Tick
from config import Settings, load_settings
from handlers.email import EMAIL_TOKEN_MAX
from messenger import api_spec_email
from messenger.errors import EmailAlreadyVerified, InvalidEmailToken, ResendTooSoon
from messenger.ids import new_id
from messenger.mail import compose
from messenger.mail.digest import DigestWorker
from messenger.mail.mailer import Mailer
from messenger.mail.service import EmailService, hash_token
from messenger.mail.transport import LogTransport, SmtpTransport, make_transport
from messenger.models import ChatType, MailStatus, MessageDraft, RefreshSpend, User
from messenger.services import Services
from messenger.store import Store
from messenger.tokens import REFRESH
from tests.support.smtp import SmtpSink, until

SENDER = "no-reply@messenger.test"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


def second_adapter(store: Store) -> Store:
    """Another handle on the same database, as a second server process would have."""
    from messenger.store.mongo import MongoStore
    from messenger.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, MongoStore)
    return MongoStore(store.url, store.db_name, timeout_ms=3000)


def mail_settings(tmp_path: Path, sink: SmtpSink | None = None, **env: str) -> Settings:
    values = {
        "MESSENGER_DATA_DIR": str(tmp_path),
        "BCRYPT_ROUNDS": "4",
        "MAIL_FROM": f"Messenger <{SENDER}>",
        "PUBLIC_BASE_URL": "https://chat.example.com",
        "SMTP_TLS": "none",
        "SMTP_TIMEOUT_SECONDS": "10",
        "MAIL_LEASE_SECONDS": "30",
        "MAIL_RETRY_BASE_SECONDS": "0.05",
        "MAIL_RETRY_MAX_SECONDS": "0.2",
        "EMAIL_RESEND_INTERVAL_SECONDS": "60",
        "DIGEST_DELAY_SECONDS": "60",
        "DIGEST_WINDOW_SECONDS": "3600",
    }
    if sink is not None:
        values |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)}
    return load_settings(values | env)


async def new_user(store: Store, name: str, *, verified: bool = False) -> User:
    user = await store.create_user(f"{name}.{new_id()[-8:]}@example.com", b"hash", name.title())
    if verified:
        found = await store.set_email_verified(user.id)
        assert found is not None
        return found
    return user


async def send_all(mailer: Mailer, store: Store, within: float = 15.0) -> None:
    """Run the mailer until no mail is pending (a rare temporary failure is retried)."""

    async def nothing_pending() -> bool:
        await mailer.run_once()
        return all(m.status is not MailStatus.PENDING for m in await store.list_mail())

    await until(nothing_pending, within, "the outbox to be sent")


async def drain(mailer: Mailer, store: Store, mail_id: str, status: MailStatus,
                within: float = 15.0) -> None:
    """Run the mailer until the mail reaches ``status`` (retries come due on their own)."""

    async def reached() -> bool:
        await mailer.run_once()
        found = await store.get_mail(mail_id)
        return found is not None and found.status is status

    await until(reached, within, f"mail {mail_id} to be {status}")


class Clock:
    """``messenger.clock.utcnow`` under the test's control: it moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()

    class Controlled(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return controlled.now

    monkeypatch.setattr(messenger.clock, "datetime", Controlled)
    return controlled


# -- composing ------------------------------------------------------------------------------------
def test_verification_email_is_a_well_formed_message(tmp_path: Path) -> None:
    settings = mail_settings(tmp_path)
    mail_id = new_id()
    message = compose.verification(settings, mail_id=mail_id, to="ann@example.com", name="Ann",
                                   token="tok_EN-123")
    assert isinstance(message, EmailMessage) and message.policy == policy.default
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["From"] == f"Messenger <{SENDER}>"
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "Confirm your email address"
    assert parsed["Message-ID"] == f"<{mail_id}@messenger.test>"
    assert parsed["Auto-Submitted"] == "auto-generated" and parsed["Date"]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://chat.example.com/verify-email#token=tok_EN-123" in text
    assert "2 days" in text and "Hi Ann," in text


def test_an_address_a_header_cannot_hold_does_not_smuggle_recipients(tmp_path: Path) -> None:
    message = compose.verification(mail_settings(tmp_path), mail_id=new_id(),
                                   to="a,evil@example.com", name="A", token="t")
    assert message["To"] == "undisclosed-recipients:;"
    assert message["To"].addresses == ()


def test_token_length_limits_agree() -> None:
    assert EMAIL_TOKEN_MAX == api_spec_email.EMAIL_TOKEN_MAX


# -- the mailer -----------------------------------------------------------------------------------
async def test_mailer_sends_queued_mail_over_smtp(store: Store, sink: SmtpSink,
                                                  tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink)
    services = Services.build(settings, store)
    user = await new_user(store, "ann")
    await services.email.send_verification(user)
    [queued] = await store.list_mail(user.email)
    assert queued.kind == "verify" and queued.status is MailStatus.PENDING

    mailer = Mailer(settings, store, make_transport(settings))
    assert isinstance(mailer.transport, SmtpTransport)
    await drain(mailer, store, queued.id, MailStatus.SENT)
    [received] = sink.to(user.email)
    assert received.sender == SENDER and received.recipients == [user.email]
    assert received.raw.replace(b"\r\n", b"\n") == queued.message.replace(b"\r\n", b"\n")
    assert received.message["Message-ID"] == f"<{queued.id}@messenger.test>"
    sent = await store.get_mail(queued.id)
    assert sent is not None and sent.status is MailStatus.SENT and sent.finished_at
    await mailer.run_once()
    assert len(sink.to(user.email)) == 1  # sent once


async def test_smtp_outage_keeps_mail_in_the_outbox_until_it_returns(
    store: Store, sink: SmtpSink, tmp_path: Path
) -> None:
    settings = mail_settings(tmp_path, sink, MAIL_RETRY_BASE_SECONDS="0.05",
                             MAIL_RETRY_MAX_SECONDS="0.1")
    services = Services.build(settings, store)
    user = await new_user(store, "bob")
    sink.stop()
    await services.email.send_verification(user)
    [queued] = await store.list_mail(user.email)
    mailer = Mailer(settings, store, make_transport(settings))

    await mailer.run_once()
    waiting = await store.get_mail(queued.id)
    assert waiting is not None and waiting.status is MailStatus.PENDING
    assert waiting.attempts == 1 and "cannot reach" in (waiting.last_error or "")
    assert waiting.next_attempt_at > waiting.created_at  # backing off

    async def retried() -> bool:  # a few more failed attempts while the server is down
        await mailer.run_once()
        found = await store.get_mail(queued.id)
        return found is not None and found.attempts >= 3

    await until(retried, 10, "more attempts")
    assert not sink.received

    sink.start()
    await drain(mailer, store, queued.id, MailStatus.SENT)
    assert len(sink.to(user.email)) == 1


async def test_a_permanent_refusal_fails_the_mail_at_once(store: Store, sink: SmtpSink,
                                                          tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink)
    email = EmailService(settings, store, Services.build(settings, store).accounts)
    message = compose.new_message(settings, mail_id=(mail_id := new_id()),
                                  to="reject@example.com", subject="hi", text="hello")
    await email.enqueue("verify", "reject@example.com", message, mail_id)
    mailer = Mailer(settings, store, make_transport(settings))
    await drain(mailer, store, mail_id, MailStatus.FAILED)
    failed = await store.get_mail(mail_id)
    assert failed is not None and failed.status is MailStatus.FAILED
    assert (failed.last_error or "").startswith("550")
    assert failed.finished_at is not None


async def test_temporary_refusals_fail_after_the_last_attempt(store: Store, sink: SmtpSink,
                                                              tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink, MAIL_MAX_ATTEMPTS="3",
                             MAIL_RETRY_BASE_SECONDS="0.01", MAIL_RETRY_MAX_SECONDS="0.02")
    email = EmailService(settings, store, Services.build(settings, store).accounts)
    message = compose.new_message(settings, mail_id=(mail_id := new_id()),
                                  to="tempfail@example.com", subject="hi", text="hello")
    await email.enqueue("verify", "tempfail@example.com", message, mail_id)
    mailer = Mailer(settings, store, make_transport(settings))
    await drain(mailer, store, mail_id, MailStatus.FAILED)
    failed = await store.get_mail(mail_id)
    assert failed is not None and failed.attempts == 3
    assert (failed.last_error or "").startswith("451")


def test_backoff_doubles_up_to_the_ceiling(tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, MAIL_RETRY_BASE_SECONDS="30", MAIL_RETRY_MAX_SECONDS="100")
    mailer = Mailer(settings, None, LogTransport(tmp_path))  # type: ignore[arg-type]
    assert [mailer.backoff(n) for n in (1, 2, 3, 4, 500)] == [30, 60, 100, 100, 100]


async def test_two_mailers_on_one_outbox_send_each_mail_once(store: Store, sink: SmtpSink,
                                                             tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink)
    email = EmailService(settings, store, Services.build(settings, store).accounts)
    ids = []
    for i in range(30):
        to = f"user{i}@example.com"
        mail_id = new_id()
        ids.append(mail_id)
        await email.enqueue("verify", to, compose.new_message(
            settings, mail_id=mail_id, to=to, subject=f"mail {i}", text="hi"), mail_id)
    other = second_adapter(store)
    try:
        first = Mailer(settings, store, make_transport(settings))
        second = Mailer(settings, other, make_transport(settings))

        async def run(mailer: Mailer) -> None:
            while await mailer.run_once():
                pass

        async def all_sent() -> bool:  # (a rare temporary failure leaves a mail for later)
            await asyncio.gather(run(first), run(second))
            return all(m.status is MailStatus.SENT for m in await store.list_mail())

        await until(all_sent, 20, "every mail sent")
    finally:
        await other.close()
    message_ids = sorted(str(item.message["Message-ID"]) for item in sink.received)
    assert message_ids == sorted(f"<{mail_id}@messenger.test>" for mail_id in ids)
    assert {m.status for m in await store.list_mail()} == {MailStatus.SENT}


async def test_log_mode_writes_an_eml_file_and_logs_it(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mail_settings(tmp_path)  # no SMTP_HOST
    services = Services.build(settings, store)
    user = await new_user(store, "eve")
    await services.email.send_verification(user)
    [queued] = await store.list_mail(user.email)
    mailer = Mailer(settings, store, make_transport(settings))
    assert isinstance(mailer.transport, LogTransport)
    with caplog.at_level(logging.INFO, logger="messenger.mail"):
        await mailer.run_once()
    path = settings.outbox_dir / f"{queued.id}.eml"
    assert path.read_bytes() == queued.message
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed["To"] == user.email and "verify-email#token=" in parsed.as_string()
    assert "Confirm your email address" in caplog.text and str(path) in caplog.text
    assert (await store.get_mail(queued.id)).status is MailStatus.SENT  # type: ignore[union-attr]


async def test_mailer_actor_sends_new_mail_without_waiting_for_its_poll(
    store: Store, sink: SmtpSink, tmp_path: Path
) -> None:
    settings = mail_settings(tmp_path, sink, MAIL_POLL_INTERVAL_SECONDS="3600")
    services = Services.build(settings, store)
    actor = MailerActor(Mailer(settings, store, make_transport(settings)), 3600).start()
    services.email.set_wake(actor.poke)
    try:
        await actor.ask(Tick(), timeout=10)  # the first run, with nothing to send
        user = await new_user(store, "fay")
        await services.email.send_verification(user)  # pokes the actor
        await sink.wait_for(user.email, timeout=10)
    finally:
        await actor.stop()


# -- verification and password reset (service level) ----------------------------------------------
async def test_verification_token_is_single_use(store: Store, sink: SmtpSink,
                                                tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink)
    services = Services.build(settings, store)
    user = await new_user(store, "gus")
    await services.email.send_verification(user)
    await send_all(Mailer(settings, store, make_transport(settings)), store)
    [received] = sink.to(user.email)
    token = received.token
    assert len(token) == 43
    assert await store.consume_email_token(token, "verify") is None  # type: ignore[arg-type]
    assert hash_token(token) != token  # only the hash is stored

    verified = await services.email.verify(token)
    assert verified.id == user.id and verified.email_verified
    with pytest.raises(InvalidEmailToken):
        await services.email.verify(token)
    with pytest.raises(EmailAlreadyVerified):
        await services.email.resend_verification(verified)


async def test_resend_is_rate_limited_per_account(store: Store, tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, EMAIL_RESEND_INTERVAL_SECONDS="60")
    services = Services.build(settings, store)
    user = await new_user(store, "hal")
    await services.email.send_verification(user)
    with pytest.raises(ResendTooSoon) as refused:
        await services.email.resend_verification(user)
    assert 58 <= refused.value.retry_after <= 60
    assert refused.value.to_json()["error"]["retry_after"] == refused.value.retry_after
    other = await new_user(store, "ida")
    await services.email.resend_verification(other)  # its own slot
    assert len(await store.list_mail(user.email)) == 1
    assert len(await store.list_mail(other.email)) == 1


async def test_password_reset_flow(store: Store, sink: SmtpSink, tmp_path: Path) -> None:
    settings = mail_settings(tmp_path, sink)
    services = Services.build(settings, store)
    session = await services.accounts.register(f"jo.{new_id()[-6:]}@example.com",
                                               "old password!", "Jo")
    user = session.user
    services.email.request_password_reset("nobody@example.com")
    services.email.request_password_reset(user.email)
    services.email.request_password_reset(user.email)  # within the interval: dropped
    await services.email.close()  # the requests are handled in the background
    assert [m.kind for m in await store.list_mail()] == ["reset"]

    await send_all(Mailer(settings, store, make_transport(settings)), store)
    [received] = sink.to(user.email)
    assert received.subject == "Reset your password"
    with pytest.raises(InvalidEmailToken):
        await services.email.verify(received.token)  # a reset token does not verify
    await services.email.confirm_password_reset(received.token, "new password!")
    with pytest.raises(InvalidEmailToken):
        await services.email.confirm_password_reset(received.token, "another one!")

    claims = services.tokens.decode(session.refresh_token, REFRESH)
    assert (await store.spend_refresh_token(claims.jti)).outcome is RefreshSpend.REVOKED
    assert (await services.accounts.login(user.email, "new password!")).user.email_verified


# -- missed-message digests -----------------------------------------------------------------------
async def test_one_digest_for_an_offline_user_none_for_one_who_read_in_time(
    store: Store, sink: SmtpSink, tmp_path: Path, clock: Clock
) -> None:
    settings = mail_settings(tmp_path, sink, DIGEST_DELAY_SECONDS="60",
                             DIGEST_WINDOW_SECONDS="3600")
    services = Services.build(settings, store)
    mailer = Mailer(settings, store, make_transport(settings))
    worker = DigestWorker(settings, store, services.email)
    ann = await new_user(store, "ann", verified=True)
    bob = await new_user(store, "bob", verified=True)
    cat = await new_user(store, "cat", verified=True)
    dan = await new_user(store, "dan")  # never verified his email
    team, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id, cat.id, dan.id],
                                      "Team", None)
    direct, _ = await store.create_chat(ChatType.DIRECT, [ann.id, bob.id], None,
                                        f"{ann.id}:{bob.id}")
    start = clock.now
    for user in (bob, cat, dan):
        await store.record_presence(user.id, False, start)

    clock.advance(1)
    await store.append_messages(team.id, [MessageDraft(ann.id, "standup at 10"),
                                          MessageDraft(ann.id, "bring\ncoffee")])
    await store.append_messages(direct.id, [MessageDraft(ann.id, "are you there?")])

    async def digests() -> dict[str, int]:
        await send_all(mailer, store)
        counts: dict[str, int] = {}
        for item in sink.received:
            if "unread message" in item.subject:
                counts[item.recipients[0]] = counts.get(item.recipients[0], 0) + 1
        return counts

    clock.advance(29)  # offline for 30 s: not yet
    await worker.run_once()
    assert await digests() == {}

    await store.mark_read(team.id, cat.id, 2)  # cat read everything in time
    clock.advance(31)  # offline for 61 s
    await worker.run_once()
    assert await digests() == {bob.email: 1}
    [digest] = sink.to(bob.email)
    assert digest.subject == "You have 3 unread messages"
    text = digest.text
    assert "in 2 chats" in text
    assert "Team (2 unread)\n  Ann: standup at 10\n  Ann: bring coffee\n" in text
    assert "Ann (1 unread)\n  Ann: are you there?\n" in text
    assert "https://chat.example.com/" in text and "every 1 hour" in text

    # more messages within the window: nothing now, one more digest when the window ends
    clock.advance(60)
    await store.append_messages(direct.id, [MessageDraft(ann.id, "where are you?")])
    clock.advance(1)
    await worker.run_once()
    clock.advance(3000)
    await worker.run_once()
    assert await digests() == {bob.email: 1}
    clock.advance(600)
    await worker.run_once()
    assert await digests() == {bob.email: 2}
    assert sink.to(bob.email)[1].subject == "You have 4 unread messages"

    # nothing new since: no digest, however long bob stays away
    clock.advance(7200)
    await worker.run_once()
    clock.advance(7200)
    await worker.run_once()
    assert await digests() == {bob.email: 2}

    # bob comes back and goes again without reading; only a new message brings a digest
    await store.record_presence(bob.id, True, clock.advance(1))
    await store.record_presence(bob.id, False, clock.advance(1))
    clock.advance(120)
    await worker.run_once()
    assert await digests() == {bob.email: 2}
    await store.append_messages(direct.id, [MessageDraft(ann.id, "ping")])
    clock.advance(1)
    await worker.run_once()
    assert await digests() == {bob.email: 3}


async def test_no_digest_for_a_user_who_came_back_online(store: Store, sink: SmtpSink,
                                                          tmp_path: Path, clock: Clock) -> None:
    settings = mail_settings(tmp_path, sink)
    services = Services.build(settings, store)
    worker = DigestWorker(settings, store, services.email)
    ann = await new_user(store, "ann", verified=True)
    bob = await new_user(store, "bob", verified=True)
    chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "pair", None)
    await store.record_presence(bob.id, False, clock.now)
    clock.advance(10)
    await store.append_messages(chat.id, [MessageDraft(ann.id, "hi")])
    clock.advance(10)
    await store.record_presence(bob.id, True, clock.now)  # back before the delay ran out
    clock.advance(3600)
    await worker.run_once()
    assert await store.list_mail(bob.email) == []


async def test_two_digest_workers_send_one_digest(store: Store, sink: SmtpSink,
                                                  tmp_path: Path, clock: Clock) -> None:
    settings = mail_settings(tmp_path, sink)
    other = second_adapter(store)
    try:
        workers = [DigestWorker(settings, s, Services.build(settings, s).email)
                   for s in (store, other, store, other)]
        ann = await new_user(store, "ann", verified=True)
        bob = await new_user(store, "bob", verified=True)
        chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], "pair", None)
        await store.record_presence(bob.id, False, clock.now)
        await store.append_messages(chat.id, [MessageDraft(ann.id, "hi")])
        clock.advance(3600)
        await asyncio.gather(*(worker.run_once() for worker in workers))
    finally:
        await other.close()
    assert [m.kind for m in await store.list_mail(bob.email)] == ["digest"]


async def test_digest_lists_at_most_ten_chats(store: Store, sink: SmtpSink, tmp_path: Path,
                                              clock: Clock) -> None:
    settings = mail_settings(tmp_path, sink)
    services = Services.build(settings, store)
    ann = await new_user(store, "ann", verified=True)
    bob = await new_user(store, "bob", verified=True)
    await store.record_presence(bob.id, False, clock.now)
    for i in range(12):
        chat, _ = await store.create_chat(ChatType.GROUP, [ann.id, bob.id], f"chat {i}", None)
        clock.advance(1)
        await store.append_messages(chat.id, [MessageDraft(ann.id, f"m{n}") for n in range(5)])
    clock.advance(3600)
    await DigestWorker(settings, store, services.email).run_once()
    await send_all(Mailer(settings, store, make_transport(settings)), store)
    [digest] = sink.to(bob.email)
    assert digest.subject == "You have 60 unread messages"
    text = digest.text
    assert "in 12 chats" in text and "…and unread messages in 2 more chats." in text
    assert "chat 11 (5 unread)\n  Ann: m2\n  Ann: m3\n  Ann: m4\n  …\n" in text
    assert "chat 1 (" not in text and "chat 0 (" not in text
