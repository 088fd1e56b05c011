"""The mail actors: ``MailerActor`` sends the outbox, ``DigestActor`` queues missed-message digests.

Both are ``PeriodicActor``s: a ``Tick`` runs one step of their worker (``Mailer.run_once``,
``DigestWorker.run_once``); the next tick comes from ``loop.call_later`` after the interval, or
at once when the step says more work is waiting, or when ``poke()`` is called (the outbox does
that for mail queued in this process). Ticks never pile up: at most one waits in the inbox.
A failing step is logged and retried at the next tick; it never stops the actor.

``MailWorkers`` builds, starts and stops them for ``Services``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors.runtime import Actor, ActorError
from config import Settings
from messenger.mail.digest import DigestWorker
from messenger.mail.mailer import Mailer
from messenger.mail.service import EmailService
from messenger.mail.transport import make_transport
from messenger.store import Store, StoreUnavailable

log = logging.getLogger("messenger.mail")


@dataclass(frozen=True, slots=True)
class Tick:
    """Run one step now."""


class PeriodicActor(Actor):
    inbox_size = 4

    def __init__(self, name: str, step: Callable[[], Awaitable[bool]], interval: float) -> None:
        super().__init__(name)
        self._step = step
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None
        self._tick_queued = False

    async def on_start(self) -> None:
        self._tick_queued = False
        self.poke()

    async def on_stop(self) -> None:
        self._cancel_timer()

    def poke(self) -> None:
        """Run a step as soon as the actor is free (a no-op when one is queued already)."""
        if self._tick_queued or not self.alive:
            return
        try:
            self.tell(Tick())
        except ActorError:
            return  # stopping, or the inbox is full of ticks anyway
        self._tick_queued = True

    async def receive(self, message: Any) -> bool:
        if not isinstance(message, Tick):
            raise TypeError(f"unexpected message {type(message).__name__}")
        self._tick_queued = False
        self._cancel_timer()
        more = False
        try:
            more = await self._step()
        except StoreUnavailable as exc:
            log.warning("%s: the database is not answering (%s); will retry", self.name, exc)
        except Exception:
            log.exception("%s: step failed; will retry", self.name)
        if more:
            self.poke()
        elif self.alive:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.poke)
        return more

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class MailerActor(PeriodicActor):
    def __init__(self, mailer: Mailer, interval: float) -> None:
        super().__init__("mailer", mailer.run_once, interval)
        self.mailer = mailer


class DigestActor(PeriodicActor):
    def __init__(self, worker: DigestWorker, interval: float) -> None:
        super().__init__("digests", worker.run_once, interval)
        self.worker = worker


class MailWorkers:
    """This process's mailer and (unless ``DIGEST_ENABLED=false``) digest actor."""

    def __init__(self, settings: Settings, store: Store, email: EmailService) -> None:
        self._settings = settings
        self._store = store
        self._email = email
        self.mailer: MailerActor | None = None
        self.digests: DigestActor | None = None

    async def start(self) -> None:
        settings = self._settings
        mailer = Mailer(settings, self._store, make_transport(settings))
        self.mailer = MailerActor(mailer, settings.mail_poll_interval)
        self.mailer.start()
        self._email.set_wake(self.mailer.poke)
        if settings.digest_enabled:
            worker = DigestWorker(settings, self._store, self._email)
            self.digests = DigestActor(worker, settings.digest_interval)
            self.digests.start()
        mode = (f"SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_tls})"
                if settings.uses_smtp else f"log mode: .eml files in {settings.outbox_dir}")
        log.info("mail: %s; digests %s", mode, "on" if self.digests else "off")

    async def close(self) -> None:
        """Stop queuing digests, let queued work reach the outbox, then stop the mailer
        (what it has not sent stays in the outbox for the next start)."""
        if self.digests is not None:
            await self.digests.stop()
        await self._email.close()
        self._email.set_wake(None)
        if self.mailer is not None:
            self.mailer.mailer.stopping = True  # finish the mail in hand, not the batch
            await self.mailer.stop()
            await self.mailer.mailer.transport.close()
