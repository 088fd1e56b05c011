"""Email end to end: the messenger as its own process (SQLite and MongoDB), sending over SMTP to a
real aiosmtpd server on loopback. Tokens are read out of the emails received, exactly as a person
would follow the links; presence for digests comes from real WebSocket sessions.

Nothing sleeps in the hope that something happened: every wait polls for its condition with a
deadline (``SmtpSink.wait_for``, ``until``, ``WsClient.expect``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from config import load_settings
from messenger.models import MailStatus, OutboxMail
from messenger.store import Store, open_store
from tests.conftest import server_env
from tests.support.api import Account, Api, expect_error, is_json_response
from tests.support.processes import MessengerServer
from tests.support.smtp import SmtpSink, until
from tests.support.ws import WsClient

PASSWORD = "correct horse battery"
DIGEST_DELAY = 3.0  # long enough for a test to come back and read before it runs out


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def mail_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink
) -> Iterator[MessengerServer]:
    """The messenger with SMTP pointed at the sink and every email delay made short."""
    tmp_dir = str(tmp_path_factory.mktemp(f"mail-{request.param}"))
    env = server_env(request.param, request, tmp_dir) | {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        "SMTP_TIMEOUT_SECONDS": "2",
        "MAIL_FROM": "Messenger <no-reply@messenger.test>",
        "PUBLIC_BASE_URL": "https://chat.example.com",
        "MAIL_POLL_INTERVAL_SECONDS": "0.1",
        "MAIL_LEASE_SECONDS": "10",
        "MAIL_RETRY_BASE_SECONDS": "0.1",
        "MAIL_RETRY_MAX_SECONDS": "0.3",
        "MAIL_MAX_ATTEMPTS": "1000",
        "EMAIL_RESEND_INTERVAL_SECONDS": "60",
        "PRESENCE_GRACE_SECONDS": "0.1",
        "DIGEST_DELAY_SECONDS": str(DIGEST_DELAY),
        "DIGEST_WINDOW_SECONDS": "3600",
        "DIGEST_INTERVAL_SECONDS": "0.1",
    }
    proc = MessengerServer(env).start()
    proc.backend = request.param  # type: ignore[attr-defined]
    yield proc
    proc.stop()
    # the server logged no error along the way (the outage test's retries are warnings)
    errors = [line for line in getattr(proc, "log", []) if " ERROR " in line or "Traceback" in line]
    assert not errors, "".join(errors)


@pytest.fixture
async def api(mail_server: MessengerServer) -> Api:
    return Api(mail_server.base_url)  # made inside the test's event loop


@pytest.fixture
async def outbox(mail_server: MessengerServer) -> AsyncIterator[Store]:
    """The server's database, opened from the test (reads only) to look into the outbox."""
    store = open_store(load_settings(mail_server.env))
    yield store
    await store.close()


def new_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


async def verified(api: Api, sink: SmtpSink, name: str) -> Account:
    account = await api.register(new_email(name.lower()), PASSWORD, name)
    [mail] = await sink.wait_for(account.email, subject="Confirm your email")
    resp = await api.post("/api/auth/verify", {"token": mail.token})
    assert resp.status == 200, resp.body
    return account


# -- verification ---------------------------------------------------------------------------------
async def test_register_sends_a_verification_email_whose_token_verifies(
    api: Api, sink: SmtpSink
) -> None:
    account = await api.register(new_email("ann"), PASSWORD, "Ann")
    assert account.user["email_verified"] is False
    [mail] = await sink.wait_for(account.email)
    assert mail.subject == "Confirm your email address"
    assert mail.sender == "no-reply@messenger.test" and mail.recipients == [account.email]
    assert mail.message["To"] == account.email
    assert f"https://chat.example.com/verify-email#token={mail.token}" in mail.text

    resp = await api.post("/api/auth/verify", {"token": mail.token})
    assert resp.status == 200 and is_json_response(resp), resp.body
    assert resp.json == {**account.user, "email_verified": True}
    me = await api.get("/api/users/me", token=account.access_token)
    assert me.json["email_verified"] is True
    other = await api.register(new_email("other"))
    seen = await api.get(f"/api/users/{account.id}", token=other.access_token)
    assert "email_verified" not in seen.json and "email" not in seen.json

    expect_error(await api.post("/api/auth/verify", {"token": mail.token}), 400,
                 "invalid_email_token")
    expect_error(await api.post("/api/auth/verify/resend", token=account.access_token), 409,
                 "email_already_verified")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"token": "not-a-token-we-sent"}, 400, "invalid_email_token"),
        ({}, 422, "validation_error"),
        ({"token": 12345}, 422, "validation_error"),
        ({"token": ""}, 422, "validation_error"),
        ({"token": "x" * 257}, 422, "validation_error"),
        ({"token": {"$ne": None}}, 422, "validation_error"),
    ],
)
async def test_verify_refuses_bad_tokens(api: Api, body: dict[str, Any], status: int,
                                         code: str) -> None:
    error = expect_error(await api.post("/api/auth/verify", body), status, code)
    if status == 422:
        assert error["field"] in ("token", "token.$ne")


