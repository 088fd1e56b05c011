"""``GET /api/events?last_event_id=<cursor>&timeout=25``: the user's events by long polling.

The same events, with the same cursors, as a WebSocket session gets (``new_message`` for the
sender too: a poll has no session to ack). Answers at once when events after the cursor are
waiting (at most ``POLL_MAX_EVENTS``), else when one arrives or the timeout ends. Without
``last_event_id`` it answers at once with no events and the current cursor. A poll counts as
a session for presence while it waits and for ``PRESENCE_GRACE_SECONDS`` after it (the gap to
the next poll). When the process starts shutting down (``messenger/drain.py``) every waiting
poll answers at once, 200 with what it has and its cursor, and so does every poll after it.
"""

from __future__ import annotations

import uuid

import orjson

from actors.hub import PollOutlet
from handlers.base import BaseHandler
from handlers.ws import resume_cursor
from messenger import validation
from messenger.drain import Drain
from messenger.realtime import frames


class PollSession:
    """A long poll as a presence ``Session``."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex

    def disconnect(self, reason: str) -> None:
        return None


class EventsHandler(BaseHandler):
    async def get(self) -> None:
        settings = self.services.settings
        resume = resume_cursor(self.get_query_argument("last_event_id", None))
        timeout = validation.query_float(
            self.get_query_argument("timeout", None), "timeout",
            default=settings.poll_timeout_default, minimum=0.0,
            maximum=settings.poll_timeout_max)
        self._poll = PollSession()
        self._outlet = PollOutlet(session_id=self._poll.id)
        drain: Drain = self.application.drain  # type: ignore[attr-defined]
        drain.hold_poll(self._outlet.wake)
        try:
            result = await self.services.realtime.poll(
                self.user_id, resume, timeout, self._poll, self._outlet)
        finally:
            drain.release_poll(self._outlet.wake)
        found = list(result.frames)
        if result.resync:
            found.insert(0, frames.control("resync_required", result.cursor))
        body = b'{"events":[%s],"last_event_id":%s}' % (
            b",".join(found), orjson.dumps(result.cursor))
        if self.request.connection.stream.closed():  # type: ignore[attr-defined]
            return
        self.set_status(200)
        self.finish(body)

    def on_connection_close(self) -> None:
        outlet = getattr(self, "_outlet", None)
        if outlet is not None:
            outlet.wake.set()
