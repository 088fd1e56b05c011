"""EmailService: email verification and password reset, and the one way mail enters the outbox.

Tokens are 256 random bits (``secrets.token_urlsafe(32)``, 43 characters); the store keeps only
their SHA-256, so a copy of the database lets nobody verify or reset anything. Each is spent
once (``Store.consume_email_token``).

Every email is composed here (or by the digest worker), stored in the outbox with
``enqueue``, and sent by the mailer, which ``enqueue`` wakes when it runs in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage

from config import Settings
from messenger.accounts import AccountService
from messenger.clock import utcnow
from messenger.errors import EmailAlreadyVerified, InvalidEmailToken, ResendTooSoon
from messenger.ids import new_id
from messenger.mail import compose
from messenger.models import EmailTokenPurpose, MailStatus, OutboxMail, User
from messenger.store import Store

log = logging.getLogger("messenger.mail")

CLOSE_GRACE_SECONDS = 5.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EmailService:
    def __init__(self, settings: Settings, store: Store, accounts: AccountService) -> None:
        self._settings = settings
        self._store = store
        self._accounts = accounts
        self._wake: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """What ``enqueue`` calls so this process's mailer sends new mail at once."""
        self._wake = wake

    async def close(self) -> None:
        """Let reset requests still being handled finish (a short grace)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_SECONDS)

    # -- the outbox ------------------------------------------------------------------------------
    async def enqueue(self, kind: str, recipient: str, message: EmailMessage,
                      mail_id: str) -> OutboxMail:
        now = utcnow()
        mail = OutboxMail(
            id=mail_id,
            kind=kind,
            recipient=recipient,
            message=message.as_bytes(),
            status=MailStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        await self._store.enqueue_mail(mail)
        if self._wake is not None:
            self._wake()
        return mail

    async def _new_token(self, user: User, purpose: EmailTokenPurpose, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=ttl)
        await self._store.add_email_token(hash_token(token), user.id, purpose, expires_at)
        return token

    async def _slot_left(self, kind: str, user: User) -> float:
        """Take this account's slot for ``kind`` mail; the seconds until the next, if taken."""
        return await self._store.claim_send_slot(
            f"{kind}:{user.id}", utcnow(), self._settings.email_resend_interval
        )

    # -- verification ----------------------------------------------------------------------------
    async def send_verification(self, user: User) -> None:
        """Queue the verification email of a new account. Never raises: registration has
        succeeded either way, and the person can ask for the email again."""
        try:
            if await self._slot_left("verify", user) == 0:
                await self._queue_verification(user)
        except Exception:
            log.exception("could not queue the verification email of user %s", user.id)

    async def resend_verification(self, user: User) -> None:
        if user.email_verified:
            raise EmailAlreadyVerified("this email address is verified already")
        left = await self._slot_left("verify", user)
        if left > 0:
            raise ResendTooSoon(
                "a verification email was sent moments ago; try again later",
                retry_after=max(1, math.ceil(left)),
            )
        await self._queue_verification(user)

    async def _queue_verification(self, user: User) -> None:
        token = await self._new_token(user, EmailTokenPurpose.VERIFY,
                                      self._settings.email_verify_token_ttl)
        mail_id = new_id()
        message = compose.verification(self._settings, mail_id=mail_id, to=user.email,
                                       name=user.display_name, token=token)
        await self.enqueue("verify", user.email, message, mail_id)

    async def verify(self, token: str) -> User:
        user_id = await self._store.consume_email_token(hash_token(token),
                                                        EmailTokenPurpose.VERIFY)
        user = await self._store.set_email_verified(user_id) if user_id else None
        if user is None:
            raise InvalidEmailToken("this verification link is unknown, used or expired")
        return user

    # -- password reset --------------------------------------------------------------------------
    def request_password_reset(self, email: str) -> None:
        """Queue a reset email for the account of ``email``, if there is one, in the background:
        the caller answers at once, so its timing tells nothing about the account."""
        task = asyncio.get_running_loop().create_task(self._send_reset(email))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_reset(self, email: str) -> None:
        try:
            user = await self._store.get_user_by_email(email)
            if user is None or await self._slot_left("reset", user) > 0:
                return
            token = await self._new_token(user, EmailTokenPurpose.RESET,
                                          self._settings.password_reset_token_ttl)
            mail_id = new_id()
            message = compose.password_reset(self._settings, mail_id=mail_id, to=user.email,
                                             name=user.display_name, token=token)
            await self.enqueue("reset", user.email, message, mail_id)
        except Exception:
            log.exception("could not queue a password-reset email")

    async def confirm_password_reset(self, token: str, password: str) -> None:
        user_id = await self._store.consume_email_token(hash_token(token),
                                                        EmailTokenPurpose.RESET)
        if user_id is None or not await self._accounts.reset_password(user_id, password):
            raise InvalidEmailToken("this password-reset link is unknown, used or expired")
        await self._store.set_email_verified(user_id)  # the link reached the address
