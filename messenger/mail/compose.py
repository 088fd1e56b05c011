"""Every email the server sends, built as ``email.message.EmailMessage`` with ``policy=default``.

Headers come only from fixed text, the configured sender and the recipient's address (parsed
with ``Address``, so it cannot smuggle a second recipient or a header); everything a user typed
(names, messages) goes only into the plain-text body. The envelope recipient is the outbox
entry's ``recipient``, never parsed from the headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from config import Settings
from messenger.clock import utcnow

LINE_MAX = 140
_SPACES = re.compile(r"\s+")


def new_message(settings: Settings, *, mail_id: str, to: str, subject: str,
                text: str) -> EmailMessage:
    message = EmailMessage(policy=policy.default)
    message["Subject"] = subject
    message["From"] = settings.mail_from
    try:
        message["To"] = Address(addr_spec=to)
    except (HeaderParseError, IndexError, ValueError):
        # An address registration let through but a header cannot hold (RFC 5322 is stricter):
        # the envelope still names it, and the SMTP server has the last word.
        message["To"] = "undisclosed-recipients:;"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{mail_id}@{_sender_domain(settings)}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message.set_content(text)
    return message


def _sender_domain(settings: Settings) -> str:
    address = settings.mail_from.rpartition("<")[2].rstrip(">")
    return address.rpartition("@")[2] or "localhost"


def link(settings: Settings, page: str, token: str) -> str:
    """A link to one of the email pages, the token in the fragment (never sent to a server)."""
    return f"{settings.links_base_url}/{page}#token={token}"


def _duration(seconds: float) -> str:
    if seconds >= 86_400 and seconds % 86_400 == 0:
        days = int(seconds // 86_400)
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def verification(settings: Settings, *, mail_id: str, to: str, name: str,
                 token: str) -> EmailMessage:
    url = link(settings, "verify-email", token)
    text = (
        f"Hi {name},\n\n"
        "please confirm that this is your email address by opening this link:\n\n"
        f"{url}\n\n"
        f"The link works once, for {_duration(settings.email_verify_token_ttl)}. "
        "A client can also send the code itself to POST /api/auth/verify:\n\n"
        f"{token}\n\n"
        "If you did not create an account, ignore this email.\n"
    )
    return new_message(settings, mail_id=mail_id, to=to, subject="Confirm your email address",
                       text=text)


def password_reset(settings: Settings, *, mail_id: str, to: str, name: str,
                   token: str) -> EmailMessage:
    url = link(settings, "reset-password", token)
    text = (
        f"Hi {name},\n\n"
        "someone (we hope you) asked to reset the password of your account. To choose a new "
        "one, open this link:\n\n"
        f"{url}\n\n"
        f"The link works once, for {_duration(settings.password_reset_token_ttl)}. Setting a "
        "new password signs out every session of the account. A client can also send the "
        "code itself to POST /api/auth/password-reset/confirm:\n\n"
        f"{token}\n\n"
        "If you did not ask for this, ignore this email: your password stays as it is.\n"
    )
    return new_message(settings, mail_id=mail_id, to=to, subject="Reset your password",
                       text=text)


@dataclass(frozen=True, slots=True)
class DigestChat:
    """One chat in a digest: its name, how many unread, the latest unread lines (oldest first)."""

    name: str
    unread: int
    lines: Sequence[tuple[str, str]]  # (sender name, text)


def shorten(text: str, limit: int = LINE_MAX) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def digest(settings: Settings, *, mail_id: str, to: str, name: str,
           chats: Sequence[DigestChat], more_chats: int, total: int) -> EmailMessage:
    """``chats``: the most recent chats with unread messages; ``more_chats``: how many others
    have some too; ``total``: unread messages in all of them."""
    plural = "s" if total != 1 else ""
    where = f"{len(chats) + more_chats} chat{'s' if len(chats) + more_chats != 1 else ''}"
    parts = [f"Hi {name},\n\nwhile you were away you got {total} unread message{plural} "
             f"in {where}:\n"]
    for chat in chats:
        parts.append(f"\n{chat.name} ({chat.unread} unread)\n")
        parts.extend(f"  {sender}: {shorten(text)}\n" for sender, text in chat.lines)
        if chat.unread > len(chat.lines):
            parts.append("  …\n")
    if more_chats:
        parts.append(f"\n…and unread messages in {more_chats} more "
                     f"chat{'s' if more_chats != 1 else ''}.\n")
    parts.append(
        f"\nOpen messenger to read them: {settings.links_base_url}/\n\n"
        f"You get at most one of these every {_duration(settings.digest_window)}, "
        "and only while you are offline.\n"
    )
    subject = f"You have {total} unread message{plural}"
    return new_message(settings, mail_id=mail_id, to=to, subject=subject, text="".join(parts))
