"""How the mailer hands one email over: SMTP (aiosmtplib), or log mode (the log plus an ``.eml``
file per email) when ``SMTP_HOST`` is not set.

``send`` raises ``SendError`` with ``permanent`` telling the mailer whether trying again can
help: a 5xx answer to this mail's ``MAIL FROM``, ``RCPT TO`` or ``DATA`` is permanent; no
connection, a timeout, a dropped connection, a 4xx answer, and failures before the mail itself
(greeting, ``EHLO``, ``STARTTLS``, ``AUTH``: the server or its configuration, not this mail) are
temporary.
"""

from __future__ import annotations

import asyncio
import logging
import os
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from config import Settings
from messenger.models import OutboxMail

log = logging.getLogger("messenger.mail")


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def send(self, mail: OutboxMail) -> None:
        """Hand the mail over; raise ``SendError`` when that failed."""

    async def close(self) -> None:
        """End any connection politely (the next ``send`` makes a new one)."""

    async def abort(self) -> None:
        """Drop any connection at once."""


def make_transport(settings: Settings) -> Transport:
    if settings.uses_smtp:
        return SmtpTransport(settings)
    return LogTransport(settings.outbox_dir)


def _envelope_sender(settings: Settings) -> str:
    address = settings.mail_from
    if "<" in address:
        address = address.rpartition("<")[2].rstrip(">")
    return Address(addr_spec=address).addr_spec


class SmtpTransport:
    """One SMTP connection, opened on first use and reused until ``close`` or an error."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender = _envelope_sender(settings)
        self._client: aiosmtplib.SMTP | None = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",  # required, or not at all (never opportunistic)
            timeout=s.smtp_timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"cannot reach {s.smtp_host}:{s.smtp_port}: {_describe(exc)}",
                            permanent=False) from exc
        self._client = client
        return client

    async def send(self, mail: OutboxMail) -> None:
        client = await self._connected()
        try:
            await client.sendmail(self._sender, [mail.recipient], mail.message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            await self.abort()
            raise SendError(_describe(exc), permanent=any(500 <= c < 600 for c in codes)) from exc
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError,
                aiosmtplib.SMTPRecipientRefused) as exc:
            await self.abort()
            raise SendError(_describe(exc), permanent=500 <= exc.code < 600) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.abort()
            raise SendError(_describe(exc), permanent=False) from exc

    async def abort(self) -> None:
        """Drop the connection without a goodbye (after an error or a timeout, the session may
        be mid-transaction); the next mail starts on a fresh one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(_describe(refused) for refused in exc.recipients)
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return f"{code} {text}" if isinstance(code, int) else f"{type(exc).__name__}: {text}"


class LogTransport:
    """Log mode: each email goes to the log and to ``<outbox dir>/<mail id>.eml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, mail: OutboxMail) -> None:
        try:
            path = await asyncio.to_thread(self._write, mail)
        except OSError as exc:
            raise SendError(f"cannot write the .eml file: {exc}", permanent=False) from exc
        message = message_from_bytes(mail.message, policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        log.info("email (log mode; SMTP_HOST is not set) to %s, %s: %s\n%s\n(also in %s)",
                 mail.recipient, mail.kind, message["Subject"], text.rstrip(), path)

    def _write(self, mail: OutboxMail) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{mail.id}.eml"
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(mail.message)
        os.replace(partial, path)  # a reader never sees half a file
        return path

    async def close(self) -> None:
        return None

    async def abort(self) -> None:
        return None