async def test_resend_is_rate_limited(api: Api, sink: SmtpSink) -> None:
    account = await api.register(new_email("bob"))
    resp = await api.post("/api/auth/verify/resend", token=account.access_token)
    error = expect_error(resp, 429, "resend_too_soon")
    assert isinstance(error["retry_after"], int) and 1 <= error["retry_after"] <= 60
    assert resp.header("Retry-After") == str(error["retry_after"])
    expect_error(await api.post("/api/auth/verify/resend"), 401, "unauthorized")
    await sink.wait_for(account.email)  # the registration's email still came


# -- password reset -------------------------------------------------------------------------------
async def test_password_reset_end_to_end(api: Api, sink: SmtpSink) -> None:
    account = await api.register(new_email("cat"), PASSWORD, "Cat")
    login = await api.post("/api/auth/login", {"email": account.email, "password": PASSWORD})
    second_refresh = login.json["refresh_token"]

    for email in (new_email("nobody"), f"  {account.email.upper()} "):
        resp = await api.post("/api/auth/password-reset/request", {"email": email})
        assert resp.status == 202 and resp.json == {"status": "accepted"}, resp.body
    [mail] = await sink.wait_for(account.email, subject="Reset your password")
    assert f"https://chat.example.com/reset-password#token={mail.token}" in mail.text

    confirm = "/api/auth/password-reset/confirm"
    expect_error(await api.post(confirm, {"token": mail.token, "password": "short"}), 422,
                 "validation_error", "password")
    expect_error(await api.post(confirm, {"token": "forged", "password": "new password 1"}),
                 400, "invalid_email_token")
    expect_error(await api.post("/api/auth/verify", {"token": mail.token}), 400,
                 "invalid_email_token")  # a reset token does not verify
    resp = await api.post(confirm, {"token": mail.token, "password": "new password 1"})
    assert resp.status == 200 and resp.json == {"status": "password_changed"}, resp.body
    expect_error(await api.post(confirm, {"token": mail.token, "password": "new password 2"}),
                 400, "invalid_email_token")

    # every session is signed out; only the new password logs in
    for refresh in (account.refresh_token, second_refresh):
        expect_error(await api.post("/api/auth/refresh", {"refresh_token": refresh}), 401,
                     "invalid_token")
    expect_error(await api.post("/api/auth/login",
                                {"email": account.email, "password": PASSWORD}),
                 401, "invalid_credentials")
    resp = await api.post("/api/auth/login",
                          {"email": account.email, "password": "new password 1"})
    assert resp.status == 200, resp.body
    assert resp.json["user"]["email_verified"] is True  # the link proved the address


async def test_password_reset_request_checks_only_the_shape(api: Api) -> None:
    path = "/api/auth/password-reset/request"
    expect_error(await api.post(path, {"email": "not an address"}), 422, "validation_error",
                 "email")
    expect_error(await api.post(path, {}), 422, "validation_error", "email")


