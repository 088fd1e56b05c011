"""The mailer: sends due mail from the outbox, one claimed mail at a time.

``run_once`` claims the mail due first (a lease of ``MAIL_LEASE_SECONDS``: no other mailer gets
it meanwhile), hands it to the transport with a deadline of half the lease (so the attempt is
over, one way or the other, before anyone else may take the mail), and records the outcome:

* sent -> ``sent``;
* a permanent failure (5xx), or the ``MAIL_MAX_ATTEMPTS``-th failure -> ``failed``, logged;
* another failure -> due again after ``MAIL_RETRY_BASE_SECONDS * 2**(attempts - 1)``, at most
  ``MAIL_RETRY_MAX_SECONDS``.

A mailer that dies mid-attempt leaves the mail leased; it is due again when the lease ends
(delivery is at least once). Sent and failed mail is purged a week after it finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from config import Settings
from messenger.clock import utcnow
from messenger.mail.transport import SendError, Transport
from messenger.models import OutboxMail
from messenger.store import Store

log = logging.getLogger("messenger.mail")

#: Most mails handled by one ``run_once`` (the actor then runs again at once).
BATCH = 50
OUTBOX_RETENTION = timedelta(days=7)
PURGE_INTERVAL_SECONDS = 3600.0


class Mailer:
    def __init__(self, settings: Settings, store: Store, transport: Transport) -> None:
        self._settings = settings
        self._store = store
        self.transport = transport
        self._last_purge = float("-inf")
        #: Set when the process stops: ``run_once`` returns after the mail in hand.
        self.stopping = False
        self._running = asyncio.Lock()  # one run at a time: they share the connection
        self.outbox_pending = 0  # mail waiting in the outbox at the end of the last run

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        base, ceiling = self._settings.mail_retry_base, self._settings.mail_retry_max
        return min(ceiling, base * 2 ** min(attempts - 1, 60))

    async def run_once(self) -> bool:
        """Send what is due (up to ``BATCH``); whether more may be due right away. Then
        counts what is left waiting (``outbox_pending``, read by the metrics)."""
        async with self._running:
            more = await self._run()
            self.outbox_pending = await self._store.count_pending_mail()
            return more

    async def _run(self) -> bool:
        handled = 0
        try:
            while handled < BATCH and not self.stopping:
                now = utcnow()
                mail = await self._store.claim_mail(
                    now, now + timedelta(seconds=self._settings.mail_lease)
                )
                if mail is None:
                    break
                handled += 1
                await self._attempt(mail)
            await self._purge()
        finally:
            if handled < BATCH:
                await self.transport.close()  # idle: no connection held between runs
        return handled >= BATCH

    async def _attempt(self, mail: OutboxMail) -> None:
        assert mail.lease_id is not None
        try:
            async with asyncio.timeout(self._settings.mail_lease / 2):
                await self.transport.send(mail)
        except SendError as exc:
            error, permanent = str(exc), exc.permanent
        except TimeoutError:
            error, permanent = "timed out", False
            await self.transport.abort()
        else:
            if await self._store.mark_mail_sent(mail.id, mail.lease_id, utcnow()):
                log.info("sent %s email %s to %s", mail.kind, mail.id, mail.recipient)
            else:
                log.warning("sent %s email %s, but its lease had passed to another mailer",
                            mail.kind, mail.id)
            return
        error = error[:1000]
        if permanent or mail.attempts >= self._settings.mail_max_attempts:
            await self._store.fail_mail(mail.id, mail.lease_id, utcnow(), error)
            log.error("giving up on %s email %s to %s after %d attempt(s): %s",
                      mail.kind, mail.id, mail.recipient, mail.attempts, error)
            return
        delay = self.backoff(mail.attempts)
        await self._store.retry_mail(mail.id, mail.lease_id,
                                     utcnow() + timedelta(seconds=delay), error)
        log.warning("%s email %s to %s not sent (attempt %d): %s; retrying in %.3gs",
                    mail.kind, mail.id, mail.recipient, mail.attempts, error, delay)

    async def _purge(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_INTERVAL_SECONDS:
            return
        self._last_purge = time.monotonic()
        purged = await self._store.purge_outbox(utcnow() - OUTBOX_RETENTION)
        if purged:
            log.info("purged %d finished emails from the outbox", purged)
