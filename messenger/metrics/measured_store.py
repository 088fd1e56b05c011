"""``MeasuredStore``: a ``Store`` that times every call of the store it wraps.

It is the store the process's services use when metrics are on (``messenger/app.py`` wraps
the adapter once, before anything else holds it): every ``Store`` method — each abstract method
of the interface, including those added later — awaits the same method of the wrapped adapter
with the same arguments and returns (or raises) what it did, after adding the call's duration
(``time.perf_counter``, failed calls too) to that method's ``Histogram``. The inherited
methods (``append_chat_event``) run as in ``Store``, so their inner calls are timed under the
methods they call. Anything else (an adapter's own attribute) is read from the wrapped adapter.

On the way it counts, in plain ints, what the metrics report of the store's answers:

* ``messages_accepted``: new messages ``append_messages`` (or ``append_messages_with_events``)
  stored (not the replays of a known ``client_msg_id``, not the refused senders);
* ``mail_queued`` / ``mail_sent`` / ``mail_retried`` / ``mail_failed``: ``enqueue_mail`` calls,
  and the ``mark_mail_sent`` / ``retry_mail`` / ``fail_mail`` calls that acted (the lease held);
* after each ``append_chat_events`` (or ``append_messages_with_events``) that wrote events,
  ``events_stored`` (if set) is called at once, before the caller goes on to publish: the
  fan-out clock starts there.

The cost per call is two ``perf_counter`` calls, a dict lookup and a ``bisect``: nothing per
recipient, nothing shared with another thread.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from typing import Any

from messenger.metrics.histogram import LATENCY_BUCKETS, Histogram
from messenger.models import (
    AppendResult,
    ChatEvent,
    ChatEventWrite,
    Message,
    MessageDraft,
    OutboxMail,
    SenderNotMember,
)
from messenger.store.base import Store

perf_counter = time.perf_counter


class MeasuredStore(Store):
    def __init__(self, inner: Store, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.inner = inner
        self.backend = inner.backend
        #: Store method name -> the durations of its calls.
        self.latency: dict[str, Histogram] = {name: Histogram(buckets) for name in OPERATIONS}
        self.messages_accepted = 0
        self.mail_queued = 0
        self.mail_sent = 0
        self.mail_retried = 0
        self.mail_failed = 0
        #: Called right after a store write of chat events (the fan-out clock's start).
        self.events_stored: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]:
        results = await self._timed("append_messages",
                                    self.inner.append_messages(chat_id, drafts))
        self._accepted(results)
        return results

    async def append_messages_with_events(
        self, chat_id: str, drafts: Sequence[MessageDraft],
        event_of: Callable[[Message], ChatEvent],
    ) -> tuple[list[AppendResult | SenderNotMember], list[tuple[ChatEvent, ChatEventWrite]] | None]:
        results, written = await self._timed(
            "append_messages_with_events",
            self.inner.append_messages_with_events(chat_id, drafts, event_of))
        self._accepted(results)
        self._stored([write for _, write in written or ()])
        return results, written

    async def append_chat_events(self, chat_id: str,
                                 events: Sequence[ChatEvent]) -> list[ChatEventWrite]:
        writes = await self._timed("append_chat_events",
                                   self.inner.append_chat_events(chat_id, events))
        self._stored(writes)
        return writes

    def _accepted(self, results: Sequence[AppendResult | SenderNotMember]) -> None:
        self.messages_accepted += sum(
            1 for r in results if type(r) is AppendResult and r.created)

    def _stored(self, writes: Sequence[ChatEventWrite]) -> None:
        if self.events_stored is not None and any(not w.existed for w in writes):
            self.events_stored()

    async def enqueue_mail(self, mail: OutboxMail) -> None:
        await self._timed("enqueue_mail", self.inner.enqueue_mail(mail))
        self.mail_queued += 1

    async def mark_mail_sent(self, *args: Any, **kwargs: Any) -> bool:
        did = bool(await self._timed("mark_mail_sent", self.inner.mark_mail_sent(*args, **kwargs)))
        self.mail_sent += did
        return did

    async def retry_mail(self, *args: Any, **kwargs: Any) -> bool:
        did = bool(await self._timed("retry_mail", self.inner.retry_mail(*args, **kwargs)))
        self.mail_retried += did
        return did

    async def fail_mail(self, *args: Any, **kwargs: Any) -> bool:
        did = bool(await self._timed("fail_mail", self.inner.fail_mail(*args, **kwargs)))
        self.mail_failed += did
        return did

    async def _timed(self, name: str, call: Any) -> Any:
        start = perf_counter()
        try:
            return await call
        finally:
            self.latency[name].observe(perf_counter() - start)


def _forwarding(name: str) -> Callable[..., Any]:
    """A method that awaits the wrapped store's method ``name`` and times it."""

    async def call(self: MeasuredStore, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.inner, name)
        start = perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            self.latency[name].observe(perf_counter() - start)

    call.__name__ = name
    call.__qualname__ = f"MeasuredStore.{name}"
    call.__doc__ = getattr(Store, name).__doc__
    return call


#: Every method of the interface the wrapper times (the label ``operation`` of the metric).
OPERATIONS: tuple[str, ...] = tuple(sorted(Store.__abstractmethods__))

for _name in OPERATIONS:
    if _name not in MeasuredStore.__dict__:
        setattr(MeasuredStore, _name, _forwarding(_name))
abc.update_abstractmethods(MeasuredStore)
