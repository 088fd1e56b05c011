"""Missed-message digests: one email to an offline user with unread messages (API_CONTRACT.md §10).

State lives in the store's presence records (``Store.record_presence`` and friends):
``offline_since`` (``changed_at``), ``last_digest_at`` and ``check_at`` — when the user should be
looked at next (none: nothing to look at). It is set when the user goes offline, and by
``flag_digest_checks`` when a chat of theirs gets a message while they are offline, so each
``run_once`` touches only users with something new, found through an index:

1. flag offline members of chats active since the last run (a short overlap covers clocks and
   transactions committing late; flagging is idempotent);
2. for each user whose ``check_at`` has come (oldest first):

   * not offline long enough, or a digest sent within the window -> look again when that ends;
   * email not verified, nothing unread, or nothing newer than the last digest -> clear;
   * else record the digest (compare-and-set on ``check_at``, only while still offline: of two
     processes only one wins, and a user who just came back gets none), look again after the
     window, and queue the email.

A digest is recorded before it is queued: at most one per window, even if queuing then fails.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from config import Settings
from messenger.clock import utcnow
from messenger.ids import new_id
from messenger.mail import compose
from messenger.mail.service import EmailService
from messenger.models import ChatType, ChatView, DigestCheck, User
from messenger.store import Store

log = logging.getLogger("messenger.mail")

#: Users looked at per run (the actor runs again at once when there were this many).
BATCH = 200
#: How far back the activity scan reaches past the previous run.
SCAN_OVERLAP = timedelta(seconds=5)
#: How far back the first scan of a process reaches (covers a restart; flagging again is
#: harmless: a user is only sent what is newer than their last digest).
STARTUP_LOOKBACK = timedelta(hours=1)
#: Chats and lines shown in one digest.
CHATS_SHOWN = 10
LINES_PER_CHAT = 3


class DigestWorker:
    def __init__(self, settings: Settings, store: Store, email: EmailService) -> None:
        self._settings = settings
        self._store = store
        self._email = email
        self._delay = timedelta(seconds=settings.digest_delay)
        self._window = timedelta(seconds=settings.digest_window)
        self._scanned_to = utcnow() - STARTUP_LOOKBACK

    async def run_once(self, now: datetime | None = None) -> bool:
        """Look at due users (up to ``BATCH``); whether more may be due right away."""
        now = now or utcnow()
        await self._store.flag_digest_checks(self._scanned_to - SCAN_OVERLAP, now)
        self._scanned_to = max(self._scanned_to, min(now, utcnow()))
        checks = await self._store.digest_checks(now, BATCH)
        for check in checks:
            await self._look_at(check, now)
        return len(checks) >= BATCH

    async def _look_at(self, check: DigestCheck, now: datetime) -> None:
        due = check.offline_since + self._delay
        if check.last_digest_at is not None:
            due = max(due, check.last_digest_at + self._window)
        if due > now:
            await self._store.set_digest_check(check.user_id, check.check_at, due)
            return
        user = await self._store.get_user(check.user_id)
        views: list[ChatView] = []
        if user is not None and user.email_verified:
            views = [v for v in await self._store.list_chat_views(
                user.id, self._settings.max_chats_listed) if v.unread_count > 0]
        fresh = [v for v in views if check.last_digest_at is None
                 or v.chat.last_activity_at > check.last_digest_at]
        if user is None or not fresh:
            await self._store.set_digest_check(check.user_id, check.check_at, None)
            return
        if not await self._store.set_digest_check(user.id, check.check_at, now + self._window,
                                                  digest_sent_at=now):
            return  # back online, or another process got there first
        await self._queue(user, views)

    async def _queue(self, user: User, views: list[ChatView]) -> None:
        shown = views[:CHATS_SHOWN]
        lines: dict[str, list[tuple[str, str]]] = {}
        people: set[str] = set()
        for view in shown:
            chat = view.chat
            messages, _ = await self._store.list_messages(
                chat.id, None, min(view.unread_count, LINES_PER_CHAT))
            unread = [m for m in messages if m.seq > view.read_seq and m.sender_id != user.id]
            lines[chat.id] = [(m.sender_id, _text_of(m.text, len(m.attachments)))
                              for m in unread]
            people.update(m.sender_id for m in unread)
            if chat.type is ChatType.DIRECT:
                people.update(member for member in chat.member_ids if member != user.id)
        names = {u.id: u.display_name for u in await self._store.get_users(sorted(people))}
        chats = [
            compose.DigestChat(
                name=_chat_name(view, user.id, names),
                unread=view.unread_count,
                lines=[(names.get(sender, "someone"), text)
                       for sender, text in lines[view.chat.id]],
            )
            for view in shown
        ]
        mail_id = new_id()
        message = compose.digest(
            self._settings, mail_id=mail_id, to=user.email, name=user.display_name, chats=chats,
            more_chats=len(views) - len(shown), total=sum(v.unread_count for v in views),
        )
        await self._email.enqueue("digest", user.email, message, mail_id)
        log.info("queued a digest for user %s: %d chats with unread messages", user.id,
                 len(views))


def _text_of(text: str, attachments: int) -> str:
    if text.strip():
        return text
    return f"[{attachments} attachment{'s' if attachments != 1 else ''}]" if attachments else ""


def _chat_name(view: ChatView, user_id: str, names: dict[str, str]) -> str:
    chat = view.chat
    if chat.type is ChatType.DIRECT:
        other = next((m for m in chat.member_ids if m != user_id), None)
        return names.get(other or "", "a direct chat")
    return chat.title or "a group chat"
