"""A small actor runtime on asyncio: bounded inboxes, ``tell``/``ask``, lifecycle, supervision.

Rules every actor follows:

* An actor owns its state; only its own coroutine touches it. Others talk to it through its
  inbox: ``tell(message)`` (fire and forget) or ``await ask(message, timeout)`` (wait for the
  reply). Messages are handled one at a time, in the order they arrived.
* The inbox is bounded (``inbox_size``). ``tell`` on a full inbox raises ``InboxFull`` and on a
  stopped actor raises ``ActorStopped``: nothing is dropped silently, the sender decides.
* Lifecycle: ``start()`` schedules the actor; ``on_start`` runs before the first message,
  ``on_stop`` after the last. ``stop()`` lets the actor finish the message in hand, then fails
  every queued ``ask`` with ``ActorStopped`` and logs how many queued ``tell`` messages it drops.
* Refusals are answers, not failures. An actor lists in ``refusals`` the exception types that
  mean "no" to the asker (an unknown chat, a non-member, a bad argument): one raised by
  ``receive`` or ``receive_batch`` goes to the asker (``ask`` raises it) and nothing else
  happens — no log, no restart, no count toward ``max_restarts``, state kept. The runtime knows
  no application types; actors name their own (``ChatActor`` lists ``messenger.errors.ApiError``,
  the typed client errors), so a new refusal type needs no change here. The default is none.
* Supervision: any other exception from ``receive`` is a fault: it goes to the asker and to
  ``on_failure`` (which logs it); the actor is restarted (``on_stop`` then ``on_start``, inbox
  kept) unless it failed ``max_restarts`` times within ``restart_window`` seconds, in which
  case it stops. A failing actor never takes the process or other actors down.
* Batching: message types listed in ``batch_types`` are taken together. When one reaches the
  head of the inbox, it and the messages of the same type queued right behind it (up to
  ``batch_max``) go to ``receive_batch`` at once, which returns one result (or exception) per
  message, in order. A burst of sends thus becomes one database write.
* An actor with ``idle_timeout`` set stops itself when its inbox has been empty that long and
  ``is_idle()`` agrees (say, no open sessions). ``is_idle()`` must change only while the actor
  handles a message (or starts): it is asked when the inbox empties, and again when the
  timer fires. The stop is decided synchronously, so no
  message can slip into an actor that has decided to stop; a registry then spawns a fresh one.
* An actor holds a task only while its inbox has messages: the first message after it was
  found empty starts one, which handles messages until the inbox is empty again and then ends
  (the actor stays, "parked"). An idle actor thus costs its object, its state and, with
  ``idle_timeout``, one timer handle — no task, no coroutine frames, no inbox deque.
* A failed or timed-out ``ask`` raises in the caller (``AskTimeout``, ``ActorStopped`` or the
  actor's own exception); the message may still be handled later, so asks must be idempotent
  or harmless to repeat.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

log = logging.getLogger("messenger.actors")


class ActorError(Exception):
    """Base of the runtime's own errors."""


class ActorStopped(ActorError):
    """The actor has stopped (or is stopping) and takes no more messages."""


class InboxFull(ActorError):
    """The actor's bounded inbox is full; the message was not accepted."""


class AskTimeout(ActorError):
    """No reply within the ask's timeout."""


