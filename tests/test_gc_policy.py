"""Full collections on a schedule (``messenger/gc_policy.py``): off the allocation counters
while it runs, one full collection per interval, CPython's thresholds back when it stops."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from messenger.gc_policy import NEVER, ScheduledFullCollections


async def test_full_collections_run_on_the_schedule_and_only_then() -> None:
    before = gc.get_threshold()
    full = asyncio.Event()

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.set()

    policy = ScheduledFullCollections(0.05).start()
    gc.callbacks.append(seen)
    try:
        assert gc.get_threshold() == (before[0], before[1], NEVER)
        async with asyncio.timeout(10):
            await full.wait()  # the scheduled one
    finally:
        gc.callbacks.remove(seen)
        policy.stop()
    assert gc.get_threshold() == before


async def test_an_interval_of_zero_keeps_cpythons_policy() -> None:
    before = gc.get_threshold()
    policy = ScheduledFullCollections(0).start()
    try:
        assert gc.get_threshold() == before
    finally:
        policy.stop()
    assert gc.get_threshold() == before
