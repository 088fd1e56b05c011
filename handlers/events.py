"""``GET /api/events?last_event_id=N&timeout=25``: the user's event stream by long polling.

The same events, with the same ids, as a WebSocket session gets. Answers at once when events
above ``last_event_id`` are waiting (at most ``POLL_MAX_EVENTS``), else when one arrives or the
timeout ends. Without ``last_event_id`` it answers at once with no events and the current
cursor. A poll counts as a session for presence while it waits and for
``PRESENCE_GRACE_SECONDS`` after it (the gap to the next poll).
"""

from __future__ import annotations

import uuid

from handlers.base import BaseHandler
from messenger import events, validation
from messenger.events import Event


class PollSession:
    """A long poll as a ``Session``: counted for presence, never written to."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.cursor = 0
        self.live = False
        self.closed = False

    def write_events(self, batch: list[Event]) -> None:
        return None

    def disconnect(self, reason: str) -> None:
        return None


class EventsHandler(BaseHandler):
    async def get(self) -> None:
        settings = self.services.settings
        raw = self.get_query_argument("last_event_id", None)
        after = None if raw is None else validation.query_int(
            raw, "last_event_id", default=0, minimum=0, maximum=2**53)
        timeout = validation.query_float(
            self.get_query_argument("timeout", None), "timeout",
            default=settings.poll_timeout_default, minimum=0.0,
            maximum=settings.poll_timeout_max)
        self._poll = PollSession()
        found, cursor, resync = await self.services.realtime.poll(
            self.user_id, after, timeout, self._poll)
        if resync:
            body = b'{"events":[%s],"last_event_id":%d}' % (
                events.control("resync_required", cursor), cursor)
        else:
            body = b'{"events":[%s],"last_event_id":%d}' % (
                b",".join(event.frame for event in found), cursor)
        if self.request.connection.stream.closed():  # type: ignore[attr-defined]
            return
        self.set_status(200)
        self.finish(body)

    def on_connection_close(self) -> None:
        poll = getattr(self, "_poll", None)
        if poll is not None:
            poll.closed = True
            self.services.realtime.cancel_poll(self.user_id, poll)
