"""The actor runtime (actors/runtime.py): ordering, tell/ask, batching, supervision, idleness."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actors.runtime import Actor, ActorRegistry, ActorStopped, AskTimeout, InboxFull


class Recorder(Actor):
    def __init__(self, name: str = "recorder") -> None:
        super().__init__(name)
        self.seen: list[Any] = []
        self.starts = 0
        self.stops = 0

    async def on_start(self) -> None:
        self.starts += 1

    async def on_stop(self) -> None:
        self.stops += 1

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        if isinstance(message, float):
            await asyncio.sleep(message)
        self.seen.append(message)
        return f"got {message}"


async def test_messages_are_handled_one_at_a_time_in_order() -> None:
    actor = Recorder().start()
    for i in range(100):
        actor.tell(i)
    assert await actor.ask("last") == "got last"
    assert actor.seen == [*range(100), "last"]
    await actor.stop()


async def test_a_failure_reaches_the_asker_and_the_actor_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    actor = Recorder().start()
    other = Recorder("other").start()
    with caplog.at_level(logging.ERROR, "messenger.actors"), pytest.raises(ValueError):
        await actor.ask("boom")
    assert "recorder failed" in caplog.text
    assert await actor.ask("after") == "got after"  # restarted, inbox kept
    assert (actor.starts, actor.stops) == (2, 1)
    assert await other.ask("untouched") == "got untouched"  # others never notice
    await actor.stop()
    await other.stop()


async def test_too_many_failures_stop_the_actor_and_fail_queued_asks() -> None:
    actor = Recorder()
    actor.max_restarts = 2
    actor.start()
    for _ in range(3):
        with pytest.raises(ValueError):
            await actor.ask("boom")
    await actor.wait_stopped()
    assert not actor.alive
    with pytest.raises(ActorStopped):
        actor.tell("late")


class NotAllowed(Exception):
    """An expected "no" for the asker (stands for the application's typed client errors)."""


class Gatekeeper(Recorder):
    """Keeps state that a restart would lose; refuses ``"no"``, fails on ``"boom"``."""

    refusals = (NotAllowed,)
    max_restarts = 2
    batch_types = (int,)

    async def on_start(self) -> None:
        await super().on_start()
        self.state: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "no":
            raise NotAllowed("not for you")
        if message == "keep":
            self.state.append(message)
        return await super().receive(message)

    async def receive_batch(self, messages: list[Any]) -> list[Any]:
        if messages[0] < 0:
            raise NotAllowed("no batch for you")
        return [m * 10 for m in messages]


async def test_a_refusal_is_an_answer_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    actor = Gatekeeper("gatekeeper").start()
    assert await actor.ask("keep") == "got keep"
    with caplog.at_level(logging.DEBUG, "messenger.actors"):
        for _ in range(3 * actor.max_restarts + 5):  # far more than max_restarts
            with pytest.raises(NotAllowed, match="not for you"):
                await actor.ask("no")
            with pytest.raises(NotAllowed, match="no batch"):
                await actor.ask(-1)
    assert caplog.records == []  # no traceback, no "failed", no "stopping it"
    assert actor.alive and (actor.starts, actor.stops) == (1, 0)  # never restarted
    assert actor.state == ["keep"]  # state kept
    assert await actor.ask(2) == 20
    # a real fault still counts: restarted, state lost, logged
    with caplog.at_level(logging.ERROR, "messenger.actors"), pytest.raises(ValueError):
        await actor.ask("boom")
    assert "gatekeeper failed" in caplog.text
    assert (actor.starts, actor.stops, actor.state) == (2, 1, [])
    await actor.stop()


async def test_refusals_do_not_count_toward_max_restarts() -> None:
    actor = Gatekeeper("gatekeeper").start()  # max_restarts = 2
    for _ in range(actor.max_restarts):
        with pytest.raises(ValueError):
            await actor.ask("boom")
        for _ in range(10):
            with pytest.raises(NotAllowed):
                await actor.ask("no")
    assert actor.alive
    with pytest.raises(ValueError):
        await actor.ask("boom")  # the third fault within the window stops it
    await actor.wait_stopped()
    assert not actor.alive


async def test_without_refusals_every_exception_is_a_fault() -> None:
    actor = Recorder()
    assert actor.refusals == ()
    actor.start()
    with pytest.raises(ValueError):
        await actor.ask("boom")
    assert (actor.starts, actor.stops) == (2, 1)
    await actor.stop()


async def test_ask_times_out_and_the_late_reply_is_dropped() -> None:
    actor = Recorder().start()
    with pytest.raises(AskTimeout):
        await actor.ask(0.5, timeout=0.05)
    assert await actor.ask("next") == "got next"
    await actor.stop()


async def test_a_full_inbox_refuses_instead_of_dropping() -> None:
    actor = Recorder()
    actor.inbox_size = 3
    actor.tell(0)
    actor.tell(1)
    last = asyncio.ensure_future(actor.ask("end"))
    await asyncio.sleep(0)  # the ask is queued now
    with pytest.raises(InboxFull):
        actor.tell(3)
    actor.start()
    assert await last == "got end"
    assert actor.seen == [0, 1, "end"]
    await actor.stop()


async def test_stop_fails_pending_asks_and_reports_dropped_tells(
    caplog: pytest.LogCaptureFixture,
) -> None:
    actor = Recorder().start()
    actor.tell(0.2)
    pending = asyncio.ensure_future(actor.ask("queued"))
    actor.tell("dropped")
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, "messenger.actors"):
        await actor.stop()
    with pytest.raises(ActorStopped):
        await pending
    assert "1 undelivered" in caplog.text
    assert actor.stops == 1


class Batcher(Actor):
    batch_types = (int,)

    def __init__(self) -> None:
        super().__init__("batcher")
        self.batches: list[list[int]] = []

    async def receive_batch(self, messages: list[Any]) -> list[Any]:
        self.batches.append(list(messages))
        return [m * 10 if m >= 0 else ValueError("negative") for m in messages]

    async def receive(self, message: Any) -> Any:
        return message


async def test_batch_types_are_taken_together_with_one_result_each() -> None:
    actor = Batcher()
    futures = [asyncio.ensure_future(actor.ask(i)) for i in (1, 2, -3, 4)]
    await asyncio.sleep(0)
    actor.tell("barrier")
    futures.append(asyncio.ensure_future(actor.ask(5)))
    await asyncio.sleep(0)
    actor.start()
    assert await futures[0] == 10 and await futures[1] == 20 and await futures[3] == 40
    with pytest.raises(ValueError):
        await futures[2]
    assert await futures[4] == 50
    assert actor.batches == [[1, 2, -3, 4], [5]]
    await actor.stop()


class Sleepy(Recorder):
    idle_timeout = 0.05

    def __init__(self, key: str) -> None:
        super().__init__(f"sleepy:{key}")
        self.busy = False

    def is_idle(self) -> bool:
        return not self.busy


async def test_registry_spawns_reuses_and_forgets_idle_actors() -> None:
    registry: ActorRegistry[str, Sleepy] = ActorRegistry(Sleepy)
    first = registry.get_or_spawn("a")
    assert registry.get_or_spawn("a") is first
    assert await registry.ask("a", "x") == "got x"
    await first.wait_stopped()  # idle for idle_timeout: stopped by itself
    assert registry.get("a") is None and len(registry) == 0
    assert await registry.ask("a", "y") == "got y"  # a fresh one
    busy = registry.get_or_spawn("b")
    busy.busy = True
    await asyncio.sleep(0.2)
    assert busy.alive  # not idle while it says it is busy
    await registry.stop_all()