async def test_link_pages_are_static_html(api: Api) -> None:
    for path, endpoint in (("/verify-email", "/api/auth/verify"),
                           ("/reset-password", "/api/auth/password-reset/confirm")):
        resp = await api.get(path)
        assert resp.status == 200
        assert resp.header("Content-Type").startswith("text/html")
        csp = resp.header("Content-Security-Policy")
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
        assert resp.header("Referrer-Policy") == "no-referrer"
        assert endpoint.encode() in resp.body and b"location.hash" in resp.body
        resp = await api.post(path, {})
        expect_error(resp, 405, "method_not_allowed")
        assert resp.header("Allow") == "GET, OPTIONS"


# -- the outbox through an SMTP outage ------------------------------------------------------------
async def test_mail_waits_in_the_outbox_while_smtp_is_down(
    api: Api, sink: SmtpSink, outbox: Store
) -> None:
    sink.stop()
    try:
        account = await api.register(new_email("dan"))

        async def failed_attempts() -> OutboxMail | None:
            [mail] = await outbox.list_mail(account.email) or [None]
            return mail if mail is not None and mail.attempts >= 2 else None

        waiting = await until(failed_attempts, 20, "failed delivery attempts")
        assert waiting.status is MailStatus.PENDING and waiting.kind == "verify"
        assert "cannot reach" in (waiting.last_error or "")
        assert not sink.to(account.email)
    finally:
        sink.start()
    [mail] = await sink.wait_for(account.email)
    assert mail.subject == "Confirm your email address"

    async def sent() -> bool:
        [found] = await outbox.list_mail(account.email)
        return found.status is MailStatus.SENT

    await until(sent, 10, "the mail marked sent")
    assert len(sink.to(account.email)) == 1


# -- missed-message digests -----------------------------------------------------------------------
async def test_digest_reaches_an_offline_user_once_and_not_one_who_came_back_and_read(
    api: Api, sink: SmtpSink, mail_server: MessengerServer, outbox: Store
) -> None:
    ann = await api.register(new_email("ann"), PASSWORD, "Ann")  # stays online, sends
    bob, cat, eve = [await verified(api, sink, name) for name in ("Bob", "Cat", "Eve")]
    bob_chat = await api.create_group(ann, bob, title="Bob and Ann")
    cat_chat = await api.create_group(ann, cat, title="Cat and Ann")
    eve_chat = await api.create_group(ann, eve, title="Eve and Ann")
    ann_ws = await WsClient.connect(mail_server.base_url, ann.access_token)

    async def visit(who: Account) -> None:
        """Open a session and leave: ``who`` is online, then offline (ann sees both)."""
        ws = await WsClient.connect(mail_server.base_url, who.access_token)
        ws.close()
        await ann_ws.expect(lambda f: f.get("type") == "presence" and f["user_id"] == who.id
                            and f["status"] == "offline")

    try:
        await visit(cat)
        await visit(bob)
        for chat in (bob_chat, cat_chat):
            await api.send_text(ann, chat["id"], "lunch at noon?")
            await api.send_text(ann, chat["id"], "or at one")

        # cat comes back within the digest delay, reads, and leaves again
        cat_ws = await WsClient.connect(mail_server.base_url, cat.access_token)
        read = await api.post(f"/api/chats/{cat_chat['id']}/read", {"seq": 2},
                              token=cat.access_token)
        assert read.status == 200 and read.json["unread_count"] == 0, read.body
        cat_ws.close()

        [digest] = await sink.wait_for(bob.email, subject="unread")
        assert digest.subject == "You have 2 unread messages"
        assert "Bob and Ann (2 unread)\n  Ann: lunch at noon?\n  Ann: or at one\n" in digest.text

        # more for bob within the window: no second digest. eve goes offline last; once her
        # digest is out, the worker has looked at everyone who was due before her.
        await api.send_text(ann, bob_chat["id"], "hello?")
        await visit(eve)
        await api.send_text(ann, eve_chat["id"], "ping")
        await sink.wait_for(eve.email, subject="unread")
    finally:
        ann_ws.close()
    digests = [m for m in sink.received if "unread" in m.subject]
    assert [m.recipients for m in digests if cat.email in m.recipients] == []
    assert len([m for m in digests if bob.email in m.recipients]) == 1
    assert [m.kind for m in await outbox.list_mail(bob.email)].count("digest") == 1
    assert [m.kind for m in await outbox.list_mail(ann.email)] == ["verify"]  # online: none
