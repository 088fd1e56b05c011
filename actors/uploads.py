"""UploadCleaner: the actor that deletes expired uploads (API_CONTRACT.md §9, clean-up).

One per process. It sweeps once right after start and then every
``UPLOAD_CLEANUP_INTERVAL_SECONDS`` (its own timer tells it ``Sweep``); ``ask(Sweep())`` runs
one now and answers how many uploads it deleted. A sweep that fails (database or storage
down) is logged and the next one tries again; several processes sweeping the same uploads is
harmless (deletes are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.runtime import Actor, ActorError

if TYPE_CHECKING:
    from messenger.attachments import AttachmentService

log = logging.getLogger("messenger.attachments")


@dataclass(frozen=True, slots=True)
class Sweep:
    """Delete expired uploads now; answers how many were deleted."""


class UploadCleaner(Actor):
    inbox_size = 10

    def __init__(self, attachments: AttachmentService, interval: float) -> None:
        super().__init__("upload-cleaner")
        self._attachments = attachments
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None

    async def on_start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        """Queue a sweep (unless one is queued already) and arm the next tick."""
        if not self.alive:
            return
        with contextlib.suppress(ActorError):  # inbox full of sweeps already, or stopping
            self.tell(Sweep())
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    async def receive(self, message: Any) -> int:
        if not isinstance(message, Sweep):
            raise TypeError(f"unexpected message {type(message).__name__}")
        try:
            deleted = await self._attachments.clean_orphans()
        except Exception as exc:
            log.warning("upload clean-up failed, will retry: %s", exc)
            return 0
        if deleted:
            log.info("deleted %d expired uploads", deleted)
        return deleted

    async def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