_STOP = object()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Actor:
    """Subclass and implement ``receive``; override the hooks you need."""

    inbox_size: int = 1000
    idle_timeout: float | None = None
    max_restarts: int = 5
    batch_types: tuple[type, ...] = ()
    batch_max: int = 100
    restart_window: float = 60.0
    #: Exception types that are an expected answer to the asker, not a fault (see above).
    refusals: tuple[type[BaseException], ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        #: Made by the first message after the inbox was found empty, dropped when it is found
        #: empty again (a deque costs 760 bytes even empty; most actors are idle most of the time).
        self._inbox: collections.deque[tuple[Any, asyncio.Future[Any] | None]] | None = None
        #: The task handling the inbox, only while there is something to handle: an idle actor
        #: holds no task, no coroutine frames and no waiter (see ``_drain``).
        self._task: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._started = False
        self._ran_start = False  # on_start has run (the first drain runs it)
        self._stopping = False
        self._failures: collections.deque[float] | None = None  # made by the first failure
        self._finished = False  # stopped: on_stop has run, the inbox is emptied
        #: made by the first waiter (a future and its callbacks cost ~0.4 KiB per actor)
        self._stopped: asyncio.Future[None] | None = None
        self._on_stopped: tuple[Any, ...] = ()  # when_stopped callbacks
        self.registry_key: Any = None  # its key in the ActorRegistry that spawned it
        self.restarts = 0  # restarts after a failure, ever (metrics)

    # -- hooks ---------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Runs before the first message, and again after a restart."""

    async def on_stop(self) -> None:
        """Runs after the last message, and before a restart."""

    async def on_failure(self, exc: BaseException, message: Any) -> None:
        """Runs when ``receive`` raised a fault (not one of ``refusals``); the default logs it."""
        log.error("actor %s failed on %s", self.name, type(message).__name__, exc_info=exc)

    async def receive(self, message: Any) -> Any:
        raise NotImplementedError

    async def receive_batch(self, messages: list[Any]) -> list[Any]:
        """Handle messages of one ``batch_types`` type; one result or exception each."""
        raise NotImplementedError

    def is_idle(self) -> bool:
        """Whether the actor may stop itself after ``idle_timeout`` without messages."""
        return True

    # -- talking to the actor ------------------------------------------------------------
    @property
    def inbox_depth(self) -> int:
        """Messages waiting in the inbox now (metrics)."""
        return len(self._inbox) if self._inbox else 0

    @property
    def alive(self) -> bool:
        return not self._stopping

    def tell(self, message: Any) -> None:
        """Queue a message without waiting. Raises ``ActorStopped`` or ``InboxFull``."""
        self._put(message, None)

    async def ask(self, message: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Queue a message and wait for ``receive``'s result (or exception)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(message, future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # The reply may still come; nobody waits for it any more.
            future.add_done_callback(_consume_outcome)
            raise AskTimeout(f"{self.name} did not answer within {timeout}s") from None

    def _put(self, message: Any, future: asyncio.Future[Any] | None) -> None:
        if self._stopping:
            raise ActorStopped(f"{self.name} is stopped")
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = collections.deque()
        elif len(inbox) >= self.inbox_size:
            raise InboxFull(f"{self.name}'s inbox is full ({self.inbox_size})")
        inbox.append((message, future))
        if self._started:
            self._wake()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Actor:
        if not self._started:
            self._started = True
            self._wake()
        return self

    async def stop(self) -> None:
        """Stop after the message in hand; wait until ``on_stop`` has run."""
        if not self._stopping:
            self._stopping = True
            if self._inbox is None:
                self._inbox = collections.deque()
            self._inbox.appendleft((_STOP, None))
            if self._started:
                self._wake()
        if not self._started:
            self._finish()
        await self.wait_stopped()

    async def wait_stopped(self) -> None:
        if self._finished:
            return
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._stopped)

    def when_stopped(self, callback: Any) -> None:
        """Call ``callback(self)`` soon (from the event loop) once the actor has stopped."""
        if self._finished:
            asyncio.get_running_loop().call_soon(callback, self)
        else:
            self._on_stopped = (*self._on_stopped, callback)

    def _wake(self) -> None:
        """Make sure a task is handling the inbox (started, not stopped: the callers check)."""
        if self._task is None:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            self._task = asyncio.get_running_loop().create_task(self._drain(), name=self.name)

    async def _drain(self) -> None:
        """Handle the inbox until it is empty, then end (the actor stays, parked, until the next
        message starts another drain), or until the actor stops."""
        stopping = True
        try:
            if not self._ran_start:
                self._ran_start = True
                if not await self._guarded_start():
                    return
            while self._inbox:
                message, future = self._inbox.popleft()
                if message is _STOP:
                    return
                if future is not None and future.done():
                    continue  # the asker gave up (timeout or cancelled) before we got to it
                if isinstance(message, self.batch_types):
                    if not await self._handle_batch(message, future):
                        return
                elif not await self._handle(message, future):
                    return
            stopping = False
        finally:
            self._task = None
            if stopping:
                await self._end()
            else:
                self._park()

    def _park(self) -> None:
        """The inbox is empty (nothing can slip in: no await since the check): drop it, and
        with ``idle_timeout``, if the actor is idle now, look again after that long. (Not idle
        now — say, a user with open sessions — means no timer: ``is_idle`` changes only while a
        message is handled, and the park after that one looks again.)"""
        self._inbox = None
        if self.idle_timeout is not None and self.is_idle():
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self._task is not None or self._inbox or self._stopping:
            return
        if self.is_idle():
            self._stopping = True  # decided synchronously: no tell can slip in now
            self._task = asyncio.get_running_loop().create_task(self._end(), name=self.name)
        else:
            self._park()

    async def _end(self) -> None:
        self._stopping = True
        try:
            await self.on_stop()
        except Exception:
            log.exception("actor %s failed in on_stop", self.name)
        self._finish()

    async def _guarded_start(self) -> bool:
        try:
            await self.on_start()
            return True
        except Exception:
            log.exception("actor %s failed to start", self.name)
            return False

    async def _handle(self, message: Any, future: asyncio.Future[Any] | None) -> bool:
        """Handle one message; False if the actor must stop (too many failures)."""
        try:
            result = await self.receive(message)
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            if isinstance(exc, self.refusals):
                return True  # an answer: nothing failed
            await self.on_failure(exc, message)
            return await self._restart()
        if future is not None and not future.done():
            future.set_result(result)
        return True

    async def _handle_batch(self, first: Any, future: asyncio.Future[Any] | None) -> bool:
        kind = type(first)
        batch = [(first, future)]
        while (self._inbox and len(batch) < self.batch_max
               and type(self._inbox[0][0]) is kind):
            batch.append(self._inbox.popleft())
        try:
            results = await self.receive_batch([message for message, _ in batch])
        except Exception as exc:
            for _, waiting in batch:
                if waiting is not None and not waiting.done():
                    waiting.set_exception(exc)
            if isinstance(exc, self.refusals):
                return True
            await self.on_failure(exc, first)
            return await self._restart()
        for (_, waiting), result in zip(batch, results, strict=True):
            if waiting is None or waiting.done():
                continue
            if isinstance(result, BaseException):
                waiting.set_exception(result)
            else:
                waiting.set_result(result)
        return True

    async def _restart(self) -> bool:
        now = time.monotonic()
        if self._failures is None:
            self._failures = collections.deque()
        self._failures.append(now)
        self.restarts += 1
        while self._failures and now - self._failures[0] > self.restart_window:
            self._failures.popleft()
        if len(self._failures) > self.max_restarts:
            log.error("actor %s failed %d times in %.0fs; stopping it",
                      self.name, len(self._failures), self.restart_window)
            return False
        try:
            await self.on_stop()
            await self.on_start()
        except Exception:
            log.exception("actor %s failed to restart; stopping it", self.name)
            return False
        return True

    def _finish(self) -> None:
        dropped = 0
        while self._inbox:
            message, future = self._inbox.popleft()
            if message is _STOP:
                continue
            if future is not None:
                if not future.done():
                    future.set_exception(ActorStopped(f"{self.name} stopped"))
            else:
                dropped += 1
        if dropped:
            log.warning("actor %s stopped with %d undelivered messages", self.name, dropped)
        if self._finished:
            return
        self._finished = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        if self._on_stopped:
            loop = asyncio.get_running_loop()
            for callback in self._on_stopped:
                loop.call_soon(callback, self)
            self._on_stopped = ()


class ActorRegistry[K, A: Actor]:
    """Get-or-spawn actors by key; a stopped actor leaves the registry by itself."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._actors: dict[K, A] = {}
        self.restarts_of_stopped = 0  # restarts of the actors that left (metrics)

    def get(self, key: K) -> A | None:
        actor = self._actors.get(key)
        return actor if actor is not None and actor.alive else None

    def get_or_spawn(self, key: K) -> A:
        actor = self.get(key)
        if actor is None:
            actor = self._factory(key)
            self._actors[key] = actor
            actor.registry_key = key
            actor.when_stopped(self._forget)
            actor.start()
        return actor

    async def ask(self, key: K, message: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Ask the actor for ``key``, spawning it if needed (once more if it just stopped)."""
        for attempt in range(2):
            actor = self.get_or_spawn(key)
            try:
                return await actor.ask(message, timeout)
            except ActorStopped:
                if attempt or actor.alive:
                    raise
        raise AssertionError("unreachable")

    def tell(self, key: K, message: Any) -> None:
        self.get_or_spawn(key).tell(message)

    def _forget(self, actor: A) -> None:
        self.restarts_of_stopped += actor.restarts
        key = actor.registry_key
        if self._actors.get(key) is actor:
            del self._actors[key]

    def __len__(self) -> int:
        return len(self._actors)

    def values(self) -> list[A]:
        return list(self._actors.values())

    async def stop_all(self) -> None:
        await asyncio.gather(*(actor.stop() for actor in list(self._actors.values())))
